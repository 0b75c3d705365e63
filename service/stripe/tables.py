"""The Stripe integration's tables (schema in migration 2026-12-06T09:00, written as SQL; these classes
mirror it, and tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.programs.tables import Program


class StripeConnection(Table, tablename="stripe_connection"):
    """A program's Stripe account: the API key and the webhook signing secret, both sealed at rest."""

    program_id = ForeignKey(references=Program, on_delete=OnDelete.cascade, primary_key=True, null=False)
    secret_key = Text(default=None)  # sealed
    webhook_secret = Text(default=None)  # sealed
    key_last4 = Varchar(length=4, default=None)
    key_kind = Varchar(length=16, default=None)  # secret | restricted
    mode = Varchar(length=4, default=None)  # test | live
    create_orders = Boolean(default=True)
    sku_metadata_key = Varchar(length=40, default="sku")
    category_metadata_key = Varchar(length=40, default="category")
    connected_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
    last_event_at = Timestamptz(null=True, default=None)
    last_error = Text(null=True, default=None)
    last_error_at = Timestamptz(null=True, default=None)


class StripeEvent(Table, tablename="stripe_event"):
    """An event Stripe sent (or `encore stripe replay` fed), stored before it is answered, processed by
    the worker: received | waiting (for its order, or Stripe) -> processed | failed | ignored."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    stripe_id = Varchar(length=255, default=None)
    type = Varchar(length=100, default=None)
    livemode = Boolean(default=None)
    api_version = Varchar(length=40, null=True, default=None)
    created = Timestamptz(default=None)
    payload = JSONB(default=None)
    source = Varchar(length=8, default=None)  # webhook | replay
    status = Varchar(length=10, default=None)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=None)
    claimed_by = Text(null=True, default=None)
    claimed_until = Timestamptz(null=True, default=None)
    outcome = Text(null=True, default=None)
    last_error = Text(null=True, default=None)
    received_at = Timestamptz(default=None)
    processed_at = Timestamptz(null=True, default=None)


class StripePayment(Table, tablename="stripe_payment"):
    """Which order a payment intent paid (its checkout session's), and what Stripe charged for it."""

    PRIMARY_KEY = ("program_id", "payment_intent_id")

    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    payment_intent_id = Varchar(length=255, default=None)
    session_id = Varchar(length=255, default=None)
    order_external_id = Varchar(length=255, default=None)
    currency = Varchar(length=3, default=None)
    amount_total = BigInt(default=None)
    created_at = Timestamptz(default=None)


class StripeRefund(Table, tablename="stripe_refund"):
    """A Stripe refund or lost dispute, reversed once."""

    PRIMARY_KEY = ("program_id", "refund_id")

    program_id = UUID(default=None)
    refund_id = Varchar(length=255, default=None)
    payment_intent_id = Varchar(length=255, default=None)
    amount = BigInt(default=None)
    order_amount = BigInt(default=None)
    created_at = Timestamptz(default=None)


class StripeCode(Table, tablename="stripe_code"):
    """A redemption's coupon and promotion code in Stripe: pending -> synced | encore_only | failed; a
    cancelled or expired code's promotion code is deactivated (`active_wanted` false)."""

    redemption_id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    status = Varchar(length=12, default=None)
    active_wanted = Boolean(default=True)
    active = Boolean(default=False)
    coupon_id = Varchar(length=255, null=True, default=None)
    promotion_code_id = Varchar(length=255, null=True, default=None)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=None)
    claimed_by = Text(null=True, default=None)
    claimed_until = Timestamptz(null=True, default=None)
    last_error = Text(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
