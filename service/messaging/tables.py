"""Messaging's tables (schema in migration 2026-11-25T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, BigSerial, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class MessagingSettings(Table, tablename="messaging_settings"):
    """A program's messaging settings (sender, quiet hours, frequency cap, ...) as one JSON document."""

    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, primary_key=True, null=False)
    settings = JSONB(default=None)
    updated_at = Timestamptz(default=None)


class MessageTemplate(Table, tablename="message_template"):
    """A program's own template for one message type and locale (soft-deleted: its versions stay)."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    message_type = Varchar(length=64, default=None)
    locale = Varchar(length=8, default=None)
    version = Integer(default=None)
    subject = Text(default=None)
    text_body = Text(default=None)
    html_body = Text(default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
    deleted_at = Timestamptz(null=True, default=None)


class MessageTemplateVersion(Table, tablename="message_template_version"):
    """Every version a template had, never changed."""

    # Piccolo has no composite primary key (it would make up an `id` the table does not have).
    PRIMARY_KEY = ("template_id", "version")

    template_id = ForeignKey(references=MessageTemplate, on_delete=OnDelete.cascade, null=False)
    version = Integer(default=None)
    subject = Text(default=None)
    text_body = Text(default=None)
    html_body = Text(default=None)
    created_at = Timestamptz(default=None)


class Message(Table, tablename="message"):
    """One message to one customer, with its fate: queued, deferred, sent, failed or suppressed (and why)."""

    id = BigSerial(primary_key=True)  # an identity column: Piccolo's nearest is a serial
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    message_type = Varchar(length=64, default=None)
    category = Varchar(length=16, default=None)  # transactional | marketing
    # The journey step that made it; no foreign key (messaging knows no journeys).
    journey_id = UUID(null=True, default=None)
    step = Integer(null=True, default=None)
    trigger_key = Text(null=True, default=None)
    dedupe_key = Text(default=None)  # unique per program: a retried sweep makes no second message
    context = JSONB(default=None)
    status = Varchar(length=12, default=None)
    reason = Text(null=True, default=None)
    due_at = Timestamptz(default=None)
    attempts = Integer(default=0)
    claimed_by = Varchar(length=128, null=True, default=None)
    claimed_until = Timestamptz(null=True, default=None)
    locale = Varchar(length=35, null=True, default=None)
    locale_note = Text(null=True, default=None)
    template_ref = Varchar(length=80, null=True, default=None)
    to_email = Varchar(length=320, null=True, default=None)
    subject = Text(null=True, default=None)
    message_id = Text(null=True, default=None)
    last_error = Text(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
    sent_at = Timestamptz(null=True, default=None)


class Suppression(Table, tablename="suppression"):
    """An address a program sends nothing to: a hard bounce, a complaint, or put there by hand."""

    # Piccolo has no composite primary key (it would make up an `id` the table does not have).
    PRIMARY_KEY = ("program_id", "email")

    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    email = Varchar(length=320, default=None)
    reason = Varchar(length=32, default=None)
    detail = Text(null=True, default=None)
    created_at = Timestamptz(default=None)
