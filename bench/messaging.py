"""Messaging: the send sweep's select-and-render of many due messages, and SMTP delivery to a local
aiosmtpd (its own process, so the server does not share the sender's CPU).

Render (BENCH_MESSAGES, default 100,000): 20,000 customers in the six shipped locales with an order each
(two lines), and the due messages spread over five types (thank-you with its order, points expiring, win-back,
repeat invitation, birthday). Timed: every batch the worker takes (claim with a lease, load the batch's
facts in one query per kind, guardrails, render subject/text/HTML in the customer's locale) until none is due;
as in the worker, a batch renders in a thread while the next one is claimed.

SMTP (BENCH_SMTP_MESSAGES, default 5,000): the same kinds of messages through one worker's Sender (its
SMTP sessions, MIME building, result writes) to aiosmtpd on 127.0.0.1.

Run alone: `python -m bench.messaging` (uses bench.run's choice of database server).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

TARGET_RENDER_SECONDS = 10.0
TARGET_SMTP_PER_SECOND = 300.0

_CUSTOMERS = """
INSERT INTO customer (id, program_id, external_id, email, name, locale, timezone, marketing_consent, created_at, updated_at)
SELECT gen_random_uuid(), $1, 'c-' || n, 'customer' || n || '@example.com',
       (ARRAY['Ada Lovelace', 'Ayşe Yılmaz', 'Gwen Jones', 'Līga Ozola', 'Siti Aminah', 'Иван Петров'])[n % 6 + 1],
       (ARRAY['en-GB', 'tr', 'cy', 'lv', 'ms', 'ru'])[n % 6 + 1], 'UTC', true, $2, $2
FROM generate_series(1, $3) AS n
"""
_ORDERS = """
WITH o AS (
    INSERT INTO orders (id, program_id, customer_id, external_id, currency, placed_at, subtotal_amount, discount_amount,
                        shipping_amount, total_amount, eligible_amount, points_earned, earn_explanation, created_at)
    SELECT gen_random_uuid(), c.program_id, c.id, 'o-' || c.external_id, 'EUR', $2, 8990, 0, 0, 8990, 8990, 89, '', $2
    FROM customer c WHERE c.program_id = $1
    RETURNING id, program_id
)
INSERT INTO order_line (id, program_id, order_id, position, sku, name, category, quantity, unit_amount, line_amount,
                        discount_amount, eligible_amount, points)
SELECT gen_random_uuid(), o.program_id, o.id, p, 'SKU-' || p, (ARRAY['Trail shoes', 'Wool socks'])[p], 'Shoes', p,
       4990 - (p - 1) * 1000, 4990, 0, 4990, 49
FROM o CROSS JOIN generate_series(1, 2) AS p
"""
_MESSAGES = """
INSERT INTO message (program_id, customer_id, message_type, category, dedupe_key, context, status, due_at, created_at, updated_at)
SELECT c.program_id, c.id, t.message_type, t.category, $3 || ':' || n, t.context || jsonb_build_object('order_id', o.id),
       'queued', $2, $2, $2
FROM generate_series(0, $4 - 1) AS n
JOIN LATERAL (SELECT id, program_id FROM customer WHERE program_id = $1 AND external_id = 'c-' || (n % $5 + 1)) c ON true
JOIN orders o ON o.customer_id = c.id
JOIN LATERAL (
    SELECT * FROM (VALUES
        (0, 'order_thank_you', 'transactional', '{}'::jsonb),
        (1, 'points_expiring', 'transactional', '{"event": {"points": 120, "expires_at": "2027-01-31T00:00:00+00:00"}}'::jsonb),
        (2, 'win_back', 'marketing', '{"reward_points": 200}'::jsonb),
        (3, 'repeat_invitation', 'marketing', '{"offer": "Early access to the winter collection."}'::jsonb),
        (4, 'birthday', 'marketing', '{"reward_points": 50}'::jsonb)
    ) AS v(k, message_type, category, context) WHERE v.k = n % 5
) t ON true
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


_SMTP_SERVER = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 OK"
controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


async def _sweep(
    url: str, now: datetime, worker: str, ready: Any = None, go: Any = None
) -> tuple[int, float]:
    """One worker's select + render sweep until nothing is due: (messages rendered, seconds)."""
    from service.core import db
    from service.messaging import rendering
    from service.messaging.catalogue import LOCALES, MESSAGE_TYPES
    from service.messaging.jobs import Sender
    from service.settings import Settings

    for locale in LOCALES:  # a worker compiles the defaults once; not the sweep's cost
        for message_type in MESSAGE_TYPES:
            rendering.default_template(locale, message_type)
    if db.DB.pool is None:
        db.configure(url)
        await db.open_pool(1, 4)
    sender = Sender(Settings(database_url=url, secret_key="bench", message_batch_size=1000), worker)
    if ready is not None:
        ready.set()
        go.wait()
    rendered = 0
    began = time.perf_counter()
    async for batch in sender.batches(now, 1000, budget_seconds=3600):
        rendered += sum(1 for p in batch if p.envelope is not None)
    seconds = time.perf_counter() - began
    await sender.close()
    return rendered, seconds


def _sweep_process(url: str, now: datetime, worker: str, ready: Any, go: Any, results: Any) -> None:
    import asyncio

    results.put(asyncio.run(_sweep(url, now, worker, ready, go)))


def _two_sweeps(url: str, now: datetime) -> tuple[int, float]:
    """Two worker processes, started together once both are warm; wall time until both are done."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    readies = [context.Event() for _ in range(2)]
    workers = [
        context.Process(target=_sweep_process, args=(url, now, f"bench-render-{n}", readies[n], go, results))
        for n in range(2)
    ]
    for process in workers:
        process.start()
    for ready in readies:
        ready.wait(120)
    began = time.perf_counter()
    go.set()
    counts = [results.get(timeout=600)[0] for _ in workers]
    seconds = time.perf_counter() - began
    for process in workers:
        process.join(30)
    return sum(counts), seconds


async def measure(url: str, messages: int, smtp_messages: int) -> dict[str, Any]:
    from service.core import db
    from service.messaging import repository
    from service.messaging.jobs import Sender
    from service.messaging.schemas import MessagingSettings
    from service.programs import service as programs
    from service.settings import Settings

    now = datetime.now(UTC).replace(microsecond=0)
    customers = 20_000
    db.configure(url)
    await db.open_pool(1, 4)
    settings = Settings(
        database_url=url, secret_key="bench", message_batch_size=1000, worker_run_budget_seconds=3600
    )
    result: dict[str, Any] = {"messages": messages, "customers": customers}
    try:
        async with db.transaction() as conn:
            program, _key = await programs.create_program(conn, "Messaging bench", "EUR", now)
            # No quiet hours, a cap that does not bite: every message is rendered (the cost being measured).
            rails = MessagingSettings(
                from_email="hello@shop.example",
                quiet_hours=None,
                marketing_cap=100,
                marketing_min_gap_hours=0,
            )
            await repository.save_settings(conn, program.id, rails, now)
        conn = await asyncpg.connect(url)
        try:
            began = time.perf_counter()
            await conn.execute(_CUSTOMERS, program.id, now, customers)
            await conn.execute(_ORDERS, program.id, now)
            await conn.execute(_MESSAGES, program.id, now, "render", messages, customers)
            for table in ("customer", "orders", "order_line", "message"):
                await conn.execute(f"VACUUM (ANALYZE) {table}")
            result["generated_s"] = round(time.perf_counter() - began, 1)
        finally:
            await conn.close()

        rendered, render_s = await _sweep(url, now, "bench-render")
        result["render"] = {"seconds": round(render_s, 2), "rendered": rendered,
                            "per_second": round(rendered / render_s, 1)}  # fmt: skip
        # The same messages again (their leases dropped), swept by two worker processes side by side.
        async with db.connection() as conn:
            await conn.execute("UPDATE message SET claimed_by = NULL, claimed_until = NULL")
            await conn.execute("VACUUM (ANALYZE) message")
        rendered_two, render_two_s = _two_sweeps(url, now)
        result["render_two_workers"] = {"seconds": round(render_two_s, 2), "rendered": rendered_two,
                                        "per_second": round(rendered_two / render_two_s, 1)}  # fmt: skip

        # SMTP: fresh messages of the same kinds, one Sender (its 4 sessions) to aiosmtpd in its own process.
        port = _free_port()
        server = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is timed)
            [sys.executable, "-c", _SMTP_SERVER, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            async with db.connection() as conn:
                await conn.execute(_MESSAGES, program.id, now, "smtp", smtp_messages, customers)
            smtp_settings = replace(
                settings, message_batch_size=500, smtp_url=f"smtp://127.0.0.1:{port}?starttls=never"
            )
            smtp = Sender(smtp_settings, "bench-smtp")
            began = time.perf_counter()
            report = await smtp.run(now)
            smtp_s = time.perf_counter() - began
            await smtp.close()
        finally:
            if server.stdin:
                server.stdin.close()
            server.wait(timeout=10)
        result["smtp"] = {"seconds": round(smtp_s, 2), "sent": report.sent, "failed": report.failed,
                          "per_second": round(report.sent / smtp_s, 1)}  # fmt: skip
    finally:
        await db.close_pool()
    result["render_target_s"] = TARGET_RENDER_SECONDS
    result["smtp_target_per_s"] = TARGET_SMTP_PER_SECOND
    result["render_met"] = result["render"]["seconds"] <= TARGET_RENDER_SECONDS
    result["render_two_met"] = result["render_two_workers"]["seconds"] <= TARGET_RENDER_SECONDS
    result["smtp_met"] = result["smtp"]["per_second"] >= TARGET_SMTP_PER_SECOND
    return result


def format_results(r: dict[str, Any] | None) -> str:
    if not r:
        return ""
    verdict = {True: "met", False: "MISSED"}
    render, two, smtp = r["render"], r["render_two_workers"], r["smtp"]
    return "\n".join(
        [
            f"messaging: {r['messages']:,} due messages for {r['customers']:,} customers in 6 locales (generated in {r['generated_s']} s)",
            f"  select + render sweep, one worker   {render['seconds']} s  ({render['rendered']:,} rendered, "
            f"{render['per_second']}/s; target <= {r['render_target_s']:g} s: {verdict[r['render_met']]})",
            f"  select + render sweep, two workers  {two['seconds']} s  ({two['rendered']:,} rendered, "
            f"{two['per_second']}/s; target <= {r['render_target_s']:g} s: {verdict[r['render_two_met']]})",
            f"  SMTP to aiosmtpd       {smtp['per_second']} messages/s per worker  ({smtp['sent']:,} sent in {smtp['seconds']} s; "
            f"target >= {r['smtp_target_per_s']:g}/s: {verdict[r['smtp_met']]})",
        ]
    )


def main() -> int:
    """This phase alone: a fresh database on bench.run's server, then dropped."""
    import secrets

    from bench import run as harness

    server_url, _source = harness.resolve_server()
    name = f"encore_messaging_{secrets.token_hex(4)}"
    harness.run_async(lambda: harness.create_database(server_url, name))
    url = harness.with_database(server_url, name)
    env = {**os.environ, "ENCORE_DATABASE_URL": url, "ENCORE_LOG_LEVEL": "WARNING"}
    try:
        harness.encore_cli(["migrate"], env)
        messages = int(os.environ.get("BENCH_MESSAGES", "100000"))
        smtp_messages = int(os.environ.get("BENCH_SMTP_MESSAGES", "5000"))
        result = harness.run_async(lambda: measure(url, messages, smtp_messages))
    finally:
        harness.run_async(lambda: harness.drop_database(server_url, name))
    text = format_results(result)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / f"messaging-{stamp}.txt").write_text(text + "\n")
    (harness.RESULTS / f"messaging-{stamp}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
