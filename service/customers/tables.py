from piccolo.columns import UUID, Boolean, Date, ForeignKey, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from service.programs.tables import Program


class Customer(Table, tablename="customer"):
    """A shop's customer; `external_id` (the shop's own id) is unique per program (see migrations)."""

    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict)
    external_id = Varchar(length=128)
    email = Varchar(length=320, null=True, default=None)
    name = Varchar(length=200, null=True, default=None)
    locale = Varchar(length=35, null=True, default=None)
    birthday = Date(null=True, default=None)
    timezone = Varchar(length=64, null=True, default=None)
    marketing_consent = Boolean(default=False)
    # The VIP tier held (tiers are never deleted; no foreign key, see migration 2026-11-24T09:00).
    tier_id = UUID(null=True, default=None)
    tier_since = Timestamptz(null=True, default=None)
    tier_source = Varchar(length=8, default="earned")  # earned | manual
    tier_manual_until = Timestamptz(null=True, default=None)
    tier_warned_at = Timestamptz(null=True, default=None)
    tier_downgrade_at = Timestamptz(null=True, default=None)
    tier_check_after = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
