"""Earning rules: rules and their immutable versions, per-customer cap usage, custom events; the rule
and version that awarded each ledger entry; order attributes; a program's custom event types and the
revision counter that tells API processes their cached rule set is stale."""

from sql_migration import sql_migration

ID = "2026-11-23T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "earning rules, custom events"

FORWARDS = (
    "ALTER TABLE program ADD COLUMN rules_revision bigint NOT NULL DEFAULT 0",
    "ALTER TABLE program ADD COLUMN event_types text[] NOT NULL DEFAULT '{}'",
    "ALTER TABLE orders ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}'",
    "ALTER TABLE points_entry ADD COLUMN rule_id uuid",
    "ALTER TABLE points_entry ADD COLUMN rule_version integer",
    """
    CREATE TABLE rule (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        status varchar(16) NOT NULL,
        current_version integer NOT NULL,
        is_default boolean NOT NULL DEFAULT false,
        -- Once a version has been active it is frozen: an edit makes the next version.
        published boolean NOT NULL DEFAULT false,
        budget_spent bigint NOT NULL DEFAULT 0,
        exhausted_at timestamptz,
        problem_count integer NOT NULL DEFAULT 0,
        last_problem text,
        last_problem_at timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX rule_program ON rule (program_id, created_at, id)",
    "CREATE UNIQUE INDEX rule_default ON rule (program_id) WHERE is_default",
    """
    CREATE TABLE rule_version (
        rule_id uuid NOT NULL REFERENCES rule (id) ON DELETE CASCADE,
        version integer NOT NULL,
        definition jsonb NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (rule_id, version)
    )
    """,
    """
    CREATE TABLE rule_usage (
        rule_id uuid NOT NULL REFERENCES rule (id) ON DELETE CASCADE,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
        period varchar(16) NOT NULL,
        points bigint NOT NULL,
        PRIMARY KEY (customer_id, rule_id, period)
    )
    """,
    """
    CREATE TABLE customer_event (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE RESTRICT,
        type varchar(64) NOT NULL,
        properties jsonb NOT NULL,
        occurred_at timestamptz NOT NULL,
        points bigint NOT NULL,
        result varchar(32) NOT NULL,
        created_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX customer_event_customer ON customer_event (customer_id, occurred_at DESC)",
    "CREATE INDEX orders_program_placed ON orders (program_id, placed_at)",
)

BACKWARDS = (
    "DROP INDEX IF EXISTS orders_program_placed",
    "DROP TABLE IF EXISTS customer_event",
    "DROP TABLE IF EXISTS rule_usage",
    "DROP TABLE IF EXISTS rule_version",
    "DROP TABLE IF EXISTS rule",
    "ALTER TABLE points_entry DROP COLUMN IF EXISTS rule_version",
    "ALTER TABLE points_entry DROP COLUMN IF EXISTS rule_id",
    "ALTER TABLE orders DROP COLUMN IF EXISTS attributes",
    "ALTER TABLE program DROP COLUMN IF EXISTS event_types",
    "ALTER TABLE program DROP COLUMN IF EXISTS rules_revision",
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
