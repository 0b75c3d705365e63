"""Entries by order: a refund looks up how much of its order's points expired (and was forgiven)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-23T00:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "points_entry by order"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="encore", description=DESCRIPTION)

    async def run() -> None:
        from service.piccolo_conf import DB

        await DB.run_ddl("CREATE INDEX IF NOT EXISTS points_entry_order ON points_entry (order_id) WHERE order_id IS NOT NULL")

    async def run_backwards() -> None:
        from service.piccolo_conf import DB

        await DB.run_ddl("DROP INDEX IF EXISTS points_entry_order")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
