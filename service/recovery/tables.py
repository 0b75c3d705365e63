"""Service recovery's tables (schema in migration 2026-12-08T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, BigInt, BigSerial, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class RecoverySettings(Table, tablename="recovery_settings"):
    """A program's monthly recovery budget (base minor units), the optional cap per agent, and what a month
    of each tier costs as a gesture. Its row's lock orders every recovery of the program."""

    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False, primary_key=True)
    monthly_budget = BigInt(default=0)
    agent_monthly_budget = BigInt(null=True, default=None)
    tier_month_values = JSONB(default="{}")
    updated_at = Timestamptz(default=None)


class ServiceCase(Table, tablename="service_case"):
    """A customer's case: opened by a complaint, a detractor's feedback or an agent; closed with a note."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    status = Varchar(length=16, default=None)  # open | closed
    source = Varchar(length=16, default=None)  # complaint | feedback | agent
    source_key = Varchar(length=200, null=True, default=None)  # complaint:<event id>, feedback:<id>
    summary = Text(default=None)
    order_id = UUID(null=True, default=None)
    agent_key_id = UUID(null=True, default=None)  # the key that opened it or first acted on it
    agent_name = Varchar(length=200, null=True, default=None)
    opened_at = Timestamptz(default=None)
    first_action_at = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)
    resolution = Text(null=True, default=None)
    created_at = Timestamptz(default=None)
    reopened_count = Integer(default=0)  # a follow-up still unhappy opened it again (migration 2026-12-09)


class CaseEntry(Table, tablename="case_entry"):
    """A case's timeline: opened, each note and recovery, closed."""

    id = BigSerial(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    case_id = ForeignKey(references=ServiceCase, on_delete=OnDelete.restrict, null=False)
    kind = Varchar(length=16, default=None)  # opened | note | recovery | closed | reopened
    text = Text(default=None)
    recovery_id = UUID(null=True, default=None)
    by_key_id = UUID(null=True, default=None)  # null: opened by a complaint or feedback, not a person
    by_name = Varchar(length=200, null=True, default=None)
    at = Timestamptz(default=None)


class Recovery(Table, tablename="recovery"):
    """One recovery action by an agent (or admin) key: what it gave, what it cost, which month paid."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    case_id = ForeignKey(references=ServiceCase, on_delete=OnDelete.restrict, null=True, default=None)
    order_id = UUID(null=True, default=None)
    complaint_event_id = UUID(null=True, default=None)
    agent_key_id = UUID(default=None)
    agent_name = Varchar(length=200, default=None)
    reason = Text(default=None)
    action = Varchar(length=16, default=None)  # points | reward | gift | tier
    given = JSONB(default=None)
    explanation = Text(default=None)
    cost_amount = BigInt(default=None)
    currency = Varchar(length=3, default=None)
    budget_period = Varchar(length=16, default=None)  # 2026-12, the program's time zone
    created_at = Timestamptz(default=None)
