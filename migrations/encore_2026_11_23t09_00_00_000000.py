"""Worker: outbound webhook endpoints and deliveries, job runs, expiry notices on lots.

Written as SQL (like the constraint migrations) so the partial indexes and the foreign keys with
cascades are exactly what the sweeps' queries rely on.
"""

from sql_migration import sql_migration

ID = "2026-11-23T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhooks, job runs, expiry notices"

FORWARDS = (
    """
    CREATE TABLE webhook_endpoint (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        url text NOT NULL,
        description text NOT NULL DEFAULT '',
        event_types text[] NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        disabled_reason text,
        secret text NOT NULL,
        previous_secret text,
        previous_secret_until timestamptz,
        failing_since timestamptz,
        last_success_at timestamptz,
        last_failure_at timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX webhook_endpoint_program ON webhook_endpoint (program_id, created_at, id)",
    """
    CREATE TABLE webhook_delivery (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        program_id uuid NOT NULL,
        endpoint_id uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
        event_id uuid NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        topic varchar(64) NOT NULL,
        status text NOT NULL DEFAULT 'pending'
            CONSTRAINT webhook_delivery_status CHECK (status IN ('pending', 'succeeded', 'dead', 'paused')),
        attempts integer NOT NULL DEFAULT 0 CONSTRAINT webhook_delivery_attempts CHECK (attempts >= 0),
        next_attempt_at timestamptz NOT NULL,
        window_started_at timestamptz NOT NULL,
        claimed_by text,
        claimed_until timestamptz,
        last_attempt_at timestamptz,
        last_status_code integer,
        last_latency_ms integer,
        last_error text,
        created_at timestamptz NOT NULL,
        finished_at timestamptz,
        CONSTRAINT webhook_delivery_once UNIQUE (event_id, endpoint_id)
    )
    """,
    "CREATE INDEX webhook_delivery_due ON webhook_delivery (next_attempt_at, id) WHERE status = 'pending'",
    "CREATE INDEX webhook_delivery_endpoint ON webhook_delivery (endpoint_id, id)",
    "CREATE INDEX webhook_delivery_unfinished ON webhook_delivery (status) WHERE status IN ('dead', 'paused')",
    """
    CREATE TABLE job_run (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job text NOT NULL,
        worker text NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        rows integer,
        error text
    )
    """,
    "CREATE INDEX job_run_job ON job_run (job, id)",
    "CREATE INDEX job_run_started ON job_run (started_at)",
    # 0: no notice yet; 30: the 30-day notice went out; 7: the 7-day one did (each is sent once).
    "ALTER TABLE points_lot ADD COLUMN expiry_notice smallint NOT NULL DEFAULT 0",
    """
    CREATE INDEX points_lot_expiry_notice ON points_lot (expiry_notice, expires_at, id)
    WHERE remaining > 0 AND expires_at IS NOT NULL AND expiry_notice <> 7
    """,
    # Undelivered outbox rows in (available_at, id) order for the dispatcher's claims.
    "DROP INDEX IF EXISTS outbox_due",
    "CREATE INDEX outbox_due ON outbox (available_at, id) WHERE delivered_at IS NULL",
    "CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL",
    "CREATE INDEX idempotency_key_created ON idempotency_key (created_at)",
)

BACKWARDS = (
    "DROP INDEX IF EXISTS idempotency_key_created",
    "DROP INDEX IF EXISTS outbox_delivered",
    "DROP INDEX IF EXISTS outbox_due",
    "CREATE INDEX outbox_due ON outbox (available_at) WHERE delivered_at IS NULL",
    "DROP INDEX IF EXISTS points_lot_expiry_notice",
    "ALTER TABLE points_lot DROP COLUMN IF EXISTS expiry_notice",
    "DROP TABLE IF EXISTS job_run",
    "DROP TABLE IF EXISTS webhook_delivery",
    "DROP TABLE IF EXISTS webhook_endpoint",
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
