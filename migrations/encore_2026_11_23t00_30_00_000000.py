"""Sweep indexes keyed by (time, id): the sweeps walk them as a keyset, each chunk starting where the
last one ended, instead of rescanning the dead index entries that earlier chunks left behind."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-23T00:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "keyset indexes for the ledger sweeps"

FORWARDS = (
    "DROP INDEX IF EXISTS points_lot_maturing",
    "CREATE INDEX points_lot_maturing ON points_lot (available_at, id) WHERE state = 'pending'",
    "DROP INDEX IF EXISTS points_lot_expiring",
    "CREATE INDEX points_lot_expiring ON points_lot (expires_at, id) WHERE remaining > 0 AND expires_at IS NOT NULL",
)
BACKWARDS = (
    "DROP INDEX IF EXISTS points_lot_maturing",
    "CREATE INDEX points_lot_maturing ON points_lot (available_at) WHERE state = 'pending'",
    "DROP INDEX IF EXISTS points_lot_expiring",
    "CREATE INDEX points_lot_expiring ON points_lot (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="encore", description=DESCRIPTION)

    async def run() -> None:
        from service.piccolo_conf import DB

        for statement in FORWARDS:
            await DB.run_ddl(statement)

    async def run_backwards() -> None:
        from service.piccolo_conf import DB

        for statement in BACKWARDS:
            await DB.run_ddl(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
