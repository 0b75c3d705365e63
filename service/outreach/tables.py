"""Journeys (schema in migration 2026-11-25T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class Journey(Table, tablename="journey"):
    """A journey (post-purchase, win-back, ...): its trigger and steps as JSON, versioned, soft-deleted."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    key = Varchar(length=64, default=None)
    version = Integer(default=None)
    enabled = Boolean(default=None)
    trigger_kind = Varchar(length=32, default=None)
    definition = JSONB(default=None)
    enabled_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
    deleted_at = Timestamptz(null=True, default=None)


class JourneyEnrollment(Table, tablename="journey_enrollment"):
    """A customer in a journey for one trigger (unique): the next step and when it is due."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    journey_id = ForeignKey(references=Journey, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    trigger_key = Text(default=None)
    context = JSONB(default=None)
    anchor_at = Timestamptz(default=None)
    next_step = Integer(default=None)
    next_due_at = Timestamptz(null=True, default=None)
    status = Varchar(length=12, default=None)  # active | completed | exited
    exit_reason = Text(null=True, default=None)
    entered_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
