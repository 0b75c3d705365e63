"""Constraints Piccolo's column API cannot express: composite uniques, checks, NOT NULL tenants, partial indexes.

The ledger's guarantees rest on these: unique constraints deduplicate retries, checks stop a balance
or a lot from going negative even if application code were wrong.
"""

from sql_migration import script, sql_migration

ID = "2026-11-22T23:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "constraints and indexes"

FORWARDS = """
ALTER TABLE api_key ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE api_key ADD CONSTRAINT api_key_scope CHECK (scope IN ('admin', 'server', 'read'));

ALTER TABLE customer ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE customer ADD CONSTRAINT customer_program_external UNIQUE (program_id, external_id);

ALTER TABLE customer_balance ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE customer_balance ADD CONSTRAINT balance_not_negative
    CHECK (available >= 0 AND pending >= 0 AND debt >= 0);
-- A debt exists only while the customer holds no points: it is settled by them first.
ALTER TABLE customer_balance ADD CONSTRAINT balance_debt_only_when_empty
    CHECK (debt = 0 OR (available = 0 AND pending = 0));

ALTER TABLE orders ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_program_external UNIQUE (program_id, external_id);
ALTER TABLE orders ADD CONSTRAINT orders_amounts CHECK (
    subtotal_amount >= 0 AND discount_amount >= 0 AND shipping_amount >= 0 AND total_amount >= 0
    AND refunded_amount >= 0 AND refunded_amount <= total_amount
    AND points_reversed >= 0 AND points_reversed <= points_earned);
CREATE INDEX orders_customer_placed ON orders (customer_id, placed_at DESC);

ALTER TABLE order_line ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE order_line ALTER COLUMN order_id SET NOT NULL;
ALTER TABLE order_line ADD CONSTRAINT order_line_sku UNIQUE (order_id, sku);
ALTER TABLE order_line ADD CONSTRAINT order_line_amounts CHECK (
    quantity > 0 AND refunded_quantity BETWEEN 0 AND quantity
    AND refunded_amount BETWEEN 0 AND eligible_amount AND refunded_points BETWEEN 0 AND points);

ALTER TABLE refund ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE refund ALTER COLUMN order_id SET NOT NULL;
ALTER TABLE refund ADD CONSTRAINT refund_order_external UNIQUE (order_id, external_id);

ALTER TABLE points_lot ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE points_lot ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE points_lot ADD CONSTRAINT lot_remaining CHECK (remaining BETWEEN 0 AND points);
ALTER TABLE points_lot ADD CONSTRAINT lot_state CHECK (state IN ('pending', 'available', 'expired'));
CREATE INDEX points_lot_open ON points_lot (customer_id) WHERE remaining > 0;
CREATE INDEX points_lot_order ON points_lot (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX points_lot_maturing ON points_lot (available_at) WHERE state = 'pending';
CREATE INDEX points_lot_expiring ON points_lot (expires_at)
    WHERE remaining > 0 AND expires_at IS NOT NULL;

ALTER TABLE points_entry ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE points_entry ALTER COLUMN customer_id SET NOT NULL;
CREATE INDEX points_entry_customer ON points_entry (customer_id, id DESC);

ALTER TABLE points_allocation ALTER COLUMN program_id SET NOT NULL;
ALTER TABLE points_allocation ADD CONSTRAINT allocation_entry
    FOREIGN KEY (entry_id) REFERENCES points_entry (id) ON DELETE RESTRICT;
ALTER TABLE points_allocation ADD CONSTRAINT allocation_lot
    FOREIGN KEY (lot_id) REFERENCES points_lot (id) ON DELETE RESTRICT;
CREATE INDEX points_allocation_lot ON points_allocation (lot_id);
CREATE INDEX points_allocation_entry ON points_allocation (entry_id);

ALTER TABLE idempotency_key ADD CONSTRAINT idempotency_program
    FOREIGN KEY (program_id) REFERENCES program (id) ON DELETE CASCADE;
ALTER TABLE idempotency_key ADD CONSTRAINT idempotency_program_key UNIQUE (program_id, key);

ALTER TABLE outbox ALTER COLUMN program_id SET NOT NULL;
CREATE INDEX outbox_due ON outbox (available_at) WHERE delivered_at IS NULL;
"""

BACKWARDS = """
DROP INDEX IF EXISTS outbox_due;
ALTER TABLE outbox ALTER COLUMN program_id DROP NOT NULL;
ALTER TABLE idempotency_key DROP CONSTRAINT IF EXISTS idempotency_program_key;
ALTER TABLE idempotency_key DROP CONSTRAINT IF EXISTS idempotency_program;
DROP INDEX IF EXISTS points_allocation_entry;
DROP INDEX IF EXISTS points_allocation_lot;
ALTER TABLE points_allocation DROP CONSTRAINT IF EXISTS allocation_lot;
ALTER TABLE points_allocation DROP CONSTRAINT IF EXISTS allocation_entry;
DROP INDEX IF EXISTS points_entry_customer;
DROP INDEX IF EXISTS points_lot_expiring;
DROP INDEX IF EXISTS points_lot_maturing;
DROP INDEX IF EXISTS points_lot_order;
DROP INDEX IF EXISTS points_lot_open;
ALTER TABLE points_lot DROP CONSTRAINT IF EXISTS lot_state;
ALTER TABLE points_lot DROP CONSTRAINT IF EXISTS lot_remaining;
ALTER TABLE refund DROP CONSTRAINT IF EXISTS refund_order_external;
ALTER TABLE order_line DROP CONSTRAINT IF EXISTS order_line_amounts;
ALTER TABLE order_line DROP CONSTRAINT IF EXISTS order_line_sku;
DROP INDEX IF EXISTS orders_customer_placed;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_amounts;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_program_external;
ALTER TABLE customer_balance DROP CONSTRAINT IF EXISTS balance_debt_only_when_empty;
ALTER TABLE customer_balance DROP CONSTRAINT IF EXISTS balance_not_negative;
ALTER TABLE customer DROP CONSTRAINT IF EXISTS customer_program_external;
ALTER TABLE api_key DROP CONSTRAINT IF EXISTS api_key_scope;
"""


forwards = sql_migration(ID, DESCRIPTION, script(FORWARDS), script(BACKWARDS))
