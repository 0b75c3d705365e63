"""Webhook delivery throughput: N outbox events (default 100 000) delivered to a local receiver by one
`encore worker` process, then by two, each on a fresh database; the ratio of the two rates; the
outbox lag at the end.

Each measurement: the workers start on an empty outbox and are left to become ready (they record a
job run); then one statement writes the N events (one program, one endpoint subscribed to them) and
the clock starts at its commit. It stops when the database says every delivery succeeded.

Run alone: `python -m bench.webhooks <server-url> [events]` (a PostgreSQL server URL; databases are
created and dropped).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
TARGET_ONE_WORKER_PER_S = 500.0
TARGET_TWO_PER_ONE = 1.6


def _events() -> str:
    """The N events, written as the service writes a sweep's events (the outbox's one envelope)."""
    from service.outbox.service import insert_events

    return insert_events(
        """
        SELECT $1::uuid AS program_id, 'order.created' AS topic,
               jsonb_build_object('order', 'o-' || g, 'customer', 'c-' || (g % 5000),
                                  'total', jsonb_build_object('amount', 1000 + g % 9000, 'currency', 'EUR')) AS payload
        FROM generate_series(1, $2) g
        """,
        at="now()",
    )


_ENDPOINT = """
INSERT INTO webhook_endpoint (id, program_id, url, event_types, secret, created_at, updated_at)
VALUES (gen_random_uuid(), $1, $2, '{order.created}', $3, now(), now())
"""


def _backlog() -> str:
    """Deliveries done, and the events the webhook dispatcher has not passed yet (its outbox position)."""
    from service.outbox import consumers
    from service.webhooks.jobs import CONSUMER

    waiting = f"FROM outbox o WHERE {consumers.waiting(CONSUMER)}"
    return f"""
        SELECT (SELECT count(*) FROM webhook_delivery WHERE status = 'succeeded') AS succeeded,
               (SELECT count(*) {waiting}) AS undispatched,
               extract(epoch FROM now() - (SELECT min(o.created_at) {waiting})) AS outbox_lag,
               extract(epoch FROM now() - (SELECT min(created_at) FROM webhook_delivery WHERE status = 'pending'))
                   AS delivery_lag
    """


async def _one(server_url: str, workers: int, events: int, limit_seconds: float) -> dict[str, Any]:
    # bench.run imports this module; its database, CLI and CPU helpers are taken when called, not at import.
    from bench import run as harness
    from service.core.secrets import SecretBox, new_key
    from service.webhooks.domain import new_secret

    name = f"encore_webhooks_{secrets.token_hex(4)}_{workers}"
    await harness.create_database(server_url, name)
    url = harness.with_database(server_url, name)
    key = new_key()  # the endpoint's secret is stored sealed, as the API stores it; the workers open it
    env = {
        **os.environ,
        "ENCORE_DATABASE_URL": url,
        "ENCORE_ENCRYPTION_KEYS": key,
        "ENCORE_LOG_LEVEL": "WARNING",
        "ENCORE_WEBHOOKS_ALLOW_LOCAL_HTTP": "1",
        "ENCORE_DISPATCH_INTERVAL_SECONDS": "0.2",
        "ENCORE_DELIVER_INTERVAL_SECONDS": "0.2",
    }
    env.pop("ENCORE_WORKER_METRICS_PORT", None)
    receiver = subprocess.Popen(  # noqa: ASYNC220 - a harness: starting a process is instant
        [sys.executable, "-m", "bench.receiver"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    processes: list[subprocess.Popen[bytes]] = []
    log_path = ROOT / "bench" / "results" / f"worker-{workers}.log.tmp"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline().split()[1])
        harness.encore_cli(["migrate"], env)
        program_id = json.loads(
            harness.encore_cli(
                ["programs", "create", "--name", "Webhook bench", "--currency", "EUR", "--json"], env
            )
            .strip()
            .splitlines()[-1]
        )["program_id"]
        conn = await asyncpg.connect(url)
        try:
            sealed = SecretBox((key,)).seal(new_secret())
            await conn.execute(_ENDPOINT, program_id, f"http://127.0.0.1:{port}/hook", sealed)
            await conn.execute("DELETE FROM outbox")  # the program's own event: only the bench's count
            postmaster = await harness.postmaster_pid(url)
            for _ in range(workers):
                # One process group for the workers, so the CPU meter counts them together.
                group = processes[0].pid if processes else 0  # 0: a new group led by the first
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - a harness: starting a process is instant
                        [sys.executable, "-m", "service.cli", "worker"],
                        cwd=ROOT,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=log_file,  # a pipe nobody reads would block the worker once full
                        process_group=group,
                    )
                )
            deadline = time.monotonic() + 60
            while await conn.fetchval("SELECT count(DISTINCT worker) FROM job_run") < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start")
                await asyncio.sleep(0.1)
            backlog, write = _backlog(), _events()
            meter = harness.CpuMeter(postmaster, server_pgrp=processes[0].pid)
            meter.start()
            written = time.perf_counter()
            await conn.execute(write, program_id, events)
            started = time.perf_counter()
            peak_outbox_lag = 0.0
            dispatched_after: float | None = None
            while True:
                row = await conn.fetchrow(backlog)
                assert row is not None
                peak_outbox_lag = max(peak_outbox_lag, float(row["outbox_lag"] or 0))
                if dispatched_after is None and row["undispatched"] == 0:
                    dispatched_after = time.perf_counter() - started
                if row["succeeded"] >= events:
                    break
                if time.perf_counter() - started > limit_seconds:
                    raise RuntimeError(
                        f"only {row['succeeded']} of {events} delivered in {limit_seconds:g} s"
                    )
                await asyncio.sleep(0.25)
            elapsed = time.perf_counter() - started
            end = await conn.fetchrow(backlog)
            assert end is not None
            cores = meter.stop()
            attempts = await conn.fetchval("SELECT sum(attempts) FROM webhook_delivery")
        finally:
            await conn.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        log_file.close()
        receiver.terminate()
        out, _ = receiver.communicate(timeout=10)
        await harness.drop_database(server_url, name)
    counts = json.loads(out.strip().splitlines()[-1])
    return {
        "workers": workers,
        "events": events,
        "write_events_s": round(started - written, 2),
        "seconds": round(elapsed, 2),
        "per_second": round(events / elapsed, 1),
        "all_dispatched_after_s": None if dispatched_after is None else round(dispatched_after, 2),
        "attempts": int(attempts),
        "received_requests": counts["requests"],
        "received_distinct_ids": counts["distinct_ids"],
        "outbox_lag_at_end_s": round(float(end["outbox_lag"] or 0), 2),
        "delivery_lag_at_end_s": round(float(end["delivery_lag"] or 0), 2),
        "peak_outbox_lag_s": round(peak_outbox_lag, 2),
        # Average cores: "server" = the workers, "other" = the receiver and anything else on the machine.
        "cores_used": cores,
    }


async def measure(server_url: str, events: int = 100_000, limit_seconds: float = 900) -> dict[str, Any]:
    one = await _one(server_url, 1, events, limit_seconds)
    two = await _one(server_url, 2, events, limit_seconds)
    ratio = round(two["per_second"] / one["per_second"], 3)
    return {
        "events": events,
        "one_worker": one,
        "two_workers": two,
        "ratios": {
            "one_worker_per_s": {
                "value": one["per_second"],
                "target": TARGET_ONE_WORKER_PER_S,
                "met": one["per_second"] >= TARGET_ONE_WORKER_PER_S,
            },
            "two_per_one": {"value": ratio, "target": TARGET_TWO_PER_ONE, "met": ratio >= TARGET_TWO_PER_ONE},
        },
    }


def format_results(results: dict[str, Any]) -> str:
    lines = [f"webhook delivery of {results['events']:,} outbox events to a local receiver (one endpoint)"]
    for key in ("one_worker", "two_workers"):
        r = results[key]
        lines.append(
            f"  {r['workers']} worker{'s' if r['workers'] > 1 else ' '}  {r['per_second']:>8.1f} events/s "
            f"({r['seconds']} s; all dispatched after {r['all_dispatched_after_s']} s; "
            f"{r['received_requests']:,} requests, {r['received_distinct_ids']:,} distinct ids; "
            f"outbox lag at end {r['outbox_lag_at_end_s']} s, peak {r['peak_outbox_lag_s']} s; "
            f"cores: workers {r['cores_used'].get('server')}, postgres {r['cores_used'].get('postgres')}, "
            f"other {r['cores_used'].get('other')}, machine {r['cores_used'].get('machine')} of {os.cpu_count()})"
        )
    ratios = results["ratios"]
    verdict = {True: "met", False: "MISSED"}
    one = ratios["one_worker_per_s"]
    two = ratios["two_per_one"]
    lines.append(
        f"  one worker = {one['value']:g}/s (target >= {one['target']:g}: {verdict[one['met']]}); "
        f"two/one = {two['value']:g} (target >= {two['target']:g}: {verdict[two['met']]})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    target = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    print(format_results(asyncio.run(measure(target, count))))
