"""Ledger sweeps at scale: 1 M lots generated in SQL (consistent lots, entries, allocations, balances),
then `mature`, `verify`, `expire`, `verify` timed — the set-based SQL the worker will schedule.

Run alone: `python -m bench.sweeps <database-url> [lots]` (the database must be migrated and empty).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from service.core import db
from service.ledger import jobs

LOTS_PER_CUSTOMER = 5
T0 = datetime(2026, 6, 1, tzinfo=UTC)

_SEED = """
WITH p AS (
    INSERT INTO program (id, name, base_currency, earn_rates, pending_days, points_expire_after_days,
                         point_value_amount, point_value_points, timezone, created_at, updated_at)
    VALUES (gen_random_uuid(), 'Sweep bench', 'EUR', '{"EUR": "1"}', 14, 30, 1, 1, 'UTC', $1, $1)
    RETURNING id
)
INSERT INTO customer (id, program_id, external_id, marketing_consent, created_at, updated_at)
SELECT gen_random_uuid(), p.id, 'c-' || g, false, $1, $1 FROM p, generate_series(1, $2) g
"""

_SEED_LOTS = """
INSERT INTO points_lot (id, program_id, customer_id, points, remaining, state, available_at, expires_at, created_at)
SELECT gen_random_uuid(), c.program_id, c.id, 10 + k, 10 + k, 'pending', $1::timestamptz - interval '1 day',
       $1::timestamptz + (k || ' days')::interval, $1::timestamptz - interval '15 days'
FROM customer c, generate_series(1, $2) k
"""

_SEED_ENTRIES = """
INSERT INTO points_entry (program_id, customer_id, kind, points, debt_change, lot_id, reason, explanation, created_at)
SELECT program_id, customer_id, 'earn', points, 0, id, 'bench', 'bench', created_at FROM points_lot
"""

_SEED_ALLOCATIONS = """
INSERT INTO points_allocation (program_id, entry_id, lot_id, points)
SELECT program_id, id, lot_id, points FROM points_entry
"""

_SEED_BALANCES = """
INSERT INTO customer_balance (customer_id, program_id, available, pending, debt, lifetime_earned, updated_at)
SELECT customer_id, min(program_id::text)::uuid, 0, sum(remaining), 0, sum(points), $1
FROM points_lot GROUP BY customer_id
"""


async def seed(url: str, lots: int) -> float:
    customers = lots // LOTS_PER_CUSTOMER
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(_SEED, T0 - timedelta(days=15), customers)
            await conn.execute(_SEED_LOTS, T0, LOTS_PER_CUSTOMER)
            await conn.execute(_SEED_ENTRIES)
            await conn.execute(_SEED_ALLOCATIONS)
            await conn.execute(_SEED_BALANCES, T0)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def measure(url: str, lots: int = 1_000_000) -> dict[str, Any]:
    """Seed `lots` lots and time each sweep; returns seconds per step and the rows each touched."""
    results: dict[str, Any] = {"lots": lots, "seed_s": round(await seed(url, lots), 2)}
    db.configure(url)
    await db.open_pool(1, 4)
    try:
        for name, step in (
            ("mature", lambda: jobs.mature(T0)),
            ("verify_after_mature", jobs.verify),
            ("expire", lambda: jobs.expire(T0 + timedelta(days=LOTS_PER_CUSTOMER + 1))),
            ("verify_after_expire", jobs.verify),
        ):
            started = time.perf_counter()
            outcome = await step()
            elapsed = time.perf_counter() - started
            detail = {"ok": outcome.ok} if isinstance(outcome, jobs.VerifyReport) else {"lots": outcome.lots}
            results[name] = {"seconds": round(elapsed, 2), **detail}
    finally:
        await db.close_pool()
    return results


def format_results(results: dict[str, Any]) -> str:
    lines = [f"ledger sweeps over {results['lots']:,} lots (seeded in {results['seed_s']} s)"]
    for name in ("mature", "verify_after_mature", "expire", "verify_after_expire"):
        step = results[name]
        extra = f"ok={step['ok']}" if "ok" in step else f"{step['lots']:,} lots"
        lines.append(f"  {name:<22} {step['seconds']:>7.2f} s   {extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    target = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    print(format_results(asyncio.run(measure(target, count))))
