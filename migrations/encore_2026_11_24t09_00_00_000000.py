"""VIP tiers: the tiers (definition as JSON, versioned, soft-deleted so history keeps its names), the
tier each customer holds with its warning state, and the history of every tier change; a program's
tier revision counter (API processes reload their cached tier set when it moves).

No foreign keys from customer.tier_id or tier_change: a re-evaluation writes hundreds of thousands of
rows in one go and a key check per row (a row lock on the same three tiers) doubled its time; tiers are
never deleted (deleted_at), and the history is written only by the statement that moves the customer."""

from sql_migration import sql_migration

ID = "2026-11-24T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "VIP tiers"

FORWARDS = (
    "ALTER TABLE program ADD COLUMN tiers_revision bigint NOT NULL DEFAULT 0",
    """
    CREATE TABLE tier (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        key varchar(64) NOT NULL,
        version integer NOT NULL,
        definition jsonb NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        deleted_at timestamptz
    )
    """,
    "CREATE UNIQUE INDEX tier_program_key ON tier (program_id, key) WHERE deleted_at IS NULL",
    "ALTER TABLE customer ADD COLUMN tier_id uuid",
    "ALTER TABLE customer ADD COLUMN tier_since timestamptz",
    "ALTER TABLE customer ADD COLUMN tier_source varchar(8) NOT NULL DEFAULT 'earned'",
    "ALTER TABLE customer ADD COLUMN tier_manual_until timestamptz",
    "ALTER TABLE customer ADD COLUMN tier_warned_at timestamptz",
    "ALTER TABLE customer ADD COLUMN tier_downgrade_at timestamptz",
    # Not before this does a re-evaluation look again at a customer who holds a tier without qualifying.
    "ALTER TABLE customer ADD COLUMN tier_check_after timestamptz",
    "CREATE INDEX customer_tier ON customer (tier_id) WHERE tier_id IS NOT NULL",
    """
    CREATE TABLE tier_change (
        -- The order of writing (changes made in one moment share created_at); a growing key, so a
        -- re-evaluation's hundreds of thousands of rows append to its index instead of scattering.
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        program_id uuid NOT NULL,
        customer_id uuid NOT NULL,
        change varchar(24) NOT NULL,
        from_tier_id uuid,
        to_tier_id uuid,
        cause varchar(24) NOT NULL,
        reason text NOT NULL,
        actor varchar(200),
        details jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX tier_change_customer ON tier_change (customer_id, id DESC)",
)

BACKWARDS = (
    "DROP TABLE IF EXISTS tier_change",
    "DROP INDEX IF EXISTS customer_tier",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_check_after",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_downgrade_at",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_warned_at",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_manual_until",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_source",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_since",
    "ALTER TABLE customer DROP COLUMN IF EXISTS tier_id",
    "DROP TABLE IF EXISTS tier",
    "ALTER TABLE program DROP COLUMN IF EXISTS tiers_revision",
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
