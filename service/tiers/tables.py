from piccolo.columns import JSONB, UUID, BigSerial, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from service.programs.tables import Program


class Tier(Table, tablename="tier"):
    """A VIP tier; its definition (metric, threshold, window, benefits, retention) is JSON, versioned by
    `version`; deleted tiers stay (deleted_at) so the history keeps their names (migration 2026-11-24)."""

    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict)
    key = Varchar(length=64)
    version = Integer()
    definition = JSONB()
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)


class TierChange(Table, tablename="tier_change"):
    """One change of a customer's tier (or a downgrade warning), with its cause; never updated."""

    id = BigSerial(primary_key=True)  # the order of writing: changes made in one moment share created_at
    # No foreign keys in the database (migration 2026-11-24T09:00): plain columns here too.
    program_id = UUID()
    customer_id = UUID()
    change = Varchar(length=24)  # upgrade | downgrade | manual | warning | warning_withdrawn | moved
    from_tier_id = UUID(null=True, default=None)
    to_tier_id = UUID(null=True, default=None)
    cause = Varchar(length=24)  # order | event | reevaluation | manual | tier_deleted
    reason = Text()
    actor = Varchar(length=200, null=True, default=None)
    details = JSONB(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
