"""The one runner of raw-SQL migrations (no ID: Piccolo takes only modules with one as migrations).

A migration module sets ID, VERSION, DESCRIPTION and `forwards = sql_migration(ID, DESCRIPTION,
FORWARDS, BACKWARDS)`; Piccolo puts this folder on sys.path, so it is imported by its own name.
FORWARDS and BACKWARDS are sequences of single statements, or `script(...)` of a `;`-separated text."""

from collections.abc import Awaitable, Callable, Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager


def script(text: str) -> tuple[str, ...]:
    """The statements of a `;`-separated script, blank and comment-only pieces dropped.

    One statement at a time: Piccolo prepares each DDL string, and a prepared statement holds one command."""
    return tuple(
        statement
        for statement in text.split(";")
        if statement.strip() and not all(line.strip().startswith("--") for line in statement.strip().splitlines())
    )


def sql_migration(
    migration_id: str, description: str, forwards: Sequence[str], backwards: Sequence[str]
) -> Callable[[], Awaitable[MigrationManager]]:
    async def make() -> MigrationManager:
        manager = MigrationManager(migration_id=migration_id, app_name="encore", description=description)

        async def run() -> None:
            from service.piccolo_conf import DB

            for statement in forwards:
                await DB.run_ddl(statement)

        async def run_backwards() -> None:
            from service.piccolo_conf import DB

            for statement in backwards:
                await DB.run_ddl(statement)

        manager.add_raw(run)
        manager.add_raw_backwards(run_backwards)
        return manager

    return make
