"""`encore run | serve | worker | migrate | programs create | ledger mature|expire|notices|verify |
tiers reevaluate | openapi`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from service.core import db
from service.core.logging import configure_logging
from service.settings import Settings

T = TypeVar("T")


def _database_url(settings: Settings) -> str:
    return settings.database_url or db.start_embedded(settings.data_dir)


def _run_db(settings: Settings, work: Callable[[], Awaitable[T]], *, migrate: bool = True) -> T:
    """Run `work` against the configured (or embedded) database, migrations applied first."""
    db.configure(_database_url(settings))

    async def main() -> T:
        if migrate:
            await db.migrate()
        await db.open_pool(1, 4)
        try:
            return await work()
        finally:
            await db.close_pool()

    return asyncio.run(main())


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-01-01T00:00:00Z", param_hint="--now")
    return parsed.astimezone(UTC)


@click.group()
def main() -> None:
    """Encore: loyalty and retention service."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)


@main.command()
def migrate() -> None:
    """Apply the Piccolo migrations."""
    settings = Settings.from_env()
    db.configure(_database_url(settings))
    asyncio.run(db.migrate())
    click.echo("migrations applied")


async def _create_demo_program() -> tuple[Any, str] | None:
    """A demo program on an empty database; None when programs exist already."""
    from service.programs import service as programs

    async with db.transaction() as conn:
        if not await programs.is_empty(conn):
            return None
        return await programs.create_program(conn, "Demo Shop", "EUR", datetime.now(UTC))


def _announce_demo_key(created: tuple[Any, str] | None, data_dir: Path) -> None:
    key_file = data_dir / "demo-api-key"
    if created is None:
        if key_file.exists():
            click.echo(f"demo program's admin API key: {key_file.read_text().strip()}  (from {key_file})")
        return
    program, key = created
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    click.echo(f"created demo program {program.id}; admin API key: {key}  (saved to {key_file})")


def _start_worker(url: str, host: str, port: int) -> subprocess.Popen[bytes]:
    """The worker as its own process on the same database (development: local webhooks allowed; links in
    messages lead to this API unless ENCORE_PUBLIC_URL says otherwise)."""
    env = os.environ | {"ENCORE_DATABASE_URL": url, "ENCORE_WEBHOOKS_ALLOW_LOCAL_HTTP": "1"}
    env.setdefault("ENCORE_WORKER_METRICS_PORT", str(port + 1))
    env.setdefault("ENCORE_PUBLIC_URL", f"http://{host}:{port}")
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env)


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Ctrl-C reaches the whole process group, so the worker is usually stopping already."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _serve(settings: Settings, host: str, port: int, demo: bool) -> None:
    import uvicorn

    from service.app import create_app

    url = _database_url(settings)
    settings = settings.with_database(url)
    if demo:
        settings = replace(settings, webhooks_allow_local_http=True)
    db.configure(url)

    async def prepare() -> tuple[Any, str] | None:
        await db.migrate()
        if not demo:
            return None
        await db.open_pool(1, 2)
        try:
            return await _create_demo_program()
        finally:
            await db.close_pool()

    created = asyncio.run(prepare())
    if demo:
        _announce_demo_key(created, settings.data_dir)
    worker = _start_worker(url, host, port) if demo else None
    click.echo(f"Encore API on http://{host}:{port}  (OpenAPI: http://{host}:{port}/schema)")
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
    finally:
        if worker is not None:
            _stop_worker(worker)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Development: migrate, create a demo program on an empty database, serve the API and run the worker."""
    _serve(Settings.from_env(), host, port, demo=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the API (migrations applied first)."""
    _serve(Settings.from_env(), host, port, demo=False)


@main.command()
def worker() -> None:
    """Run the scheduled jobs: outbox dispatch, webhook delivery, ledger sweeps, housekeeping."""
    from service.scheduler.worker import main as worker_main

    settings = Settings.from_env()
    url = _database_url(settings)
    db.configure(url)
    asyncio.run(db.migrate())
    click.echo("Encore worker started (Ctrl-C stops it after the running deliveries finish)")
    import uvloop

    uvloop.run(worker_main(settings.with_database(url)))


@main.group()
def programs() -> None:
    """Programs (tenants)."""


@programs.command("create")
@click.option("--name", required=True)
@click.option("--currency", required=True, help="ISO 4217 base currency, e.g. EUR")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print {program_id, api_key} as JSON")
def programs_create(name: str, currency: str, timezone: str, as_json: bool) -> None:
    """Create a program and print its admin API key (shown once)."""
    from service.core.errors import Problem
    from service.programs import service as programs_service

    async def work() -> tuple[Any, str]:
        async with db.transaction() as conn:
            return await programs_service.create_program(
                conn, name, currency.upper(), datetime.now(UTC), timezone
            )

    try:
        program, key = _run_db(Settings.from_env(), work)
    except Problem as exc:
        raise click.ClickException(f"{exc.field}: {exc.detail}" if exc.field else exc.detail) from exc
    if as_json:
        click.echo(json.dumps({"program_id": str(program.id), "api_key": key}))
    else:
        click.echo(f"program {program.id} ({program.name}, {program.base_currency})\nadmin API key: {key}")


@main.group()
def ledger() -> None:
    """Ledger sweeps and checks."""


@ledger.command("mature")
@click.option("--now", default=None, help="pretend it is this time (ISO 8601 with zone)")
def ledger_mature(now: str | None) -> None:
    """Make pending points whose return window has passed available."""
    from service.ledger import jobs

    at = _parse_now(now)
    result = _run_db(Settings.from_env(), lambda: jobs.mature(at))
    click.echo(f"matured {result.lots} lots, {result.points} points, in {result.chunks} chunks")


@ledger.command("expire")
@click.option("--now", default=None, help="pretend it is this time (ISO 8601 with zone)")
def ledger_expire(now: str | None) -> None:
    """Expire the points of lots past their expiry date."""
    from service.ledger import jobs

    at = _parse_now(now)
    result = _run_db(Settings.from_env(), lambda: jobs.expire(at))
    click.echo(f"expired {result.lots} lots, {result.points} points, in {result.chunks} chunks")


@ledger.command("notices")
@click.option("--now", default=None, help="pretend it is this time (ISO 8601 with zone)")
def ledger_notices(now: str | None) -> None:
    """Write `points.expiring_soon` events for points expiring within 30 and 7 days (once each)."""
    from service.ledger import jobs

    at = _parse_now(now)
    result = _run_db(Settings.from_env(), lambda: jobs.expiry_notices(at))
    click.echo(f"expiry notices for {result.lots} lots, {result.points} points, in {result.chunks} chunks")


@main.group()
def tiers() -> None:
    """VIP tiers."""


@tiers.command("reevaluate")
@click.option("--now", default=None, help="pretend it is this time (ISO 8601 with zone)")
@click.option("--program", "program_id", default=None, help="only this program (its id)")
def tiers_reevaluate(now: str | None, program_id: str | None) -> None:
    """Re-evaluate every customer's tier: upgrades, downgrade warnings, downgrades (idempotent)."""
    from uuid import UUID

    from service.tiers import jobs

    at = _parse_now(now)
    try:
        program = UUID(program_id) if program_id else None
    except ValueError as exc:
        raise click.BadParameter("a program id is a UUID", param_hint="--program") from exc
    result = _run_db(Settings.from_env(), lambda: jobs.reevaluate(at, program))
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.counts.items())) or "no change"
    click.echo(f"looked at {result.customers} customers whose tier could change: {counts}")


@ledger.command("verify")
def ledger_verify() -> None:
    """Check every cached balance against lots, allocations and entries; exit 1 on any difference."""
    from service.ledger import jobs

    report = _run_db(Settings.from_env(), jobs.verify)
    counts = ", ".join(f"{n} {table}" for table, n in report.counts.items())
    if report.ok:
        click.echo(f"ledger consistent: {counts}")
        return
    click.echo(f"LEDGER INCONSISTENT ({counts})", err=True)
    for label, rows in report.problems.items():
        click.echo(f"- {label}:", err=True)
        for row in rows:
            click.echo(f"    {row['subject']}: cached {row['cached']}, derived {row['derived']}", err=True)
    sys.exit(1)


@main.command()
@click.option("--out", default="openapi/openapi.json", show_default=True, type=click.Path(dir_okay=False))
def openapi(out: str) -> None:
    """Write the OpenAPI document."""
    from service.app import openapi_document

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(openapi_document())
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
