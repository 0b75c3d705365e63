"""Outbound webhooks (schema in migration 2026-11-23T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import (
    UUID,
    Array,
    BigSerial,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.outbox.tables import OutboxEvent
from service.programs.tables import Program


class WebhookEndpoint(Table, tablename="webhook_endpoint"):
    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    url = Text(default=None)
    description = Text(default="")
    event_types = Array(base_column=Text(), default=list)  # {*}: every event
    enabled = Boolean(default=True)
    disabled_reason = Text(null=True, default=None)
    # Encrypted (`fernet:…`, service.core.secrets): the worker decrypts them to sign; the shop sees a
    # secret once, in the answer that made it. During a rotation both sign.
    secret = Text(default=None)
    previous_secret = Text(null=True, default=None)
    previous_secret_until = Timestamptz(null=True, default=None)
    failing_since = Timestamptz(null=True, default=None)
    last_success_at = Timestamptz(null=True, default=None)
    last_failure_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)


class WebhookDelivery(Table, tablename="webhook_delivery"):
    """One event for one endpoint: retried until it succeeds or its retry window ends (dead)."""

    id = BigSerial(primary_key=True)  # an identity column: Piccolo's nearest is a serial
    program_id = UUID(default=None)
    endpoint_id = ForeignKey(references=WebhookEndpoint, on_delete=OnDelete.cascade, null=False)
    event_id = ForeignKey(references=OutboxEvent, on_delete=OnDelete.cascade, null=False)
    topic = Varchar(length=64, default=None)
    status = Text(default="pending")  # pending | succeeded | dead | paused (endpoint disabled)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=None)
    window_started_at = Timestamptz(default=None)
    claimed_by = Text(null=True, default=None)
    claimed_until = Timestamptz(null=True, default=None)
    last_attempt_at = Timestamptz(null=True, default=None)
    last_status_code = Integer(null=True, default=None)
    last_latency_ms = Integer(null=True, default=None)
    last_error = Text(null=True, default=None)
    created_at = Timestamptz(default=None)
    finished_at = Timestamptz(null=True, default=None)
