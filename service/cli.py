"""`encore run | serve | worker | migrate | programs create|add-key | jobs list|run | ledger mature|expire|notices|verify |
codes expire|notices | stripe replay|sign | tiers reevaluate | webhooks listen | secrets new-key|rotate | openapi`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import click
import structlog

from service.core import auth, db
from service.core.logging import configure_logging
from service.settings import Settings

if TYPE_CHECKING:
    from service.core.secrets import SecretBox

T = TypeVar("T")
log = structlog.get_logger("encore.cli")


def _database_url(settings: Settings) -> str:
    return settings.database_url or db.start_embedded(settings.data_dir)


def _secret_box(settings: Settings) -> SecretBox:
    """The settings' box; a bad ENCORE_ENCRYPTION_KEYS is a one-line error, not a traceback."""
    from service.core.secrets import EncryptionKeyError

    try:
        return settings.secret_box()
    except EncryptionKeyError as exc:
        raise click.ClickException(str(exc)) from None


async def _migrated(settings: Settings) -> str:
    """Apply the migrations, then seal the secrets stored in plain text before secrets were sealed (none
    is left behind); say in one line what was done. The keys are checked before anything is written."""
    from service.webhooks.service import seal_plaintext_secrets

    box = _secret_box(settings)
    done = await db.migrate()
    sealed = await seal_plaintext_secrets(box)
    return done + (f"; encrypted {sealed} secrets stored in plain text" if sealed else "")


async def _migrate(settings: Settings) -> None:
    log.info(await _migrated(settings))


def _run_db(settings: Settings, work: Callable[[], Awaitable[T]], *, migrate: bool = True) -> T:
    """Run `work` against the configured (or embedded) database, migrations applied first."""
    db.configure(_database_url(settings))

    async def main() -> T:
        if migrate:
            await _migrate(settings)
        await db.open_pool(1, 4)
        try:
            return await work()
        finally:
            await db.close_pool()

    return asyncio.run(main())


_RELATIVE = re.compile(r"([+-])((?:\d+[wdhms])+)")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_FORMS = "give RFC 3339 with a zone (2027-01-15T09:00:00Z) or a time relative to now (+5d, +2h, +30m)"


def parse_now(value: str, real_now: datetime) -> datetime:
    """A `--now`: RFC 3339 with a zone (`2027-01-15T09:00:00Z`), or relative to the real now as a person
    types it (`+5d`, `+2h`, `+30m`, `+1d12h`, `-3d`; units w d h m s). Aware UTC, within the range the
    API accepts; ValueError says what is wrong."""
    from service.core.strict_input import TIME_MAX, TIME_MIN, TIME_RANGE

    text = value.strip()
    try:
        if relative := _RELATIVE.fullmatch(text):
            sign, parts = relative.groups()
            delta = sum(
                (timedelta(**{_UNITS[unit]: int(n)}) for n, unit in re.findall(r"(\d+)([wdhms])", parts)),
                timedelta(),
            )
            moment = real_now + delta if sign == "+" else real_now - delta
        else:
            try:
                parsed = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lower-case t and z
            except ValueError as exc:  # Python's own words only when they say more ("month must be in 1..12")
                detail = "not a time" if str(exc).startswith("Invalid isoformat") else str(exc)
                raise ValueError(f"{detail}; {_FORMS}") from exc
            if parsed.tzinfo is None:
                raise ValueError(f"a time zone is missing; {_FORMS}")
            moment = parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"a time must be {TIME_RANGE}") from exc
    if not TIME_MIN <= moment < TIME_MAX:
        raise ValueError(f"a time must be {TIME_RANGE}")
    return moment


class _Now(click.ParamType[datetime, Any]):
    """One parser for every `--now` of the CLI."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_now(str(value), datetime.now(UTC))
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


NOW = _Now()
NOW_HELP = "pretend it is this time: RFC 3339 with a zone, or relative to now (+5d, +2h, +30m)"


def _run_job(name: str, at: datetime | None) -> str:
    """One run of a worker job at `at` (a frozen clock) or now, recorded in `job_run` as the worker records
    its runs (at the real time: the worker id names the simulated one); returns what it did. A failure
    exits 1 with the job's error."""
    from service.core.clock import FrozenClock, SystemClock
    from service.scheduler.worker import Worker, new_worker_id

    settings = Settings.from_env()
    # The worker id says this run came from the CLI, and at which time, in `encore jobs runs`.
    worker_id = f"encore jobs run{f' --now {at:%Y-%m-%dT%H:%M:%SZ}' if at else ''} ({new_worker_id()})"[:128]
    worker = Worker(settings, FrozenClock(at) if at else None, worker_id, record_clock=SystemClock())
    if name not in {job.name for job in worker.jobs()}:
        raise click.BadParameter(f"no job {name!r} (`encore jobs list` names them)", param_hint="NAME")
    recorded = _run_db(settings, lambda: worker.run_once(name))
    if recorded.done is None:
        raise click.ClickException(f"{name} failed: {recorded.error}")
    return recorded.done.summary


@click.group()
def main() -> None:
    """Encore: loyalty and retention service."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)


@main.command()
def migrate() -> None:
    """Apply the Piccolo migrations, then encrypt any secret still stored in plain text."""
    settings = Settings.from_env()
    db.configure(_database_url(settings))
    click.echo(asyncio.run(_migrated(settings)))


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
    # The API has just migrated: the worker need not (nor say so a second time).
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--no-migrate"], env=env)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM (unless it is stopping already: Ctrl-C reaches the whole process group), then SIGKILL
    after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _serve(settings: Settings, host: str, port: int, demo: bool) -> None:
    import uvicorn

    from service.app import create_app
    from service.core.limits import server_options

    url = _database_url(settings)
    settings = settings.with_database(url)
    if demo:
        settings = replace(settings, webhooks_allow_local_http=True)
    db.configure(url)

    async def prepare() -> tuple[Any, str] | None:
        await _migrate(settings)
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
        # The head of a request is bounded where it is parsed (httptools alone reads any size).
        options = server_options(settings)
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, **options)
    finally:
        if worker is not None:
            stop_process(worker)


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
@click.option("--no-migrate", is_flag=True, hidden=True, help="the schema is known to be current")
def worker(no_migrate: bool) -> None:
    """Run the scheduled jobs: outbox dispatch, webhook delivery, ledger sweeps, housekeeping."""
    from service.scheduler.worker import main as worker_main

    settings = Settings.from_env()
    url = _database_url(settings)
    db.configure(url)
    if no_migrate:
        _secret_box(settings)  # checked as _migrate checks it: a bad key stops the worker here
    else:
        asyncio.run(_migrate(settings))
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


@programs.command("add-key")
@click.option("--program", "program_id", required=True, type=click.UUID, help="the program's id")
@click.option("--name", required=True)
@click.option(
    "--scope",
    required=True,
    type=click.Choice(auth.SCOPE_NAMES),
    help="read, server (a shop's backend), agent (customer care), marketer (the programme's design) or admin",
)
@click.option("--json", "as_json", is_flag=True, help="print {key_id, api_key, scope} as JSON")
def programs_add_key(program_id: UUID, name: str, scope: auth.Scope, as_json: bool) -> None:
    """Give a program another API key and print it (shown once). The README's Scopes table says what each
    scope may do."""
    from service.core.errors import Problem
    from service.programs import service as programs_service

    async def work() -> Any:
        async with db.transaction() as conn:
            await programs_service.load(conn, program_id)  # 404 for an unknown program, before the insert
            return await programs_service.create_key(conn, program_id, name, scope, datetime.now(UTC))

    try:
        created = _run_db(Settings.from_env(), work)
    except Problem as exc:
        raise click.ClickException(exc.detail) from exc
    if as_json:
        click.echo(
            json.dumps({"key_id": str(created.id), "api_key": created.api_key, "scope": created.scope})
        )
    else:
        click.echo(f"{scope} API key {created.prefix}… ({name}): {created.api_key}")


@main.group()
def jobs() -> None:
    """The worker's jobs, one run at a time (development: at any time with --now)."""


@jobs.command("list")
def jobs_list() -> None:
    """Name each worker job, how often the worker runs it, and what it does."""
    from service.scheduler.worker import Worker

    for job in Worker(Settings.from_env()).jobs():
        click.echo(f"{job.name:<22} every {_every(job.interval_seconds):<7} {job.about}")


def _every(seconds: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


@jobs.command("runs")
@click.option(
    "--recent", type=click.IntRange(0, 100), default=3, show_default=True, help="runs shown per job"
)
def jobs_runs(recent: int) -> None:
    """The worker's runs for every program (operators only): per job the last success, the last error,
    runs and rows in the last hour, and the recent runs with their worker."""
    from service.scheduler import runs

    async def summary() -> list[dict[str, Any]]:
        async with db.connection() as conn:
            return await runs.summary(conn, datetime.now(UTC), recent)

    for job in _run_db(Settings.from_env(), summary):
        last = f"{job['last_success_at']:%Y-%m-%d %H:%M:%S}" if job["last_success_at"] else "never"
        click.echo(
            f"{job['job']:<22} last success {last}; last hour {job['runs_last_hour']} runs, "
            f"{job['rows_last_hour']} rows"
        )
        if job["last_error"]:
            click.echo(f"  last error at {job['last_error_at']:%Y-%m-%d %H:%M:%S}: {job['last_error']}")
        for run in db.json_value(job["runs"]):
            error = f" error: {run['error']}" if run["error"] else ""
            click.echo(f"  {run['started_at'][:19]} {run['worker']} rows={run['rows']}{error}")


@jobs.command("run")
@click.argument("name")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
def jobs_run(name: str, now: datetime | None) -> None:
    """Run the job NAME once, as the worker runs it (recorded in job_run), and say what it did.

    With --now the job's clock stands at that time: `encore jobs run journeys.advance --now +5d`
    takes the journey steps due in five days. Events it writes are delivered by the worker at once.
    """
    summary = _run_job(name, now)
    click.echo(f"{name}{f' at {now:%Y-%m-%d %H:%M:%S} UTC' if now else ''}: {summary}")


@main.group()
def ledger() -> None:
    """Ledger sweeps and checks."""


@ledger.command("mature")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
def ledger_mature(now: datetime | None) -> None:
    """Make pending points whose return window has passed available (`jobs run ledger.mature`)."""
    click.echo(_run_job("ledger.mature", now))


@ledger.command("expire")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
def ledger_expire(now: datetime | None) -> None:
    """Expire the points of lots past their expiry date (`jobs run ledger.expire`)."""
    click.echo(_run_job("ledger.expire", now))


@ledger.command("notices")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
def ledger_notices(now: datetime | None) -> None:
    """Write `points.expiring_soon` events for points expiring within 30 and 7 days, once each
    (`jobs run ledger.expiry_notices`)."""
    click.echo(_run_job("ledger.expiry_notices", now))


@main.group()
def codes() -> None:
    """Reward code sweeps."""


@codes.command("expire")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
def codes_expire(now: datetime | None) -> None:
    """Expire the unused codes past their date; their points go back only if the program says so
    (`jobs run rewards.expire`)."""
    click.echo(_run_job("rewards.expire", now))


@codes.command("notices")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
def codes_notices(now: datetime | None) -> None:
    """Write `redemption.expiring_soon` events for unused codes expiring within 7 days, once each
    (`jobs run rewards.expiry_notices`)."""
    click.echo(_run_job("rewards.expiry_notices", now))


@main.group("stripe")
def stripe_group() -> None:
    """The Stripe integration: replay a saved event, sign one for a local test."""


@stripe_group.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--program", "program_id", required=True, help="the program's id")
def stripe_replay(file: Path, program_id: str) -> None:
    """Feed a saved Stripe event (its JSON, as Stripe sent it or as the Dashboard shows it) through the
    path a received one takes: stored once (no signature: this is you, not the network), then processed
    at once as the worker would. An event the program has already is not processed twice; its state is
    shown (`POST /v1/stripe/events/{id}/retry` processes a failed one again)."""
    from service.core.clock import SystemClock
    from service.scheduler.worker import new_worker_id
    from service.stripe import inbound
    from service.stripe import service as stripe

    settings = Settings.from_env()
    body = file.read_bytes()
    try:
        program = UUID(program_id)
        event = stripe.parse_saved(body)
    except ValueError:
        raise click.BadParameter("not a program id", param_hint="--program") from None
    except Exception as exc:
        raise click.ClickException(f"{file}: {getattr(exc, 'detail', exc)}") from None
    clock = SystemClock()

    async def work() -> str:
        async with db.transaction() as conn:
            received = await stripe.replay(conn, program, event, body, clock.now())
        if not received.duplicate and received.status == "received":
            await inbound.Processor(settings, clock, new_worker_id()).run(ids=[received.id], limit=1)
        async with db.connection() as conn:
            shown = await stripe.get_event(conn, program, received.id)
        again = " (stored before: not processed again)" if received.duplicate else ""
        said = shown.outcome or shown.last_error or ""
        return f"{event.type} {event.id}: {shown.status}{again}" + (f": {said}" if said else "")

    try:
        click.echo(_run_db(settings, work))
    except Exception as exc:
        if hasattr(exc, "detail"):
            raise click.ClickException(str(exc.detail)) from None
        raise


@stripe_group.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--secret", envvar="ENCORE_STRIPE_WEBHOOK_SECRET", required=True, help="the webhook signing secret"
)
def stripe_sign(file: Path, secret: str) -> None:
    """Print the `Stripe-Signature` header Stripe would send with this body now (for trying the webhook
    locally: post the file with it within five minutes)."""
    import time

    import stripe

    click.echo(
        stripe.WebhookSignature.generate_signature_header(
            file.read_text(), secret, timestamp=int(time.time())
        )
    )


@main.group()
def tiers() -> None:
    """VIP tiers."""


@tiers.command("reevaluate")
@click.option("--now", type=NOW, default=None, help=NOW_HELP)
@click.option("--program", "program_id", default=None, help="only this program (its id)")
def tiers_reevaluate(now: datetime | None, program_id: str | None) -> None:
    """Re-evaluate every customer's tier: upgrades, downgrade warnings, downgrades (idempotent).
    For all programs this is `jobs run tiers.reevaluate`."""
    from uuid import UUID

    from service.scheduler.worker import tiers_summary
    from service.tiers import jobs as tier_jobs

    if program_id is None:
        click.echo(_run_job("tiers.reevaluate", now))
        return
    try:
        program = UUID(program_id)
    except ValueError as exc:
        raise click.BadParameter("a program id is a UUID", param_hint="--program") from exc
    at = now or datetime.now(UTC)
    result = _run_db(Settings.from_env(), lambda: tier_jobs.reevaluate(at, program))
    click.echo(tiers_summary(result))


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


@main.group()
def webhooks() -> None:
    """Webhooks: a local receiver for development."""


@webhooks.command("listen")
@click.option("--port", default=9999, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--secret", default=None, help="the endpoint's signing secret (whsec_...): check each signature"
)
def webhooks_listen(port: int, host: str, secret: str | None) -> None:
    """Development: receive webhook deliveries on any path, answer 200 and print each one."""
    from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

    verifier = None
    if secret is not None:
        try:
            verifier = Webhook(secret)
        except (ValueError, EmptyWebhookSecretError) as exc:  # ValueError: not base64 after whsec_
            raise click.BadParameter("a signing secret is whsec_ and base64", param_hint="--secret") from exc
    from service.webhooks.listen import listen

    listen(host, port, verifier, click.echo)


@main.group("secrets")
def secrets_group() -> None:
    """Secrets kept encrypted in the database (webhook signing secrets): keys and their rotation."""


@secrets_group.command("new-key")
def secrets_new_key() -> None:
    """Print a new encryption key for ENCORE_ENCRYPTION_KEYS (the first key there encrypts)."""
    from service.core.secrets import new_key

    click.echo(new_key())


@secrets_group.command("rotate")
@click.option(
    "--batch", default=200, show_default=True, type=click.IntRange(1, 10_000), help="rows a transaction"
)
def secrets_rotate(batch: int) -> None:
    """Re-encrypt every encrypted secret under the first key of ENCORE_ENCRYPTION_KEYS, in batches of row-
    locked transactions: safe while the API and the worker run (restart them with the new key first),
    and idempotent. Exits 1, naming each, when a value opens with none of the keys."""
    from service.core import idempotency, secrets
    from service.stripe import repository as stripe
    from service.webhooks import repository as webhooks

    settings = Settings.from_env()
    box = _secret_box(settings)
    # Every store of encrypted values.
    stores = [webhooks.SEALED_SECRETS, stripe.SEALED_SECRETS, idempotency.SEALED_RESPONSES]

    async def work() -> list[secrets.Resealed]:
        return [await secrets.reseal(store, box.rotate, batch=batch) for store in stores]

    results = _run_db(settings, work)
    rotated = sum(r.changed for r in results)
    values = sum(r.values for r in results)
    each = ", ".join(f"{r.store}s: {r.changed} of {r.values}" for r in results)
    click.echo(f"rotated {rotated} of {values} encrypted values to the first key ({each})")
    failures = [failure for r in results for failure in r.failures]
    if failures:
        for failure in failures:
            click.echo(f"- {failure}", err=True)
        raise click.ClickException(
            f"{len(failures)} values could not be decrypted and were left as they are; an endpoint's secret "
            "is replaced by rotating it (POST /v1/webhook-endpoints/{id}/rotate-secret, overlap_seconds 0)"
        )


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
