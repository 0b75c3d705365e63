from typing import Any

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    BigInt,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.querystring import QueryString
from piccolo.table import Table


class GiftKey(Column):
    """Each program's gift key, made by the database: 64 hex digits of SHA-256 over two random UUIDs
    (244 random bits). Piccolo's Varchar takes no SQL default, hence a column type of its own."""

    value_type = str

    def __init__(self, **kwargs: Any) -> None:
        self.default = QueryString(
            "encode(sha256((((gen_random_uuid())::text || (gen_random_uuid())::text))::bytea), 'hex'::text)"
        )
        kwargs.update({"default": self.default})
        super().__init__(**kwargs)

    @property
    def column_type(self) -> str:
        return "VARCHAR(64)"


class Program(Table, tablename="program"):
    """One shop's loyalty programme: the tenant every other row belongs to."""

    id = UUID(primary_key=True)
    name = Varchar(length=200)
    base_currency = Varchar(length=3)
    # Points per major unit, per currency, as decimal strings: {"EUR": "1"}.
    earn_rates = JSONB()
    pending_days = Integer(default=14)
    points_expire_after_days = Integer(null=True, default=None)
    # `point_value_points` points are worth `point_value_amount` minor units of the base currency.
    point_value_amount = Integer(default=1)
    point_value_points = Integer(default=1)
    timezone = Varchar(length=64, default="UTC")
    # Bumped by every rule change: API processes reload their cached rule set when it moves.
    rules_revision = BigInt(default=0)
    # Bumped by every tier change (tiers feed the rules: audiences, earn multipliers).
    tiers_revision = BigInt(default=0)
    # Custom event types the program declares (besides signup, birthday, review_written, ...).
    event_types = Array(base_column=Text(), default=list)
    # Reward codes (migration 2026-12-05T09:00): an optional prefix before every code; whether a full
    # refund of an order cancels the codes it used (their points back); whether a code that expires unused
    # gives its points back.
    code_prefix = Varchar(length=12, null=True, default=None)
    cancel_redemption_on_full_refund = Boolean(default=True)
    code_expiry_returns_points = Boolean(default=False)
    # Surprise gifts (migration 2026-12-07T09:00): the dice's HMAC key (random per program, made by the
    # database), the cooldown across all gift rules, and the revision the cached gift rules follow.
    gift_key = GiftKey()
    gift_cooldown_days = Integer(default=90)
    gifts_revision = BigInt(default=0)
    # Feedback (migration 2026-12-09T09:00): the staff address alarms go to.
    alert_email = Varchar(length=320, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ApiKey(Table, tablename="api_key"):
    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.cascade, null=False, index=True)
    name = Varchar(length=200)
    prefix = Varchar(length=16)
    key_hash = Varchar(length=64, unique=True)
    scope = Varchar(length=16)
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
