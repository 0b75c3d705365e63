"""Outbox consumers keep positions instead of marker columns: every outbox row gets its position (tx: the
writing transaction, `pg_current_xact_id()`; seq: a sequence), each consumer a row in `outbox_consumer`
with the position it has passed (service/outbox/consumers.py). `delivered_at` (webhooks) and
`journeys_at` (journeys) go, and with them the columns no code used any more (available_at, always
created_at; attempts, claimed_by, claimed_until, last_error, from before webhook deliveries had their own).

Existing events are numbered so that the ones the webhook dispatcher handled come first: its position is
exact (nothing redelivered, nothing lost). The journeys' position is set before the first event they had
not seen in that order; the events after it that they had seen (not yet dispatched ones) are seen again,
which enters nobody twice (an entry is unique per journey, customer and trigger). The API and the worker
wait for the table lock, so no event is written while this runs."""

from sql_migration import script, sql_migration

ID = "2026-12-02T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Outbox consumer positions"

FORWARDS = script(
    """
    CREATE TABLE outbox_consumer (
        name varchar(64) PRIMARY KEY,
        tx xid8 NOT NULL DEFAULT '0',
        seq bigint NOT NULL DEFAULT 0
    );
    -- A constant default: no table rewrite. Every existing event is older than any transaction to come.
    ALTER TABLE outbox ADD COLUMN tx xid8 NOT NULL DEFAULT '0', ADD COLUMN seq bigint;
    CREATE SEQUENCE outbox_seq_seq AS bigint OWNED BY outbox.seq;
    -- Dispatched (and seen by journeys, then not) first, then not dispatched (seen, then not).
    UPDATE outbox o SET seq = n.seq
    FROM (SELECT id, row_number() OVER (ORDER BY delivered_at IS NULL, journeys_at IS NULL, created_at, id) AS seq
          FROM outbox) n
    WHERE o.id = n.id;
    SELECT setval('outbox_seq_seq', coalesce((SELECT max(seq) FROM outbox), 0) + 1, false);
    ALTER TABLE outbox
        ALTER COLUMN tx SET DEFAULT pg_current_xact_id(),
        ALTER COLUMN seq SET DEFAULT nextval('outbox_seq_seq'),
        ALTER COLUMN seq SET NOT NULL;
    INSERT INTO outbox_consumer (name, tx, seq) VALUES
        ('webhooks', '0', (SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL)),
        ('journeys', '0', (SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL AND journeys_at IS NOT NULL));
    -- Consumers read in position order, housekeeping looks for events past retention.
    CREATE INDEX outbox_position ON outbox (tx, seq);
    CREATE INDEX outbox_created ON outbox (created_at);
    DROP INDEX IF EXISTS outbox_due;
    DROP INDEX IF EXISTS outbox_delivered;
    DROP INDEX IF EXISTS outbox_journeys_due;
    ALTER TABLE outbox
        DROP COLUMN delivered_at, DROP COLUMN journeys_at, DROP COLUMN available_at, DROP COLUMN attempts,
        DROP COLUMN claimed_by, DROP COLUMN claimed_until, DROP COLUMN last_error
    """
)

BACKWARDS = script(
    """
    ALTER TABLE outbox
        ADD COLUMN available_at timestamptz, ADD COLUMN attempts integer NOT NULL DEFAULT 0,
        ADD COLUMN claimed_by varchar(128) DEFAULT NULL, ADD COLUMN claimed_until timestamptz,
        ADD COLUMN delivered_at timestamptz, ADD COLUMN last_error text, ADD COLUMN journeys_at timestamptz;
    -- What a consumer has passed gets its marker (the event's time: when it was handled is not kept).
    -- A webhook test has its one delivery already: the old dispatcher must not fan it out.
    UPDATE outbox o SET available_at = o.created_at,
        delivered_at = CASE WHEN o.topic = 'webhook.test'
                                 OR (o.tx, o.seq) <= (SELECT tx, seq FROM outbox_consumer WHERE name = 'webhooks')
                            THEN o.created_at END,
        journeys_at = CASE WHEN (o.tx, o.seq) <= (SELECT tx, seq FROM outbox_consumer WHERE name = 'journeys')
                           THEN o.created_at END;
    ALTER TABLE outbox ALTER COLUMN available_at SET NOT NULL, ALTER COLUMN available_at SET DEFAULT CURRENT_TIMESTAMP;
    CREATE INDEX outbox_due ON outbox (available_at, id) WHERE delivered_at IS NULL;
    CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
    CREATE INDEX outbox_journeys_due ON outbox (created_at) WHERE journeys_at IS NULL;
    DROP INDEX IF EXISTS outbox_created;
    DROP INDEX IF EXISTS outbox_position;
    ALTER TABLE outbox DROP COLUMN tx, DROP COLUMN seq;
    DROP TABLE IF EXISTS outbox_consumer
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
