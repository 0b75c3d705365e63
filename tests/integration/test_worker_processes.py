"""`encore worker` as real processes on one database: two workers deliver every event exactly once;
a worker killed with SIGKILL mid-sweep loses nothing (its leased rows are delivered by the next one,
under the same webhook-id)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest

from service.core import db
from service.outbox.service import Event, emit
from tests.conftest import START, Api, fetch, idempotency, in_app
from tests.support.receiver import Answer, Receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def _start_worker(database_url: str, **env: str) -> subprocess.Popen[bytes]:
    settings = {
        "ENCORE_DATABASE_URL": database_url,
        "ENCORE_LOG_LEVEL": "WARNING",
        "ENCORE_WEBHOOKS_ALLOW_LOCAL_HTTP": "1",
        "ENCORE_DISPATCH_INTERVAL_SECONDS": "0.2",
        "ENCORE_DELIVER_INTERVAL_SECONDS": "0.2",
        "ENCORE_WEBHOOK_TIMEOUT_SECONDS": "2",
        "ENCORE_WORKER_LEASE_SECONDS": "5",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        cwd=ROOT,
        env=os.environ | settings,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(
    condition: Callable[[], bool], seconds: float, what: str, *workers: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in workers:
            if worker.poll() is not None:
                err = worker.stderr.read().decode() if worker.stderr else ""
                raise AssertionError(f"a worker exited ({worker.returncode}) while waiting for {what}: {err}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(worker: subprocess.Popen[bytes]) -> int:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=30)


async def _subscribe(api: Api, receiver: Receiver) -> str:
    response = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "event_types": ["order.created"]},
        headers=api.headers(**idempotency()),
    )
    assert response.status_code == 201, response.text
    receiver.secrets.append(response.json()["secret"])
    endpoint_id: str = response.json()["id"]
    return endpoint_id


def _emit_events(api: Api, count: int) -> set[str]:
    events = [Event("order.created", {"order": f"o-{n}"}) for n in range(count)]

    async def write() -> None:
        async with db.transaction() as conn:
            await emit(conn, UUID(api.program_id), events, START)

    in_app(api.client, write)
    return {str(e.id) for e in events}


def _workers_running(api: Api, count: int) -> Callable[[], bool]:
    def check() -> bool:
        rows = fetch(
            api.client, "SELECT count(DISTINCT worker) AS n FROM job_run WHERE job = 'webhooks.deliver'"
        )
        return bool(rows[0]["n"] >= count)

    return check


def _succeeded(api: Api) -> int:
    return int(
        fetch(api.client, "SELECT count(*) AS n FROM webhook_delivery WHERE status = 'succeeded'")[0]["n"]
    )


async def test_two_workers_deliver_each_event_exactly_once(
    api: Api, receiver: Receiver, database_url: str
) -> None:
    receiver.default = Answer(200, delay=0.01)
    endpoint_id = await _subscribe(api, receiver)
    workers = [_start_worker(database_url), _start_worker(database_url)]
    try:
        _wait(_workers_running(api, 2), 60, "both workers to start", *workers)
        expected = _emit_events(api, 600)
        _wait(lambda: len(set(receiver.ids())) >= 600, 90, "600 deliveries", *workers)
        _wait(lambda: _succeeded(api) == 600, 30, "600 recorded successes", *workers)
    finally:
        codes = [_stop(w) for w in workers]
    assert codes == [0, 0]  # SIGTERM: a clean stop
    counts = Counter(receiver.ids())
    assert set(counts) == expected
    assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:5]
    assert all(r.verified_with for r in receiver.received)
    rows = fetch(
        api.client,
        "SELECT status, count(*) AS n FROM webhook_delivery WHERE endpoint_id = $1 GROUP BY status",
        UUID(endpoint_id),
    )
    assert {r["status"]: r["n"] for r in rows} == {"succeeded": 600}
    # Both did part of the work (the rows are shared by claims, not by luck of timing alone).
    busy = fetch(
        api.client,
        "SELECT worker, sum(rows) AS n FROM job_run WHERE job = 'webhooks.deliver' GROUP BY worker HAVING sum(rows) > 0",
    )
    assert len(busy) == 2, busy


async def test_a_worker_killed_mid_sweep_loses_nothing(
    api: Api, receiver: Receiver, database_url: str
) -> None:
    receiver.default = Answer(200, delay=0.05)
    await _subscribe(api, receiver)
    first = _start_worker(database_url, ENCORE_WORKER_LEASE_SECONDS="3")
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait(_workers_running(api, 1), 60, "the first worker to start", first)
        expected = _emit_events(api, 300)
        _wait(lambda: len(receiver.ids()) >= 40, 60, "the first deliveries", first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        in_flight = fetch(
            api.client,
            "SELECT count(*) AS n FROM webhook_delivery WHERE status = 'pending' AND claimed_by IS NOT NULL",
        )[0]["n"]
        assert in_flight > 0  # killed with claimed rows whose results it never wrote
        second = _start_worker(database_url, ENCORE_WORKER_LEASE_SECONDS="3")
        # Done when every delivery is recorded as succeeded: the killed worker's leased rows included.
        _wait(lambda: _succeeded(api) == 300, 90, "every delivery to succeed", second)
    finally:
        first.kill()
        if second is not None:
            assert _stop(second) == 0
    counts = Counter(receiver.ids())
    assert set(counts) == expected
    # A repeat is possible only for rows the killed worker had claimed, and it carries the same id.
    repeats = sum(n - 1 for n in counts.values())
    assert repeats <= in_flight
    bodies: dict[str, set[bytes]] = {}
    for r in receiver.received:
        bodies.setdefault(r.id, set()).add(r.json["data"]["order"].encode())
    assert all(len(b) == 1 for b in bodies.values())
    status = fetch(api.client, "SELECT status, count(*) AS n FROM webhook_delivery GROUP BY status")
    assert {r["status"]: r["n"] for r in status} == {"succeeded": 300}
    unfinished = fetch(api.client, "SELECT count(*) AS n FROM job_run WHERE finished_at IS NULL")[0]["n"]
    assert unfinished >= 1  # the killed worker's run stays visible as never finished
