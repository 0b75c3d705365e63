"""The tiers' tables (schema in migrations 2026-11-24T09:00 and 2026-12-04T09:00, written as SQL; these
classes mirror it, and tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, BigSerial, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.programs.tables import Program


class Tier(Table, tablename="tier"):
    """A VIP tier; its definition (metric, threshold, window, benefits, retention) is JSON, versioned by
    `version`; deleted tiers stay (deleted_at) so the history keeps their names (migration 2026-11-24)."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    key = Varchar(length=64, default=None)
    version = Integer(default=None)
    definition = JSONB(default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
    deleted_at = Timestamptz(null=True, default=None)


class TierChange(Table, tablename="tier_change"):
    """One change of a customer's tier (or a downgrade warning), with its cause; never updated."""

    id = BigSerial(primary_key=True)  # the order of writing: changes made in one moment share created_at
    # No foreign keys in the database (migration 2026-11-24T09:00): plain columns here too.
    program_id = UUID(default=None)
    customer_id = UUID(default=None)
    change = Varchar(
        length=24, default=None
    )  # upgrade | downgrade | manual | warning | warning_withdrawn | moved
    from_tier_id = UUID(null=True, default=None)
    to_tier_id = UUID(null=True, default=None)
    cause = Varchar(length=24, default=None)  # order | event | reevaluation | manual | tier_deleted
    reason = Text(default=None)
    actor = Varchar(length=200, null=True, default=None)
    details = JSONB(default="{}")
    created_at = Timestamptz(default=None)


class CustomerTier(Table, tablename="customer_tier"):
    """The tier a customer holds and the state of any downgrade warning: one narrow row per customer with
    tier state (no row: no tier), written only by tiers (migration 2026-12-04T09:00). Other features read it
    through service/tiers/published.py."""

    # No foreign keys in the database (a key check per row of a bulk run locks the customer row it names).
    customer_id = UUID(primary_key=True, default=None)
    program_id = UUID(default=None)
    tier_id = UUID(null=True, default=None)  # tiers are never deleted (deleted_at)
    since = Timestamptz(null=True, default=None)
    source = Varchar(length=8, default="earned")  # earned | manual
    manual_until = Timestamptz(null=True, default=None)
    warned_at = Timestamptz(null=True, default=None)
    downgrade_at = Timestamptz(null=True, default=None)
    # Not before this does a re-evaluation look again at a customer who holds a tier without qualifying.
    check_after = Timestamptz(null=True, default=None)
