"""Tier state moves out of `customer` into `customer_tier`, the tiers feature's own table: one narrow row
per customer that has tier state (a tier, a warning, a date to look again). The re-evaluation and the
downgrade sweeps write hundreds of thousands of these at a time; as columns of `customer` every such
write copied the whole wide customer row (and its indexes), which the tiers note measured as the cost of
bulk runs.

The columns keep their meaning; inside the tiers table they lose the `tier_` prefix (`since`, `source`,
...), except `tier_id`. A customer without a row holds no tier. No foreign keys, as in 2026-11-24T09:00:
a key check on each of hundreds of thousands of rows locks (and so writes) the customer row it names —
the very cost this table avoids; customers and tiers are never deleted.

The old index `customer_tier` on customer (tier_id) goes first: indexes share the table namespace."""

from sql_migration import script, sql_migration

ID = "2026-12-04T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Tier state in its own table customer_tier"

FORWARDS = script(
    """
    DROP INDEX IF EXISTS customer_tier;
    CREATE TABLE customer_tier (
        customer_id uuid PRIMARY KEY,
        program_id uuid NOT NULL,
        tier_id uuid,
        since timestamptz,
        source varchar(8) NOT NULL DEFAULT 'earned',
        manual_until timestamptz,
        warned_at timestamptz,
        downgrade_at timestamptz,
        -- Not before this does a re-evaluation look again at a customer who holds a tier without qualifying.
        check_after timestamptz
    );
    -- Every customer with any tier state: the rest had only the defaults, which no row means as well.
    INSERT INTO customer_tier (customer_id, program_id, tier_id, since, source, manual_until, warned_at,
                               downgrade_at, check_after)
    SELECT id, program_id, tier_id, tier_since, tier_source, tier_manual_until, tier_warned_at,
           tier_downgrade_at, tier_check_after
    FROM customer
    WHERE tier_id IS NOT NULL OR tier_since IS NOT NULL OR tier_source <> 'earned'
       OR tier_manual_until IS NOT NULL OR tier_warned_at IS NOT NULL OR tier_downgrade_at IS NOT NULL
       OR tier_check_after IS NOT NULL;
    -- A program's rows (the re-evaluation) and a tier's holders (counts, a deleted tier's moves): one
    -- index, so a row written in bulk has two to update, with the primary key.
    CREATE INDEX customer_tier_program ON customer_tier (program_id, tier_id);
    ALTER TABLE customer
        DROP COLUMN tier_id, DROP COLUMN tier_since, DROP COLUMN tier_source, DROP COLUMN tier_manual_until,
        DROP COLUMN tier_warned_at, DROP COLUMN tier_downgrade_at, DROP COLUMN tier_check_after
    """
)

BACKWARDS = script(
    """
    ALTER TABLE customer
        ADD COLUMN tier_id uuid, ADD COLUMN tier_since timestamptz,
        ADD COLUMN tier_source varchar(8) NOT NULL DEFAULT 'earned', ADD COLUMN tier_manual_until timestamptz,
        ADD COLUMN tier_warned_at timestamptz, ADD COLUMN tier_downgrade_at timestamptz,
        ADD COLUMN tier_check_after timestamptz;
    UPDATE customer c
    SET tier_id = t.tier_id, tier_since = t.since, tier_source = t.source, tier_manual_until = t.manual_until,
        tier_warned_at = t.warned_at, tier_downgrade_at = t.downgrade_at, tier_check_after = t.check_after
    FROM customer_tier t WHERE t.customer_id = c.id;
    DROP TABLE IF EXISTS customer_tier;
    CREATE INDEX customer_tier ON customer (tier_id) WHERE tier_id IS NOT NULL
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
