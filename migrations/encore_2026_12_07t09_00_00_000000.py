"""Surprise gifts: rules with versions (`gift_rule`, `gift_rule_version`), their money budgets per period
(`gift_budget`) and every decision that gave something or kept a customer in the hold-out (`gift`).

- `gift` is unique on (rule, customer, occasion): an occasion (an order, the 3rd order, a birthday of a
  year, an upgrade) gives at most one gift per rule, however many orders are decided at once. Hold-outs
  are rows too (outcome `held_out`, cost 0): the effect is measured against them, and they count for
  the cooldown like a gift, so both groups are treated alike.
- `item_status`: `in_parcel` (the order it was decided on carries it), `waiting` (no order: shown on the
  customer's next one), `picked` (that next order took it), NULL (no physical item).
- `gift_budget.used_amount` is spent by one conditional upsert, so concurrent orders never overspend.
- Program: `gift_key` (the dice's HMAC key, random per program, not the link-signing key: rotating that
  changes no decision), `gift_cooldown_days` (one surprise per customer in 90 days by default),
  `gifts_revision` (the per-process cache of active gift rules follows it). `complaint` becomes a
  built-in event type in code."""

from sql_migration import script, sql_migration

ID = "2026-12-07T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Surprise gifts"

FORWARDS = script(
    """
    ALTER TABLE program
        ADD COLUMN gift_key varchar(64) NOT NULL
            DEFAULT encode(sha256((gen_random_uuid()::text || gen_random_uuid()::text)::bytea), 'hex'),
        ADD COLUMN gift_cooldown_days integer NOT NULL DEFAULT 90
            CONSTRAINT program_gift_cooldown CHECK (gift_cooldown_days BETWEEN 0 AND 3650),
        ADD COLUMN gifts_revision bigint NOT NULL DEFAULT 0;
    CREATE TABLE gift_rule (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        status varchar(16) NOT NULL
            CONSTRAINT gift_rule_status CHECK (status IN ('draft', 'active', 'paused', 'archived')),
        current_version integer NOT NULL,
        published boolean NOT NULL DEFAULT false,
        problem_count integer NOT NULL DEFAULT 0,
        last_problem text,
        last_problem_at timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE INDEX gift_rule_program ON gift_rule (program_id, created_at, id);
    CREATE TABLE gift_rule_version (
        rule_id uuid NOT NULL REFERENCES gift_rule (id) ON DELETE CASCADE,
        version integer NOT NULL,
        definition jsonb NOT NULL,
        -- What one gift of this version costs (base minor units), fixed when it was saved.
        cost_amount bigint NOT NULL CONSTRAINT gift_rule_version_cost CHECK (cost_amount >= 0),
        created_at timestamptz NOT NULL,
        PRIMARY KEY (rule_id, version)
    );
    CREATE TABLE gift_budget (
        rule_id uuid NOT NULL REFERENCES gift_rule (id) ON DELETE CASCADE,
        period varchar(16) NOT NULL,
        used_amount bigint NOT NULL CONSTRAINT gift_budget_used CHECK (used_amount >= 0),
        PRIMARY KEY (rule_id, period)
    );
    CREATE TABLE gift (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL,
        rule_id uuid NOT NULL REFERENCES gift_rule (id) ON DELETE RESTRICT,
        rule_version integer NOT NULL,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE RESTRICT,
        occasion text NOT NULL,
        trigger varchar(32) NOT NULL,
        outcome varchar(16) NOT NULL CONSTRAINT gift_outcome CHECK (outcome IN ('granted', 'held_out')),
        order_id uuid,
        cost_amount bigint NOT NULL CONSTRAINT gift_cost CHECK (cost_amount >= 0),
        currency varchar(3) NOT NULL,
        budget_period varchar(16),
        given jsonb NOT NULL,
        item_status varchar(16) CONSTRAINT gift_item_status CHECK (item_status IN ('in_parcel', 'waiting', 'picked')),
        picked_order_id uuid,
        decided_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        CONSTRAINT gift_once UNIQUE (rule_id, customer_id, occasion)
    );
    CREATE INDEX gift_program ON gift (program_id, created_at, id);
    CREATE INDEX gift_customer ON gift (customer_id, decided_at);
    CREATE INDEX gift_waiting ON gift (customer_id) WHERE item_status = 'waiting';
    CREATE INDEX gift_rule_outcome ON gift (rule_id, outcome, decided_at)
    """
)

BACKWARDS = script(
    """
    DROP TABLE gift;
    DROP TABLE gift_budget;
    DROP TABLE gift_rule_version;
    DROP TABLE gift_rule;
    ALTER TABLE program DROP COLUMN gift_key, DROP COLUMN gift_cooldown_days, DROP COLUMN gifts_revision
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
