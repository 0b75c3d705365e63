"""Rewards and redemptions: the catalogue (`reward`, versioned in `reward_version` once used, like rules),
every code Encore issues (`redemption`: bought with points or given at no cost), and the program's
settings for codes.

- A redemption's code is unique per program on `code_key` (upper case, no dashes: what a lookup matches);
  a grant at no cost (gift, recovery, referral, journey) is deduplicated on `source_key`.
- `stock_left` is NULL for an unlimited reward: only a limited one takes its reward row's lock to issue.
- `redemption.entry_id` is the ledger entry that spent the points; `return_entry_id` the one that gave
  them back (cancel, full refund, expiry when the program says so). No foreign keys to the ledger or to
  orders: parents pin them, and the ledger's tables are written only by the ledger.
- Program: `code_prefix` (optional, shown before every code), `cancel_redemption_on_full_refund` (on),
  `code_expiry_returns_points` (off)."""

from sql_migration import script, sql_migration

ID = "2026-12-05T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Rewards, redemptions and codes"

FORWARDS = script(
    """
    CREATE TABLE reward (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        version integer NOT NULL,
        status varchar(16) NOT NULL CONSTRAINT reward_status CHECK (status IN ('active', 'paused', 'archived')),
        definition jsonb NOT NULL,
        stock_left integer CONSTRAINT reward_stock_left CHECK (stock_left >= 0),
        used boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE INDEX reward_program ON reward (program_id, created_at, id);
    CREATE TABLE reward_version (
        reward_id uuid NOT NULL REFERENCES reward (id) ON DELETE CASCADE,
        version integer NOT NULL,
        definition jsonb NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (reward_id, version)
    );
    CREATE TABLE redemption (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE RESTRICT,
        reward_id uuid NOT NULL REFERENCES reward (id) ON DELETE RESTRICT,
        reward_version integer NOT NULL,
        code varchar(64) NOT NULL,
        code_key varchar(64) NOT NULL,
        status varchar(16) NOT NULL
            CONSTRAINT redemption_status CHECK (status IN ('issued', 'used', 'cancelled', 'expired')),
        source varchar(16) NOT NULL,
        source_key text,
        points bigint NOT NULL CONSTRAINT redemption_points CHECK (points >= 0),
        entry_id bigint,
        discount jsonb NOT NULL,
        value_amount bigint,
        currency varchar(3),
        order_id uuid,
        used_at timestamptz,
        cancelled_at timestamptz,
        expired_at timestamptz,
        return_entry_id bigint,
        points_returned bigint NOT NULL DEFAULT 0,
        expires_at timestamptz,
        expiry_notice smallint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        CONSTRAINT redemption_code UNIQUE (program_id, code_key),
        CONSTRAINT redemption_source UNIQUE (program_id, source_key)
    );
    -- Per-customer limits (a customer's redemptions of one reward since a date) and the customer's list.
    CREATE INDEX redemption_customer ON redemption (customer_id, reward_id, created_at);
    -- The program's list, newest first, filtered by status.
    CREATE INDEX redemption_program ON redemption (program_id, created_at DESC, id DESC);
    -- The expiry sweep and the expiring-soon notices: issued codes by date.
    CREATE INDEX redemption_due ON redemption (expires_at, id) WHERE status = 'issued' AND expires_at IS NOT NULL;
    -- A refund finds the codes its order used.
    CREATE INDEX redemption_order ON redemption (order_id) WHERE order_id IS NOT NULL;
    ALTER TABLE program
        ADD COLUMN code_prefix varchar(12),
        ADD COLUMN cancel_redemption_on_full_refund boolean NOT NULL DEFAULT true,
        ADD COLUMN code_expiry_returns_points boolean NOT NULL DEFAULT false
    """
)

BACKWARDS = script(
    """
    ALTER TABLE program
        DROP COLUMN code_prefix, DROP COLUMN cancel_redemption_on_full_refund,
        DROP COLUMN code_expiry_returns_points;
    DROP TABLE redemption;
    DROP TABLE reward_version;
    DROP TABLE reward
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
