"""Stripe: signed checkouts processed into orders by `encore worker`, against `POST /v1/orders`; the webhook
endpoint's accept rate (verify and store), against hello.

The Stripe API is the local stub of the tests (tests/support/stripe_stub.py: the official SDK talks to it
over HTTP), run in this process on a thread; bench.run starts it before the API server and gives the
server ENCORE_STRIPE_API_BASE = the stub, so `PUT /v1/stripe/connection` checks the key against it. On
bench.run's API server and database, a program of its own ("Stripe bench"), connected with the stub's
key and webhook secret.

1. checkouts: BENCH_STRIPE_CHECKOUTS (2,000) paid Checkout Sessions of LINES (2) line items each, every
   one for a Stripe customer of its own, registered in the stub; their signed
   `checkout.session.completed` events posted to `POST /v1/stripe/webhooks/{program_id}` (16 at a time,
   each answered 200 "received"). The events are then parked (their next attempt moved a day ahead: the
   bench's only write into a service table), BENCH_STRIPE_WORKERS (2, as the API's uvicorn workers) real `encore worker` processes
   start (ENCORE_STRIPE_INTERVAL_SECONDS=0.1, the same environment as the API) and are left until every
   job has run once (their start-up sweeps over the earlier phases' outbox do not count), then one
   statement makes every event due and the clock starts. It stops when none is received or waiting: the
   rate is processed events over the time from that statement to the last `processed_at`. Each event
   costs the worker two Stripe calls (the session with its customer, the line items with their products)
   and one transaction through the earning pipeline, as `POST /v1/orders`. The ratio to the orders phase
   of the same run (target >= 0.5). Every event must end processed, with an order of its own.
2. accepts: `POST /v1/stripe/webhooks/{program_id}` on 16 connections for BENCH_SECONDS, distinct events
   (their ids), alternately `customer.created` (stored as ignored) and `checkout.session.completed`
   (stored as received; no worker runs then), each body Stripe's pretty-printed JSON of a few KB, signed
   as the request is made (HMAC-SHA256 over a template with the id filled in: microseconds). 200s per
   second as a ratio to the hello phase (target >= 0.3). The events stored must be at least the 200s.
   The program's webhook limit (ENCORE_RATE_LIMIT_PER_STRIPE_PROGRAM, 60,000 a minute per API process)
   is the production one: a 429 would count as an error.

hello and orders are the foundation group's phases; when that group did not run (`ONLY=stripe`),
bench.run measures hello before the API starts and this module measures orders first, as the rewards
group does. BENCH_STRIPE=0 skips the group. BENCH_STRIPE_PROFILE=FILE runs the first worker under cProfile
(stats written to FILE when it stops; slower: for finding where the time goes, not for the figures).

Where the time goes is reported from the phases' CPU: cores used by the worker(s), PostgreSQL and this
process (the stub serves from here), per event, beside the API server's and PostgreSQL's per order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import stripe as stripe_sdk
from yarl import URL

from bench.load import PhaseResult, Request
from tests.support.stripe_stub import (
    API_KEY,
    WEBHOOK_SECRET,
    StripeStub,
    checkout_session,
    customer,
    event,
    line_item,
    signed_event,
)

TARGET_EVENTS_PER_ORDER = 0.5
TARGET_ACCEPTS_PER_HELLO = 0.3

CHECKOUTS = 2000
LINES = 2
SKUS = 200
POST_CONCURRENCY = 16
WORKER_INTERVAL_SECONDS = "0.1"
READY_SECONDS = 120.0  # the workers' first run of every job
PROCESS_LIMIT_SECONDS = 900.0
_ID = "evt_BENCHPLACEHOLDER"


@dataclasses.dataclass
class TimedStub(StripeStub):
    """The tests' stub, also adding up the time it spends answering (under its lock: serialised)."""

    busy_seconds: float = 0.0
    answered: int = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(super()._handler()):  # type: ignore[misc]
            # The stub writes the headers and the body in two sends: with Nagle's algorithm on, the body
            # waits for the client's delayed ACK (about 40 ms a request), which would be the stub's time,
            # not Encore's.
            disable_nagle_algorithm = True

        return Handler

    def _respond(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        started = time.perf_counter()
        try:
            return super()._respond(request)
        finally:  # called with self.lock held
            self.busy_seconds += time.perf_counter() - started
            self.answered += 1


def start_stub() -> TimedStub:
    """The Stripe stub, listening (bench.run gives its URL to the API server as ENCORE_STRIPE_API_BASE)."""
    stub = TimedStub()
    stub.start()
    return stub


# --- 1. checkouts into orders ----------------------------------------------------------------------------


def _register(stub: StripeStub, tag: str, count: int) -> list[dict[str, Any]]:
    """`count` paid sessions of LINES lines, each for a Stripe customer of its own (held by the stub, so
    the worker's `expand[]=customer` finds it); the sessions as their events carry them."""
    rng = random.Random(tag)
    sessions = []
    for n in range(count):
        email = f"sb-{tag}-{n}@example.com"
        stub.add_customer(f"cus_sb{tag}{n}", email=email, name=f"Stripe bench {n}", metadata={})
        items = [
            line_item(
                rng.randrange(500, 5_000),
                rng.randint(1, 3),
                name=f"Product {sku}",
                sku=f"SKU-{sku}",
                category=f"cat-{sku % 10}",
            )
            for sku in rng.sample(range(SKUS), LINES)
        ]
        sessions.append(
            stub.add_session(
                f"cs_sb_{tag}_{n}",
                line_items=items,
                customer=f"cus_sb{tag}{n}",
                customer_details={"email": email, "name": f"Stripe bench {n}"},
                metadata={},
            )
        )
    return sessions


async def _post_events(url: str, payloads: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Each payload signed now and posted, POST_CONCURRENCY at a time: (stored as received, error lines)."""
    received = 0
    problems: list[str] = []
    semaphore = asyncio.Semaphore(POST_CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def one(payload: dict[str, Any]) -> None:
            nonlocal received
            async with semaphore:
                body, header = signed_event(payload, WEBHOOK_SECRET)
                headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
                async with session.post(url, data=body, headers=headers) as answer:
                    text = await answer.text()
                    if answer.status == 200 and json.loads(text).get("status") == "received":
                        received += 1
                    elif len(problems) < 5:
                        problems.append(f"{payload['id']}: {answer.status} {text[:300]}")

        await asyncio.gather(*(one(payload) for payload in payloads))
    return received, problems


_READY = """
SELECT count(DISTINCT job) AS started,
       count(DISTINCT job) FILTER (WHERE finished_at IS NOT NULL) AS finished,
       count(*) FILTER (WHERE finished_at IS NULL AND started_at < now() - interval '0.5 seconds') AS busy,
       count(DISTINCT worker) AS workers
FROM job_run WHERE started_at >= $1
"""

_PROGRESS = """
SELECT count(*) FILTER (WHERE status = 'processed') AS processed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'ignored') AS ignored,
       count(*) FILTER (WHERE status IN ('received', 'waiting')) AS left
FROM stripe_event WHERE program_id = $1 AND stripe_id LIKE $2
"""

_TIMES = """
SELECT extract(epoch FROM max(processed_at) - $3) AS seconds,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - $3))
           AS due_to_processed,
       max(attempts) AS max_attempts
FROM stripe_event WHERE program_id = $1 AND stripe_id LIKE $2 AND status = 'processed'
"""

_ORDERS = """
SELECT count(*) AS orders, coalesce(sum(points_earned), 0) AS points,
       count(DISTINCT customer_id) AS customers, coalesce(sum(total_amount), 0) AS total
FROM orders WHERE program_id = $1 AND attributes->>'source' = 'stripe_checkout'
"""

_RUNS = """
SELECT count(*) AS runs, coalesce(sum(rows), 0) AS rows,
       avg(extract(epoch FROM finished_at - started_at)) AS mean_s,
       max(extract(epoch FROM finished_at - started_at)) AS max_s
FROM job_run WHERE job = 'stripe.events' AND rows > 0 AND started_at >= $1
"""


_ACTIVITY = """
SELECT state, coalesce(wait_event_type || ':' || wait_event, 'cpu') AS waiting, count(*) AS n
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND state IS NOT NULL AND state <> 'idle'
GROUP BY 1, 2
"""


async def _sample_activity(url: str, stop: asyncio.Event, into: Counter[str]) -> int:
    """Every 50 ms, what the database's other busy sessions (the workers': the API is idle then) are
    doing: 'active <wait>' (in PostgreSQL: 'cpu', a lock, the WAL flush) or 'idle in transaction' (the
    worker's Python, or its wait for the event loop, inside a transaction). Idle sessions (pooled, the
    API's too) are left out. Samples taken."""
    conn = await asyncpg.connect(url)
    samples = 0
    try:
        while not stop.is_set():
            for row in await conn.fetch(_ACTIVITY):
                state = row["state"]
                into[f"active {row['waiting']}" if state == "active" else state] += int(row["n"])
            samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await conn.close()
    return samples


async def _wait_ready(conn: asyncpg.Connection, since: datetime, workers: int, procs: list[Any]) -> float:
    """Until every job the workers started has finished once and nothing has run for > 0.5 s, twice in a
    row; the seconds it took."""
    started = time.perf_counter()
    calm = 0
    while calm < 2:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"encore worker exited with {proc.returncode} while starting")
        row = await conn.fetchrow(_READY, since)
        assert row is not None
        ready = row["workers"] >= workers and row["started"] >= 10 and row["started"] == row["finished"]
        calm = calm + 1 if ready and row["busy"] == 0 else 0
        if time.perf_counter() - started > READY_SECONDS:
            raise RuntimeError(
                f"the workers did not finish their first runs in {READY_SECONDS:g} s: {dict(row)}"
            )
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def _process(
    run: Any, url: str, program_id: UUID, like: str, count: int, env: dict[str, str], workers: int
) -> dict[str, Any]:
    from bench import run as harness

    conn = await asyncpg.connect(url)
    procs: list[subprocess.Popen[bytes]] = []
    log_path = harness.RESULTS / "worker-stripe.log.tmp"
    log_file = log_path.open("wb")
    try:
        parked = await conn.fetchval(
            "WITH p AS (UPDATE stripe_event SET next_attempt_at = now() + interval '1 day' "
            "WHERE program_id = $1 AND stripe_id LIKE $2 AND status = 'received' RETURNING 1) "
            "SELECT count(*) FROM p",
            program_id,
            like,
        )
        if parked != count:
            raise RuntimeError(f"stripe: {parked} events to park, {count} expected")
        since = await conn.fetchval("SELECT now()")
        command = [harness.venv_bin("encore"), "worker"]
        profile = os.environ.get("BENCH_STRIPE_PROFILE", "").strip()
        if profile:  # diagnosis (py-spy is not at hand): the first worker under cProfile, stats to that file
            command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "service.cli", "worker"]
        for n in range(workers):
            group = procs[0].pid if procs else 0  # one process group: the CPU meter counts them together
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220 - a harness: starting a process is instant
                    command if n == 0 else [harness.venv_bin("encore"), "worker"],
                    cwd=harness.ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,  # a pipe nobody reads would block the worker once full
                    process_group=group,
                )
            )
        ready_s = await _wait_ready(conn, since, workers, procs)
        stub: TimedStub = run.stripe_stub
        with stub.lock:
            busy0, answered0 = stub.busy_seconds, stub.answered
        meter = harness.CpuMeter(run.postmaster, server_pgrp=procs[0].pid)
        meter.start()
        activity: Counter[str] = Counter()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(_sample_activity(url, stop_sampling, activity))
        before = await conn.fetchval(
            "SELECT clock_timestamp()"
        )  # the worker runs that did the work start after
        released = await conn.fetchval(
            "WITH d AS (UPDATE stripe_event SET next_attempt_at = now() "
            "WHERE program_id = $1 AND stripe_id LIKE $2 AND status = 'received' RETURNING 1) "
            "SELECT count(*) FROM d",
            program_id,
            like,
        )
        due_at = await conn.fetchval("SELECT clock_timestamp()")  # after the commit: the events are due
        wall0 = time.perf_counter()
        print(f"stripe: {released:,} events due; {workers} worker(s) processing ...", flush=True)
        while True:
            progress = await conn.fetchrow(_PROGRESS, program_id, like)
            assert progress is not None
            if progress["left"] == 0:
                break
            if time.perf_counter() - wall0 > PROCESS_LIMIT_SECONDS:
                raise RuntimeError(f"stripe: {dict(progress)} after {PROCESS_LIMIT_SECONDS:g} s")
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError("stripe: an encore worker exited during the run")
            await asyncio.sleep(0.1)
        wall = time.perf_counter() - wall0
        cores = meter.stop()
        stop_sampling.set()
        samples = await sampler
        with stub.lock:
            stub_busy, stub_answered = stub.busy_seconds - busy0, stub.answered - answered0
        times = await conn.fetchrow(_TIMES, program_id, like, due_at)
        made = await conn.fetchrow(_ORDERS, program_id)
        runs = await conn.fetchrow(_RUNS, before)
        errors = await conn.fetch(
            "SELECT coalesce(last_error, outcome) AS why, count(*) AS n FROM stripe_event "
            "WHERE program_id = $1 AND stripe_id LIKE $2 AND status <> 'processed' GROUP BY 1 ORDER BY 2 DESC "
            "LIMIT 5",
            program_id,
            like,
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log_file.close()
        await conn.close()
    assert times is not None and made is not None and runs is not None
    seconds = float(times["seconds"] or wall)
    processed = int(progress["processed"])
    quantiles = times["due_to_processed"] or [None, None]
    per_event = {k: round(v * seconds / processed * 1000, 2) for k, v in cores.items()} if processed else {}
    return {
        "events": count,
        "workers": workers,
        "processed": processed,
        "failed": int(progress["failed"]),
        "ignored": int(progress["ignored"]),
        "problems": [f"{row['n']} x {row['why']}" for row in errors],
        "seconds": round(seconds, 3),
        "poll_seconds": round(wall, 2),
        "per_second": round(processed / seconds, 1) if seconds > 0 else None,
        "due_to_processed_p50_s": None if quantiles[0] is None else round(quantiles[0], 3),
        "due_to_processed_p99_s": None if quantiles[1] is None else round(quantiles[1], 3),
        "max_attempts": times["max_attempts"],
        "orders": int(made["orders"]),
        "order_customers": int(made["customers"]),
        "points": int(made["points"]),
        "worker_runs": {
            "runs": int(runs["runs"]),
            "events": int(runs["rows"]),
            "mean_s": None if runs["mean_s"] is None else round(float(runs["mean_s"]), 3),
            "max_s": None if runs["max_s"] is None else round(float(runs["max_s"]), 3),
        },
        "workers_ready_after_s": round(ready_s, 2),
        "stub": {
            "requests": stub_answered,
            "busy_s": round(stub_busy, 3),
            "busy_share": round(stub_busy / seconds, 3) if seconds > 0 else None,
            "ms_per_request": round(stub_busy / stub_answered * 1000, 3) if stub_answered else None,
        },
        # "server" = the worker process(es); "client" = this process: the stub and the polling.
        "cores_used": cores,
        # The workers' database sessions, on average over the samples (sessions in each state).
        "sessions": {
            what: round(n / samples, 2) for what, n in sorted(activity.items(), key=lambda kv: -kv[1])
        }
        if samples
        else {},
        "session_samples": samples,
        "cpu_ms_per_event": per_event,
    }


# --- 2. accepts --------------------------------------------------------------------------------------


class Accepts:
    """Distinct signed events for one program's webhook endpoint: customer.created and
    checkout.session.completed in turn, the id filled into a body made once, signed as it is sent."""

    def __init__(self, base: str, program_id: str, tag: str) -> None:
        self.url = URL(f"{base}/v1/stripe/webhooks/{program_id}")
        self.tag = tag
        self.seq = 0
        self.templates: list[tuple[str, str]] = []
        for payload in (
            event("customer.created", customer(), id=_ID),
            event("checkout.session.completed", checkout_session(line_items=[line_item(1500, 2)]), id=_ID),
        ):
            body = json.dumps(payload, indent=2)  # as Stripe sends it (and as tests' signed_event does)
            assert body.count(_ID) == 1
            before, after = body.split(_ID)
            self.templates.append((before, after))

    def __call__(self, _worker: int) -> Request:
        self.seq += 1
        before, after = self.templates[self.seq % 2]
        body = f"{before}evt_sba{self.tag}{self.seq:09d}{after}"
        header = stripe_sdk.WebhookSignature.generate_signature_header(
            body, WEBHOOK_SECRET, timestamp=int(time.time())
        )
        headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
        return Request("POST", self.url, headers, body.encode())


async def _stored(url: str, program_id: UUID, like: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM stripe_event WHERE program_id = $1 AND stripe_id LIKE $2 "
            "GROUP BY status",
            program_id,
            like,
        )
    finally:
        await conn.close()
    return {row["status"]: int(row["n"]) for row in rows}


# --- the group ---------------------------------------------------------------------------------------


def _figures(phase: PhaseResult | None) -> dict[str, Any] | None:
    if phase is None:
        return None
    p50, p99 = phase.percentile(50), phase.percentile(99)
    return {
        "rps": round(phase.rps, 1),
        "p50_ms": None if p50 is None else round(p50, 2),
        "p99_ms": None if p99 is None else round(p99, 2),
        "ok": phase.ok,
        "errors": phase.errors,
        "statuses": dict(phase.statuses),
    }


def _ratio(top: float | None, bottom: PhaseResult | None, target: float) -> dict[str, Any]:
    value = None
    if top is not None and bottom is not None and bottom.ok and bottom.rps:
        value = round(top / bottom.rps, 3)
    return {"value": value, "target": target, "met": None if value is None else value >= target}


def _per_order(run: Any) -> dict[str, float]:
    """CPU ms per order of the orders phase: the API server's and PostgreSQL's."""
    orders = run.phases.get("orders")
    cores = run.cpu.get("orders") or {}
    if orders is None or not orders.rps:
        return {}
    return {k: round(v / orders.rps * 1000, 2) for k, v in cores.items()}


def measure(
    run: Any, api: Any, api_env: dict[str, str], api_url: str, api_key: str, tag: str
) -> dict[str, Any]:
    """On bench.run's API server `api` over the database at `api_url`, with the stub `run.stripe_stub`
    (whose URL the server has as ENCORE_STRIPE_API_BASE); `api_key`: the run's own program, for the
    orders phase when it has to be measured here."""
    from bench import run as harness
    from bench.rules import _api, _program

    cfg = run.cfg
    if run.phases.get("orders") is None:  # the foundation group did not run: orders of this run
        run.http_phase("orders", harness.Orders(api.base, api_key, tag), api)
    stub: StripeStub = run.stripe_stub
    program_id, key = _program(api_env, "Stripe bench")
    connected = _api(
        api.base, key, "PUT", "/v1/stripe/connection", {"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}
    )
    webhook = f"{api.base}/v1/stripe/webhooks/{program_id}"
    count = int(harness._env_number("BENCH_STRIPE_CHECKOUTS", CHECKOUTS))
    workers = int(harness._env_number("BENCH_STRIPE_WORKERS", 2))  # as many as the API has processes

    # 1. Checkouts into orders by the worker.
    print(f"stripe: {count:,} checkouts of {LINES} lines into the stub, their signed events ...", flush=True)
    made = time.perf_counter()
    sessions = _register(stub, tag, count)
    payloads = [
        event("checkout.session.completed", session, id=f"evt_sbc{tag}{n:06d}")
        for n, session in enumerate(sessions)
    ]
    registered_s = time.perf_counter() - made
    posted = time.perf_counter()
    received, problems = harness.run_async(lambda: _post_events(webhook, payloads))
    posted_s = time.perf_counter() - posted
    if received != count:
        raise RuntimeError(f"stripe: {received} of {count} events received:\n" + "\n".join(problems))
    worker_env = {**api_env, "ENCORE_STRIPE_INTERVAL_SECONDS": WORKER_INTERVAL_SECONDS}
    worker_env.pop("ENCORE_WORKER_METRICS_PORT", None)
    checkouts = harness.run_async(
        lambda: _process(run, api_url, UUID(program_id), f"evt_sbc{tag}%", count, worker_env, workers)
    )
    checkouts["setup"] = {
        "stub_registration_s": round(registered_s, 2),
        "post_s": round(posted_s, 2),
        "post_per_s": round(count / posted_s, 1),
    }
    complete = checkouts["processed"] == count and checkouts["orders"] >= count and not checkouts["failed"]
    checkouts["complete"] = complete
    if not complete:
        print(f"stripe: not every checkout became an order: {checkouts['problems']}", flush=True)

    # 2. The webhook endpoint's accept rate.
    accepts = run.http_phase("stripe accept", Accepts(api.base, program_id, tag), api)
    stored = harness.run_async(lambda: _stored(api_url, UUID(program_id), f"evt_sba{tag}%"))
    accepts.notes.append(f"stored: {stored}")
    stored_all = sum(stored.values())

    orders, hello = run.phases.get("orders"), run.phases.get("hello")
    rate = checkouts["per_second"] if complete else None
    return {
        "seconds_per_phase": cfg.seconds,
        "concurrency": cfg.concurrency,
        "lines_per_checkout": LINES,
        "connection": {"mode": connected.get("mode"), "key_last4": connected.get("key_last4")},
        "orders": _figures(orders),
        "hello": _figures(hello),
        "checkouts": checkouts,
        "accept": {
            **(_figures(accepts) or {}),
            "stored": stored,
            "stored_at_least_ok": stored_all >= accepts.ok,
        },
        "cpu_ms_per_order": _per_order(run),
        "ratios": {
            "checkouts_per_order": _ratio(rate, orders, TARGET_EVENTS_PER_ORDER),
            "accepts_per_hello": _ratio(
                accepts.rps if accepts.ok and stored_all >= accepts.ok else None,
                hello,
                TARGET_ACCEPTS_PER_HELLO,
            ),
        },
    }


def format_results(results: dict[str, Any]) -> str:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    ratios = results["ratios"]

    def row(name: str, figures: dict[str, Any] | None) -> str:
        if not figures or "rps" not in figures:
            return f"  {name:<30} not measured"
        errors = f"  ({figures['errors']} errors: {figures['statuses']})" if figures["errors"] else ""
        return (
            f"  {name:<30} {figures['rps']:>9.1f} req/s  p50 {figures['p50_ms']} ms  "
            f"p99 {figures['p99_ms']} ms  {figures['ok']:,} ok{errors}"
        )

    def ratio(name: str, entry: dict[str, Any]) -> str:
        return f"  {name} = {entry['value']} (target >= {entry['target']:g}: {verdict[entry['met']]})"

    def cpu(entry: dict[str, float], names: dict[str, str]) -> str:
        return ", ".join(f"{label} {entry[k]:g}" for k, label in names.items() if k in entry)

    c = results["checkouts"]
    runs, stub = c["worker_runs"], c["stub"]
    accept = results["accept"]
    lines = [
        f"stripe ({results['concurrency']} connections, {results['seconds_per_phase']:g} s per phase; "
        f"checkouts of {results['lines_per_checkout']} lines, line items from the local stub)",
        row("hello (this run)", results["hello"]),
        row("orders (this run)", results["orders"]),
        f"  {'checkouts -> orders':<30} {c['per_second'] or 0:>9.1f} events/s  "
        f"({c['processed']:,} of {c['events']:,} processed in {c['seconds']} s by {c['workers']} worker(s); "
        f"due -> processed p50 {c['due_to_processed_p50_s']} s, p99 {c['due_to_processed_p99_s']} s; "
        f"{c['orders']:,} orders, {c['points']:,} points; {c['failed']} failed)",
        f"    worker: {runs['runs']} stripe.events runs, mean {runs['mean_s']} s, max {runs['max_s']} s; "
        f"stub: {stub['requests']:,} requests, {stub['ms_per_request']} ms each, busy {stub['busy_share']} "
        f"of the time; posting the {c['events']:,} events: {c['setup']['post_per_s']}/s",
        row("webhook accepts", accept),
        f"    stored: {accept['stored']} (at least the 200s: {accept['stored_at_least_ok']})",
        ratio("checkouts/orders", ratios["checkouts_per_order"]),
        ratio("accepts/hello", ratios["accepts_per_hello"]),
        "  CPU ms per order (orders phase): "
        + cpu(
            results["cpu_ms_per_order"], {"server": "API", "postgres": "postgres", "client": "load client"}
        ),
        "  CPU ms per checkout event: "
        + cpu(
            c["cpu_ms_per_event"],
            {"server": "worker", "postgres": "postgres", "client": "stub + bench", "other": "other"},
        ),
    ]
    if c["sessions"]:
        lines.append(
            f"  worker sessions in PostgreSQL on average ({c['session_samples']} samples): "
            + ", ".join(f"{what} {n:g}" for what, n in c["sessions"].items())
        )
    if c["problems"]:
        lines.append(f"  not processed: {'; '.join(c['problems'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit("run it through bench.run: `make bench ONLY=stripe`")
