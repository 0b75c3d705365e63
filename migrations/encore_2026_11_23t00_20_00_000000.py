"""Fewer per-row checks on the order hot path.

`program_id` on high-volume child tables is the tenant, denormalised so that every query can filter on
it; its foreign key was a trigger-run check per inserted row (about a dozen per order). The parents
(customer, orders, api_key) keep theirs, and every write takes program_id from the authenticated key.
The tables' Piccolo classes still declare these columns as ForeignKey (Piccolo cannot migrate a
ForeignKey column to a plain UUID); this migration is where the constraint goes away.
`order_line_order_id` duplicated the leading column of the UNIQUE (order_id, sku) index.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

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


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="encore", description=DESCRIPTION)

    async def run() -> None:
        from service.piccolo_conf import DB

        for table in CHILD_TABLES:
            await DB.run_ddl(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_program_id_fkey")
        await DB.run_ddl("DROP INDEX IF EXISTS order_line_order_id")

    async def run_backwards() -> None:
        from service.piccolo_conf import DB

        for table in CHILD_TABLES:
            await DB.run_ddl(
                f"ALTER TABLE {table} ADD CONSTRAINT {table}_program_id_fkey FOREIGN KEY (program_id) "
                "REFERENCES program (id) ON UPDATE CASCADE ON DELETE RESTRICT"
            )
        await DB.run_ddl("CREATE INDEX IF NOT EXISTS order_line_order_id ON order_line (order_id)")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
