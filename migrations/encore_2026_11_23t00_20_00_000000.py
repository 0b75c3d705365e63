"""Fewer per-row checks on the order hot path.

`program_id` on high-volume child tables is the tenant, denormalised so that every query can filter on
it; its foreign key was a trigger-run check per inserted row (about a dozen per order). The parents
(customer, orders, api_key) keep theirs, and every write takes program_id from the authenticated key.
The tables' Piccolo classes still declare these columns as ForeignKey (Piccolo cannot migrate a
ForeignKey column to a plain UUID); this migration is where the constraint goes away.
`order_line_order_id` duplicated the leading column of the UNIQUE (order_id, sku) index.
"""

from sql_migration import sql_migration

ID = "2026-11-23T00:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "tenant column without foreign key on high-volume child tables"

CHILD_TABLES = (
    "order_line",
    "refund",
    "customer_balance",
    "points_lot",
    "points_entry",
    "points_allocation",
    "outbox",
)

FORWARDS = (
    *(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_program_id_fkey" for table in CHILD_TABLES),
    "DROP INDEX IF EXISTS order_line_order_id",
)
BACKWARDS = (
    *(
        f"ALTER TABLE {table} ADD CONSTRAINT {table}_program_id_fkey FOREIGN KEY (program_id) "
        "REFERENCES program (id) ON UPDATE CASCADE ON DELETE RESTRICT"
        for table in CHILD_TABLES
    ),
    "CREATE INDEX IF NOT EXISTS order_line_order_id ON order_line (order_id)",
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
