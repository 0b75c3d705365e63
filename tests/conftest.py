"""Test harness: a fresh PostgreSQL database per run (ENCORE_TEST_DATABASE_URL's server, else the embedded
one), migrated with the real migrations, emptied between tests; the app under a frozen clock."""

from __future__ import annotations

import base64
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.core import db
from service.core.clock import FrozenClock
from service.settings import Settings
from tests.support.logscan import leaks_in
from tests.support.stripe_stub import StripeStub

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
# One encryption key for the tests' app and every `encore` process they start (these inherit the
# environment), whatever ENCORE_DATA_DIR each is given; a development key would differ between them.
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"encore tests: secrets at rest 32").decode()
os.environ["ENCORE_ENCRYPTION_KEYS"] = ENCRYPTION_KEY
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# Every table of the migrated schema but Piccolo's `migration` (emptied between tests, counted by
# table_counts): read from the database once per run, so a new migration's tables are in it by themselves.
TABLES: list[str] = []


# Every log line of the run, this process's and its `encore` subprocesses' (they inherit the variable),
# is appended here and scanned when the run ends: a full e-mail address, a secret or a token fails it.
LOG_FILE = Path(tempfile.gettempdir()) / f"encore-test-log-{os.getpid()}.log"


def pytest_configure(config: pytest.Config) -> None:
    LOG_FILE.unlink(missing_ok=True)
    os.environ["ENCORE_LOG_FILE"] = str(LOG_FILE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    lines, found = leaks_in(LOG_FILE)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log scan: {lines} lines of this run's logs, {len(found)} leaks")
        for what, line in found[:20]:
            reporter.write_line(f"  {what}: {line[:300]}")
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    LOG_FILE.unlink(missing_ok=True)


def iso(moment: datetime) -> str:
    """How the API writes a time: RFC 3339 in UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get("ENCORE_TEST_DATABASE_URL")
    if url:
        return url
    return db.start_embedded(ROOT / ".data" / "test")


async def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database on `server_url`'s server; its URL (drop it with drop_database)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return _with_database(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
    finally:
        await admin.close()


async def public_tables(url: str) -> list[str]:
    """The tables of the public schema, Piccolo's migration record left out."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'migration' ORDER BY 1"
        )
    finally:
        await conn.close()
    return [row["tablename"] for row in rows]


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A brand-new database for this run, so nothing depends on leftovers of earlier runs."""
    url = await create_database(server_url, "encore_test")
    db.configure(url)
    await db.migrate()
    TABLES[:] = await public_tables(url)
    yield url
    await drop_database(server_url, url)


@pytest.fixture(scope="session")
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture(scope="session")
def stripe_api() -> Iterator[StripeStub]:
    """One local Stripe API for the session (the app's ENCORE_STRIPE_API_BASE); `stripe_stub` resets it."""
    with StripeStub() as stub:
        yield stub


@pytest.fixture
def stripe_stub(stripe_api: StripeStub) -> StripeStub:
    stripe_api.reset()
    return stripe_api


@pytest.fixture(scope="session")
def app(database_url: str, clock: FrozenClock, stripe_api: StripeStub) -> Litestar:
    return create_app(settings_for(database_url, stripe_api_base=stripe_api.url), clock=clock)


def settings_for(database_url: str, **overrides: Any) -> Settings:
    """The tests' settings: local http webhooks allowed, short webhook timeouts."""
    base = Settings(
        database_url=database_url,
        db_pool_min=2,
        db_pool_max=60,
        webhooks_allow_local_http=True,
        webhook_timeout_seconds=2.0,
        encryption_keys=(ENCRYPTION_KEY,),
    )
    return replace(base, **overrides)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client


def in_app(client: AsyncTestClient[Litestar], fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run database work on the app's event loop: AsyncTestClient runs the app (and its connection pool)
    in a portal thread, so the tests' own queries go there too."""
    return client.blocking_portal.call(fn, *args)


async def _truncate() -> None:
    async with db.connection() as conn:
        names = ", ".join(f'"{table}"' for table in TABLES)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest, clock: FrozenClock) -> None:
    clock.set(START)
    if "client" in request.fixturenames:
        in_app(request.getfixturevalue("client"), _truncate)


class Api:
    """A program and its admin key, with helpers that speak the API."""

    def __init__(self, client: AsyncTestClient[Litestar], program_id: str, key: str) -> None:
        self.client = client
        self.program_id = program_id
        self.key = key

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}", **extra}

    async def order(self, external_id: str, customer: str = "c-1", **overrides: Any) -> Any:
        body = order_body(external_id, customer, **overrides)
        headers = self.headers(**({"Idempotency-Key": overrides.pop("key")} if "key" in overrides else {}))
        return await self.client.post("/v1/orders", json=body, headers=headers)

    async def status(self, customer: str = "c-1") -> dict[str, Any]:
        response = await self.client.get(f"/v1/customers/{customer}", headers=self.headers())
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def idempotency() -> dict[str, str]:
    """A fresh Idempotency-Key header, for the creating POSTs that require one: `api.headers(**idempotency())`."""
    return {"Idempotency-Key": uuid.uuid4().hex}


def order_body(external_id: str, customer: str = "c-1", **overrides: Any) -> dict[str, Any]:
    overrides.pop("key", None)
    lines = overrides.pop(
        "lines",
        [
            {"sku": "SHOE-1", "name": "Trail shoe", "category": "Shoes", "quantity": 1, "unit_amount": 6000},
            {"sku": "SOCK-3", "name": "Socks", "category": "Socks", "quantity": 3, "unit_amount": 1000},
        ],
    )
    subtotal = sum(line["quantity"] * line["unit_amount"] for line in lines)
    discount = overrides.pop("discount_amount", 0)
    shipping = overrides.pop("shipping_amount", 0)
    body = {
        "external_id": external_id,
        "customer": {"external_id": customer},
        "currency": "EUR",
        "placed_at": START.isoformat(),
        "lines": lines,
        "discount_amount": discount,
        "shipping_amount": shipping,
        "total_amount": subtotal - discount + shipping,
    }
    body.update(overrides)
    return body


def make_program(client: AsyncTestClient[Litestar], name: str = "Shop", currency: str = "EUR") -> Api:
    from service.programs import service as programs

    async def create() -> tuple[Any, str]:
        async with db.transaction() as conn:
            return await programs.create_program(conn, name, currency, START)

    program, key = in_app(client, create)
    return Api(client, str(program.id), key)


@pytest.fixture
def api(client: AsyncTestClient[Litestar]) -> Api:
    return make_program(client)


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"


def fetch(client: AsyncTestClient[Litestar], sql: str, *args: Any) -> list[dict[str, Any]]:
    """Read the database directly (to check what was written, not what the API says)."""

    async def run() -> list[dict[str, Any]]:
        async with db.connection() as conn:
            return [dict(r) for r in await conn.fetch(sql, *args)]

    return in_app(client, run)


def table_counts(client: AsyncTestClient[Litestar]) -> dict[str, int]:
    row = fetch(client, "SELECT " + ", ".join(f'(SELECT count(*) FROM "{t}") AS "{t}"' for t in TABLES))[0]
    return {k: int(v) for k, v in row.items()}


def verify_ledger(client: AsyncTestClient[Litestar]) -> None:
    from service.ledger import jobs

    report = in_app(client, jobs.verify)
    assert report.ok, report.problems


def fingerprint(client: AsyncTestClient[Litestar], program_id: str | None = None) -> dict[str, str]:
    """A digest of every row of every table (or of one program's rows): equal digests, nothing changed."""

    async def run() -> dict[str, str]:
        async with db.connection() as conn:
            tables = await conn.fetch(
                """
                SELECT t.table_name, bool_or(c.column_name = 'program_id') AS scoped
                FROM information_schema.tables t
                JOIN information_schema.columns c USING (table_schema, table_name)
                WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
                  AND t.table_name <> 'migration'
                GROUP BY t.table_name ORDER BY t.table_name
                """
            )
            digests: dict[str, str] = {}
            for table in tables:
                name = table["table_name"]
                if program_id is not None and not table["scoped"] and name != "program":
                    continue
                column = "id" if name == "program" else "program_id"
                where = f"WHERE t.{column} = $1::uuid" if program_id is not None else ""
                args = [program_id] if program_id is not None else []
                digests[name] = await conn.fetchval(
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f'FROM "{name}" t {where}',
                    *args,
                )
            return digests

    return in_app(client, run)
