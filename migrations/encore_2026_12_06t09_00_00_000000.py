"""Stripe both ways: a program's connection (keys sealed at rest), the events Stripe sends (stored, then
processed by the worker), the payments Encore has seen (which order a payment intent paid, and what
Stripe charged for it), and the promotion codes Encore keeps in Stripe for its codes.

- `stripe_event` is unique on (program_id, stripe_id): a replayed event finds the first one.
- `stripe_payment` maps a payment intent to the order its checkout became (or will: the shop may post
  it), so a refund or a dispute finds its order; `stripe_refund` holds each refund reversed, once.
- `stripe_code` is the outbound queue and state of one redemption's coupon and promotion code.
- Customers take `stripe_customer_id` (unique per program) and an index for a case-insensitive e-mail
  look-up (which customer a checkout belongs to)."""

from sql_migration import script, sql_migration

ID = "2026-12-06T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Stripe connection, events, payments and promotion codes"

FORWARDS = script(
    """
    CREATE TABLE stripe_connection (
        program_id uuid PRIMARY KEY REFERENCES program (id) ON DELETE CASCADE,
        secret_key text NOT NULL,
        webhook_secret text NOT NULL,
        key_last4 varchar(4) NOT NULL,
        key_kind varchar(16) NOT NULL CONSTRAINT stripe_connection_key_kind CHECK (key_kind IN ('secret', 'restricted')),
        mode varchar(4) NOT NULL CONSTRAINT stripe_connection_mode CHECK (mode IN ('test', 'live')),
        create_orders boolean NOT NULL DEFAULT true,
        sku_metadata_key varchar(40) NOT NULL DEFAULT 'sku',
        category_metadata_key varchar(40) NOT NULL DEFAULT 'category',
        connected_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        last_event_at timestamptz,
        last_error text,
        last_error_at timestamptz
    );
    CREATE TABLE stripe_event (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        stripe_id varchar(255) NOT NULL,
        type varchar(100) NOT NULL,
        livemode boolean NOT NULL,
        api_version varchar(40),
        created timestamptz NOT NULL,
        payload jsonb NOT NULL,
        source varchar(8) NOT NULL CONSTRAINT stripe_event_source CHECK (source IN ('webhook', 'replay')),
        status varchar(10) NOT NULL
            CONSTRAINT stripe_event_status CHECK (status IN ('received', 'processed', 'waiting', 'failed', 'ignored')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        claimed_by text,
        claimed_until timestamptz,
        outcome text,
        last_error text,
        received_at timestamptz NOT NULL,
        processed_at timestamptz,
        CONSTRAINT stripe_event_unique UNIQUE (program_id, stripe_id)
    );
    -- The worker's queue: events still to process, by when they are due.
    CREATE INDEX stripe_event_due ON stripe_event (next_attempt_at) WHERE status IN ('received', 'waiting');
    -- The program's list, newest first.
    CREATE INDEX stripe_event_program ON stripe_event (program_id, received_at DESC, id DESC);
    CREATE TABLE stripe_payment (
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        payment_intent_id varchar(255) NOT NULL,
        session_id varchar(255) NOT NULL,
        order_external_id varchar(255) NOT NULL,
        currency varchar(3) NOT NULL,
        amount_total bigint NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (program_id, payment_intent_id)
    );
    -- Each Stripe refund (or lost dispute) reversed once: `amount` is Stripe's, `order_amount` the order's
    -- money it refunded.
    CREATE TABLE stripe_refund (
        program_id uuid NOT NULL,
        refund_id varchar(255) NOT NULL,
        payment_intent_id varchar(255) NOT NULL,
        amount bigint NOT NULL,
        order_amount bigint NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (program_id, refund_id)
    );
    CREATE INDEX stripe_refund_payment ON stripe_refund (program_id, payment_intent_id);
    CREATE TABLE stripe_code (
        redemption_id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        status varchar(12) NOT NULL
            CONSTRAINT stripe_code_status CHECK (status IN ('pending', 'synced', 'encore_only', 'failed')),
        active_wanted boolean NOT NULL DEFAULT true,
        active boolean NOT NULL DEFAULT false,
        coupon_id varchar(255),
        promotion_code_id varchar(255),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        claimed_by text,
        claimed_until timestamptz,
        last_error text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    -- Work for the worker: codes to create in Stripe, promotion codes to deactivate.
    CREATE INDEX stripe_code_due ON stripe_code (next_attempt_at)
        WHERE status = 'pending' OR (status = 'synced' AND active AND NOT active_wanted);
    -- A checkout's discounts name the promotion code.
    CREATE UNIQUE INDEX stripe_code_promotion ON stripe_code (program_id, promotion_code_id)
        WHERE promotion_code_id IS NOT NULL;
    ALTER TABLE customer ADD COLUMN stripe_customer_id varchar(255);
    CREATE UNIQUE INDEX customer_stripe ON customer (program_id, stripe_customer_id)
        WHERE stripe_customer_id IS NOT NULL;
    CREATE INDEX customer_email_lower ON customer (program_id, lower(email)) WHERE email IS NOT NULL
    """
)

BACKWARDS = script(
    """
    DROP INDEX customer_email_lower;
    DROP INDEX customer_stripe;
    ALTER TABLE customer DROP COLUMN stripe_customer_id;
    DROP TABLE stripe_code;
    DROP TABLE stripe_refund;
    DROP TABLE stripe_payment;
    DROP TABLE stripe_event;
    DROP TABLE stripe_connection
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
