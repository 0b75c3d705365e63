"""VIP tiers: order throughput with tiers on against off, and the re-evaluation of a million customers.

Earn (needs bench.run's API server): two programs on one server and database, "off" without tiers and
"on" with three spend tiers (EUR 2,500 / 10,000 / 40,000 over 12 months, × 1.25 / 1.5 / 2 points). The
bench's orders average about EUR 500, so a customer reaches Silver around the fifth order: over the run
about half of them do (one order in ten upgrades its customer: a history row and an event), and from then
on their orders carry the multiplier (a second ledger entry). Orders that cannot reach the next tier by
the customer's lifetime spend skip the metrics query. The same order load
(bench.run.Orders: 5 lines, 2,000 customers) alternates off / on / on / off, BENCH_TIERS_SECONDS (default
15) each; the ratio is on ÷ off over the summed requests and seconds.

Re-evaluation (in-process, own database): BENCH_TIER_CUSTOMERS (default 1,000,000) customers with 0-6
orders each over the last two years (about 3 per customer), generated in SQL, and three spend tiers
(EUR 200 / 600 / 1,500 over 12 months). Timed, in this order:
- "tiers introduced": the first run, which upgrades every customer who qualifies (half of them: a
  one-off, the most writes a run can have; in service, orders upgrade customers as they cross);
- "again": the same moment (idempotent: nothing to change);
- "next day": the daily run the worker makes, over all customers (the target);
- "30 days later": a month of orders leaving the window at once (first looks at customers at risk);
- "13 months later": every holder's orders have left the window (warnings for those not protected).

Run alone: `python -m bench.tiers` (uses bench.run's choice of database server).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

TARGET_ON_PER_OFF = 0.9
TARGET_REEVALUATION_SECONDS = 20.0


def _tier(key: str, rank: int, euros: int, months: int = 12, multiplier: str = "1") -> dict[str, Any]:
    return {
        "key": key,
        "name": key.capitalize(),
        "rank": rank,
        "qualification": {
            "metric": "spend",
            "threshold": {"amount": euros * 100, "currency": "EUR"},
            "window": "rolling_months",
            "months": months,
        },
        "benefits": {"earn_multiplier": multiplier},
    }


EARN_TIERS = [
    _tier("silver", 1, 2_500, multiplier="1.25"),
    _tier("gold", 2, 10_000, multiplier="1.5"),
    _tier("platinum", 3, 40_000, multiplier="2"),
]
REEVALUATION_TIERS = [_tier("silver", 1, 200), _tier("gold", 2, 600), _tier("platinum", 3, 1_500)]


def measure_earn(run: Any, api: Any, api_env: dict[str, str]) -> dict[str, Any]:
    """On bench.run's API server `api` (an HttpServer)."""
    from bench.rules import _api, _program, alternating, rate

    seconds = float(os.environ.get("BENCH_TIERS_SECONDS", "15"))
    _off_program, off_key = _program(api_env, "Tiers bench: off")
    _on_program, on_key = _program(api_env, "Tiers bench: on")
    for tier in EARN_TIERS:
        _api(api.base, on_key, "POST", "/v1/tiers", tier)
    # off / on, then on / off: neither side always runs on the fuller database.
    off, on = ("off", off_key), ("on", on_key)
    phases = alternating(run, api, seconds, ((off, on), (on, off)), "tiers ")
    off_rate, on_rate = rate(phases["off"]), rate(phases["on"])
    listed = _api(api.base, on_key, "GET", "/v1/tiers")["items"]
    ratio = round(on_rate / off_rate, 3) if off_rate else None
    return {
        "seconds_per_phase": seconds,
        "off_per_s": round(off_rate, 1),
        "on_per_s": round(on_rate, 1),
        "phases": {k: [round(p.rps, 1) for p in v] for k, v in phases.items()},
        "holders_at_end": {t["key"]: t["customers"] for t in listed},
        "errors": sum(p.errors for kind in phases for p in phases[kind]),
        "ratio": {
            "value": ratio,
            "target": TARGET_ON_PER_OFF,
            "met": None if ratio is None else ratio >= TARGET_ON_PER_OFF,
        },
    }


_CUSTOMERS = """
INSERT INTO customer (id, program_id, external_id, created_at, updated_at)
SELECT gen_random_uuid(), $1, 'tc-' || g, $2, $2 FROM generate_series(1, $3) g
"""

# 0-6 orders per customer (by a hash of its id: reproducible), EUR 20-320 each, over the last 730 days.
_ORDERS = """
INSERT INTO orders (id, program_id, customer_id, external_id, currency, placed_at, subtotal_amount,
                    discount_amount, shipping_amount, total_amount, eligible_amount, points_earned,
                    refunded_amount, refunded_shipping_amount, points_reversed, status, earn_explanation,
                    created_at, attributes)
SELECT gen_random_uuid(), $1, s.customer_id, s.external_id || '-' || s.k, 'EUR', s.placed_at, s.amount, 0, 0,
       s.amount, s.amount, s.amount / 100, 0, 0, 0, 'placed', '', $2, '{}'
FROM (
    SELECT c.id AS customer_id, c.external_id, k, (2000 + random() * 30000)::bigint AS amount,
           $2::timestamptz - random() * interval '730 days' AS placed_at
    FROM customer c CROSS JOIN LATERAL generate_series(1, abs(hashtext(c.external_id)) % 7) k
    WHERE c.program_id = $1
) s
"""


async def measure_reevaluation(url: str, customers: int) -> dict[str, Any]:
    import msgspec

    from service.core import db
    from service.programs import service as programs
    from service.tiers import domain, jobs
    from service.tiers import service as tiers
    from service.tiers.schemas import TierCreate

    now = datetime.now(UTC).replace(microsecond=0)
    db.configure(url)
    await db.open_pool(1, 4)
    try:
        async with db.transaction() as conn:
            program, _key = await programs.create_program(conn, "Tiers bench: re-evaluation", "EUR", now)
        began = time.perf_counter()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SELECT setseed(0.42)")
            await conn.execute(_CUSTOMERS, program.id, now, customers)
            await conn.execute(_ORDERS, program.id, now)
            orders = await conn.fetchval("SELECT count(*) FROM orders WHERE program_id = $1", program.id)
            for table in ("orders", "customer"):
                await conn.execute(f"VACUUM (ANALYZE) {table}")
        finally:
            await conn.close()
        generated_s = time.perf_counter() - began
        async with db.transaction() as conn:
            loaded = await programs.load(conn, program.id)
            for tier in REEVALUATION_TIERS:
                await tiers.create(conn, loaded, msgspec.convert(tier, TierCreate), now)
        runs = {}
        for name, at in (
            ("tiers introduced", now),
            ("again", now),
            ("next day", now + timedelta(days=1)),
            ("30 days later", now + timedelta(days=31)),
            ("13 months later", domain.add_months(now, 13)),
        ):
            began = time.perf_counter()
            result = await jobs.reevaluate(at, program.id)
            runs[name] = {
                "seconds": round(time.perf_counter() - began, 2),
                "candidates": result.customers,
                "changes": dict(result.counts),
            }
        async with db.connection() as conn:
            held = await conn.fetch(
                "SELECT t.key, count(*) AS n FROM customer_tier ct JOIN tier t ON t.id = ct.tier_id "
                "WHERE ct.program_id = $1 GROUP BY t.key ORDER BY t.key",
                program.id,
            )
    finally:
        await db.close_pool()
    daily = runs["next day"]["seconds"]
    return {
        "customers": customers,
        "orders": orders,
        "generated_in_s": round(generated_s, 1),
        "runs": runs,
        "holders_after": {r["key"]: r["n"] for r in held},
        "ratio": {
            "value": daily,
            "target": TARGET_REEVALUATION_SECONDS,
            "met": daily <= TARGET_REEVALUATION_SECONDS,
        },
    }


def format_results(earn: dict[str, Any] | None, reevaluation: dict[str, Any] | None) -> str:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    lines = ["VIP tiers"]
    if earn is not None:
        lines += [
            f"  earn, tiers off {earn['off_per_s']:>8.1f} orders/s  {earn['phases']['off']}",
            f"  earn, tiers on  {earn['on_per_s']:>8.1f} orders/s  {earn['phases']['on']}  holders at the end "
            f"{earn['holders_at_end']}" + (f"  ({earn['errors']} errors)" if earn["errors"] else ""),
            f"  on/off = {earn['ratio']['value']} (target >= {earn['ratio']['target']:g}: {verdict[earn['ratio']['met']]})",
        ]
    if reevaluation is not None:
        r = reevaluation
        lines.append(
            f"  re-evaluation of {r['customers']:,} customers with {r['orders']:,} orders "
            f"(generated in {r['generated_in_s']} s):"
        )
        for name, run in r["runs"].items():
            changes = ", ".join(f"{n:,} {kind}" for kind, n in sorted(run["changes"].items())) or "no change"
            lines.append(
                f"    {name:<17} {run['seconds']:>6.2f} s  {run['candidates']:,} candidates: {changes}"
            )
        lines.append(
            f"  daily run over all {r['customers']:,} customers: {r['ratio']['value']} s "
            f"(target <= {r['ratio']['target']:g} s: {verdict[r['ratio']['met']]}); holders after: {r['holders_after']}"
        )
    return "\n".join(lines)


def main() -> int:
    """This phase alone: a fresh database on bench.run's server for each part, then dropped."""
    import secrets

    from bench import run as harness

    cfg = harness.Config.from_env()
    run = harness.Run(cfg)
    server_url, _source = harness.resolve_server()
    run.postmaster = harness.run_async(lambda: harness.postmaster_pid(server_url))
    earn = reevaluation = None
    name = f"encore_tiers_{secrets.token_hex(4)}"
    harness.run_async(lambda: harness.create_database(server_url, name))
    url = harness.with_database(server_url, name)
    env = {**os.environ, "ENCORE_DATABASE_URL": url, "ENCORE_LOG_LEVEL": "WARNING"}
    try:
        harness.encore_cli(["migrate"], env)
        if float(os.environ.get("BENCH_TIERS_SECONDS", "15")) > 0:
            api = harness.start_uvicorn("api", ["--factory", "service.app:app_from_env"], env, cfg.workers)
            try:
                earn = measure_earn(run, api, env)
            finally:
                harness.stop_server(api)
        customers = int(os.environ.get("BENCH_TIER_CUSTOMERS", "1000000"))
        if customers > 0:
            reevaluation = harness.run_async(lambda: measure_reevaluation(url, customers))
    finally:
        harness.run_async(lambda: harness.drop_database(server_url, name))
    text = format_results(earn, reevaluation)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / f"tiers-{stamp}.txt").write_text(text + "\n")
    (harness.RESULTS / f"tiers-{stamp}.json").write_text(
        json.dumps({"earn": earn, "reevaluation": reevaluation}, indent=2, default=str) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
