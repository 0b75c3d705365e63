"""The outbox: one envelope for every event, every event once per consumer (positions that never skip a
transaction committing late), and housekeeping that waits for exactly the consumers that need an event.

The consumer tests use their own connections (one per concurrent transaction) and a probe consumer that
returns the ids it passed, so "taken" is what a consumer committed."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.clock import FrozenClock
from service.outbox import consumers
from service.outbox import jobs as outbox_jobs
from service.outbox.service import Event, emit, insert_events
from service.outreach import jobs as journeys
from service.webhooks import jobs as webhooks
from tests.conftest import (
    ROOT,
    START,
    Api,
    create_database,
    drop_database,
    fetch,
    idempotency,
    in_app,
    make_program,
)

# Active nowhere: it never holds an event back from housekeeping, whatever it has passed.
PROBE = consumers.register("test_probe", active_programs="SELECT NULL::uuid WHERE false")
_TAKE = f"""
    WITH {consumers.batch(PROBE, "$1")}
    SELECT {consumers.COUNTS}, (SELECT coalesce(array_agg(id ORDER BY tx, seq), '{{}}') FROM batch) AS ids
"""
RETENTION = timedelta(days=30)


@pytest.fixture
async def connect(database_url: str) -> AsyncIterator[Any]:
    """Connections of their own (a transaction each), closed after the test."""
    opened: list[asyncpg.Connection] = []

    async def open_one() -> asyncpg.Connection:
        conn = await asyncpg.connect(database_url)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        await conn.close()


async def _take(conn: asyncpg.Connection, limit: int = 1000) -> list[UUID]:
    """One batch of the probe consumer, committed: the ids it passed, in its order."""
    async with conn.transaction():
        row = await consumers.take(conn, PROBE, _TAKE, limit)
    return list(row["ids"])


async def _drain(conn: asyncpg.Connection, limit: int = 1000) -> list[UUID]:
    taken: list[UUID] = []
    while batch := await _take(conn, limit):
        taken += batch
    return taken


def _event(n: int) -> Event:
    return Event("order.created", {"order": f"o-{n}"})


async def test_one_envelope_for_a_use_case_and_a_sweep(api: Api, connect: Any) -> None:
    conn = await connect()
    program = UUID(api.program_id)
    await conn.execute("DELETE FROM outbox")
    event = Event("points.adjusted", {"customer": "c-1", "points": 5, "type": "kept"})
    async with conn.transaction():
        await emit(conn, program, [event], START)
        await conn.execute(
            insert_events(
                "SELECT $1::uuid AS program_id, 'points.expired' AS topic,"
                " jsonb_build_object('customer', 'c-' || g, 'points', g) AS payload FROM generate_series(1, 3) g",
                at="$2",
            ),
            program,
            START,
        )
    rows = fetch(
        api.client, "SELECT id, topic, payload::text AS payload, created_at FROM outbox ORDER BY seq"
    )
    assert len(rows) == 4 and all(r["created_at"] == START for r in rows)
    payloads = [db.json_value(r["payload"]) for r in rows]
    # The event's own id and type go into its payload; a payload field of the same name wins (as in
    # `{"id": ..., "type": ..., **payload}`).
    assert rows[0]["id"] == event.id and payloads[0] == {
        "id": str(event.id),
        "type": "kept",
        "customer": "c-1",
        "points": 5,
    }
    for row, payload in zip(rows[1:], payloads[1:], strict=True):
        assert payload["id"] == str(row["id"]) and payload["type"] == "points.expired"
    assert len({r["id"] for r in rows}) == 4  # a new id per row of the sweep


async def test_a_transaction_committing_late_is_never_skipped(api: Api, connect: Any) -> None:
    """A (older) writes, B (younger) writes and commits, A commits later: the consumer waits for A
    instead of passing B, then takes both, once."""
    first, second, reader = await connect(), await connect(), await connect()
    program = UUID(api.program_id)
    await _drain(reader)
    a, b = _event(1), _event(2)
    late = first.transaction()
    await late.start()
    await emit(first, program, [a], START)
    async with second.transaction():
        await emit(second, program, [b], START)
    assert await _take(reader) == []  # B is committed, but behind a transaction still open
    waiting = fetch(api.client, f"SELECT count(*) AS n FROM outbox o WHERE {consumers.waiting(PROBE)}")
    assert waiting[0]["n"] == 1  # ...and counted as waiting
    await emit(first, program, [c := _event(3)], START)  # the old transaction writes again
    await late.commit()
    assert await _take(reader) == [a.id, c.id, b.id]  # position order: the writing transaction, then seq
    assert await _take(reader) == []


@pytest.mark.parametrize("seed", range(6))
async def test_concurrent_writers_in_any_commit_order_each_event_once(
    api: Api, connect: Any, seed: int
) -> None:
    """Writers start, write (some twice), commit or roll back in a random order, while the consumer takes
    small batches in between: in the end it has taken every committed event once and nothing else."""
    rng = random.Random(seed)
    program = UUID(api.program_id)
    reader = await connect()
    await _drain(reader)
    writers = [await connect() for _ in range(8)]
    open_transactions: dict[int, Any] = {}
    written: dict[int, list[UUID]] = {n: [] for n in range(len(writers))}
    committed: list[UUID] = []
    rolled_back: list[UUID] = []
    taken: list[UUID] = []
    counter = 0
    steps = [("write", n) for n in range(len(writers)) for _ in range(rng.randint(1, 3))]
    steps += [("end", n) for n in range(len(writers))]
    rng.shuffle(steps)
    # An end goes after its writer's writes (a writer whose end comes first simply writes nothing).
    for step, n in steps:
        if step == "write" and n in written:
            if n not in open_transactions:
                open_transactions[n] = writers[n].transaction()
                await open_transactions[n].start()
            counter += 1
            event = _event(counter)
            await emit(writers[n], program, [event], START)
            written[n].append(event.id)
        elif step == "end":
            if n in open_transactions:
                if rng.random() < 0.25:
                    await open_transactions.pop(n).rollback()
                    rolled_back += written[n]
                else:
                    await open_transactions.pop(n).commit()
                    committed += written[n]
            del written[n]
        taken += await _take(reader, limit=2)
    taken += await _drain(reader, limit=3)
    assert sorted(taken) == sorted(committed) and len(set(taken)) == len(taken)
    assert not set(taken) & set(rolled_back)


async def test_a_transaction_of_another_database_does_not_hold_consumers_back(
    api: Api, connect: Any, server_url: str
) -> None:
    other_url = await create_database(server_url, "encore_other")
    other = await asyncpg.connect(other_url)
    try:
        busy = other.transaction()
        await busy.start()
        await other.fetchval("SELECT pg_current_xact_id()")  # holds an XID of the server's, not ours
        reader, writer = await connect(), await connect()
        await _drain(reader)
        async with writer.transaction():
            await emit(writer, UUID(api.program_id), [event := _event(1)], START)
        assert await _take(reader) == [event.id]
        await busy.rollback()
    finally:
        await other.close()
        await drop_database(server_url, other_url)


async def test_one_worker_at_a_time_and_a_rollback_gives_the_events_back(api: Api, connect: Any) -> None:
    one, two, writer = await connect(), await connect(), await connect()
    await _drain(one)
    async with writer.transaction():
        await emit(writer, UUID(api.program_id), events := [_event(n) for n in range(5)], START)
    ids = [e.id for e in events]
    holding = one.transaction()
    await holding.start()
    assert list((await consumers.take(one, PROBE, _TAKE, 2))["ids"]) == ids[:2]
    # Another worker does not wait for the position: it passes nothing and moves on.
    async with two.transaction():
        row = await consumers.take(two, PROBE, _TAKE, 10)
    assert row["positioned"] == 0 and row["events"] == 0
    await holding.rollback()  # a worker that dies mid-batch: its batch is taken again
    assert await _take(two, limit=3) == ids[:3]
    assert await _drain(one) == ids[3:]


def _ids(client: AsyncTestClient[Litestar]) -> set[UUID]:
    return {r["id"] for r in fetch(client, "SELECT id FROM outbox")}


def _emit_at(client: AsyncTestClient[Litestar], program_id: str, when: Any, count: int = 1) -> set[UUID]:
    events = [Event("event.recorded", {"customer": "nobody", "type": "visit"}) for _ in range(count)]

    async def write() -> None:
        async with db.transaction() as conn:
            await emit(conn, UUID(program_id), events, when)

    in_app(client, write)
    return {e.id for e in events}


def _prune(client: AsyncTestClient[Litestar], clock: FrozenClock) -> int:
    removed: int = in_app(client, outbox_jobs.prune, clock.now() - RETENTION)
    return removed


async def test_housekeeping_waits_for_the_consumers_active_in_the_program_and_no_longer(
    api: Api, client: AsyncTestClient[Litestar], clock: FrozenClock
) -> None:
    hooked = api  # an enabled endpoint: webhooks are active there
    endpoint = await hooked.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/encore", "event_types": ["tier.upgraded"]},
        headers=hooked.headers(**idempotency()),
    )
    assert endpoint.status_code == 201, endpoint.text
    journeyed = make_program(client, "Journeys shop")  # an enabled journey: journeys are active there
    enabled = await client.patch(
        "/v1/journeys/post_purchase", json={"enabled": True}, headers=journeyed.headers()
    )
    assert enabled.status_code == 200, enabled.text
    quiet = make_program(client, "Quiet shop")  # neither
    fetch(client, "DELETE FROM outbox RETURNING 1")
    old = {p: _emit_at(client, p.program_id, START, 2) for p in (hooked, journeyed, quiet)}
    recent = _emit_at(client, quiet.program_id, START + timedelta(days=20))

    clock.set(START + timedelta(days=31))
    # No consumer has run: only the quiet program's old events go (nobody there needs them).
    assert _prune(client, clock) == 2
    assert _ids(client) == old[hooked] | old[journeyed] | recent
    in_app(client, webhooks.dispatch, clock.now())  # passes every event, delivers none (not subscribed)
    assert _prune(client, clock) == 2
    assert _ids(client) == old[journeyed] | recent
    in_app(client, journeys.enter_from_events, clock.now())
    assert _prune(client, clock) == 2
    assert _ids(client) == recent  # within retention: kept, though every consumer has passed it
    clock.set(START + timedelta(days=51))
    assert _prune(client, clock) == 1 and _ids(client) == set()


async def test_webhook_deliveries_keep_their_event_while_unfinished_and_for_the_retention(
    api: Api, client: AsyncTestClient[Litestar], clock: FrozenClock
) -> None:
    created = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/encore", "event_types": ["event.recorded"]},
        headers=api.headers(**idempotency()),
    )
    assert created.status_code == 201, created.text
    fetch(client, "DELETE FROM outbox RETURNING 1")
    pending, done = _emit_at(client, api.program_id, START), _emit_at(client, api.program_id, START)
    in_app(client, webhooks.dispatch, clock.now())  # a delivery each, created at START
    fetch(
        client,
        "UPDATE webhook_delivery SET status = 'succeeded' WHERE event_id = ANY($1::uuid[])",
        list(done),
    )
    clock.set(START + timedelta(days=31))
    assert _prune(client, clock) == 1  # the finished one (its delivery goes with it)
    assert _ids(client) == pending
    assert fetch(client, "SELECT count(*) AS n FROM webhook_delivery")[0]["n"] == 1
    # A delivery made within the retention keeps its event, finished or not.
    fetch(client, "UPDATE webhook_delivery SET status = 'succeeded', created_at = $1", clock.now())
    assert _prune(client, clock) == 0
    clock.set(START + timedelta(days=62))
    assert _prune(client, clock) == 1 and _ids(client) == set()


async def test_a_position_of_a_consumer_this_process_does_not_know_holds_every_event(
    api: Api, client: AsyncTestClient[Litestar], clock: FrozenClock
) -> None:
    fetch(client, "DELETE FROM outbox RETURNING 1")
    fetch(client, "INSERT INTO outbox_consumer (name) VALUES ('retired_consumer') RETURNING name")
    old = _emit_at(client, api.program_id, START)
    clock.set(START + timedelta(days=31))
    assert _prune(client, clock) == 0 and _ids(client) == old
    fetch(client, "DELETE FROM outbox_consumer WHERE name = 'retired_consumer' RETURNING name")
    assert _prune(client, clock) == 1


_MIGRATE_TO = """
import asyncio, sys
from piccolo.apps.migrations.commands.forwards import run_forwards
from service.core import db
db.configure(sys.argv[1])
result = asyncio.run(run_forwards(app_name="encore", migration_id=sys.argv[2]))
sys.exit(0 if result.success else result.message)
"""


async def test_the_migration_starts_each_consumer_where_its_marker_left_it(server_url: str) -> None:
    """Events dispatched and seen by journeys, only one of them, or neither, before the positions: the
    dispatcher passes exactly the ones it had not dispatched, journeys at least those they had not seen."""
    url = await create_database(server_url, "encore_outbox_migration")
    try:

        def migrate(to: str) -> None:
            done = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(_MIGRATE_TO), url, to],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-2000:]

        migrate("2026-12-01T12:00:00:000000")
        conn = await asyncpg.connect(url)
        try:
            program = uuid4()
            legacy = {}
            for n, (dispatched, seen) in enumerate(
                [(True, True), (True, False), (False, True), (False, False)] * 3
            ):
                event_id = uuid4()
                legacy[event_id] = (dispatched, seen)
                await conn.execute(
                    "INSERT INTO outbox (id, program_id, topic, payload, created_at, available_at, delivered_at,"
                    " journeys_at) VALUES ($1, $2, 'order.created', '{}', $3, $3,"
                    " CASE WHEN $4 THEN $3::timestamptz END, CASE WHEN $5 THEN $3::timestamptz END)",
                    event_id,
                    program,
                    START + timedelta(minutes=n),
                    dispatched,
                    seen,
                )
            migrate("all")

            async def passes(name: str) -> set[UUID]:
                rows = await conn.fetch(
                    "SELECT o.id FROM outbox o, outbox_consumer c WHERE c.name = $1 AND (o.tx, o.seq) > (c.tx, c.seq)",
                    name,
                )
                return {r["id"] for r in rows}

            assert await passes("webhooks") == {e for e, (d, _) in legacy.items() if not d}
            not_seen = {e for e, (_, s) in legacy.items() if not s}
            # Seen again: those journeys had seen but the dispatcher had not (an entry is unique: no-op).
            assert await passes("journeys") == not_seen | {e for e, (d, s) in legacy.items() if s and not d}
            columns = {
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'outbox'"
                )
            }
            assert columns == {"id", "program_id", "topic", "payload", "created_at", "tx", "seq"}
        finally:
            await conn.close()
    finally:
        await drop_database(server_url, url)
