"""Earning rules: order throughput with 50 active rules against the base rule alone, and the time a
simulation takes over 100,000 orders.

Earn: two programs on one API server (the production uvicorn of bench.run) and one database: "base" has
only the default rule, "rules" has 50 more (RULE_SET: category multipliers, basket bonuses, SKU rates,
percentage bonuses, monthly-capped rates, a budgeted campaign, customer-fact conditions). The same order
load (bench.run.Orders: 5 lines, 2,000 customers) alternates between them, base / rules / rules / base,
BENCH_RULES_SECONDS (default 15) each, so both see the same machine; the ratio is rules ÷ base over the
summed requests and seconds.

Simulation: BENCH_SIMULATION_ORDERS (default 100,000) orders of 1-5 lines over 20,000 customers and 30
days, written in SQL into a third program with the same 50 rules, then `POST /v1/rules/{id}/simulate`
of one more rule over the 30 days: the wall time of the request (target <= 10 s) and the time the
service reports.

Run alone: `python -m bench.rules` (uses bench.run's choice of database server).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

TARGET_RULES_PER_BASE = 0.85
TARGET_SIMULATION_SECONDS = 10.0
SIMULATION_DAYS = 30


def rule_set() -> list[dict[str, Any]]:
    """Fifty active rules of the kinds a busy program runs at once, most of them targeted (a category on
    its day of the week, featured SKUs, big baskets, loyal customers), so an order typically meets the
    base rule and two or three others; bench.run.Orders sends categories cat-0..cat-9, SKUs SKU-0..199,
    unit amounts EUR 1-100, 1-3 of each. The run reports the ledger entries per order it measured."""
    rules: list[dict[str, Any]] = []
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    for i in range(10):
        rules.append(
            {
                "name": f"Double points on cat-{i} on {days[i % 7]}",
                "priority": 10,
                "stacking": "exclusive",
                "window": {"days_of_week": [days[i % 7]]},
                "conditions": {"field": "line.category", "op": "eq", "value": f"cat-{i}"},
                "effect": {"kind": "multiplier", "multiplier": "2"},
            }
        )
    for i in range(10):
        rules.append(
            {
                "name": f"Basket bonus {i}",
                "conditions": {
                    "all": [
                        {
                            "field": "order.total",
                            "op": "gte",
                            "value": {"amount": 70_000 + 10_000 * i, "currency": "EUR"},
                        },
                        {"field": "customer.order_count", "op": "gte", "value": i},
                    ]
                },
                "effect": {"kind": "fixed", "points": 10 + i},
            }
        )
    for i in range(10):
        rules.append(
            {
                "name": f"Featured SKUs {i}",
                "audience": {"customers": "returning"},
                "conditions": {
                    "field": "line.sku",
                    "op": "in",
                    "value": [f"SKU-{20 * i}", f"SKU-{20 * i + 1}"],
                },
                "effect": {"kind": "rate", "rates": {"EUR": "0.5"}},
            }
        )
    for i in range(10):
        rules.append(
            {
                "name": f"Loyal bonus cat-{i}",
                "window": {"days_of_week": [days[(i + 3) % 7]]},
                "conditions": {
                    "all": [
                        {"field": "line.category", "op": "eq", "value": f"cat-{i}"},
                        {"field": "line.quantity", "op": "gte", "value": 2},
                        {"not": {"field": "customer.days_since_last_order", "op": "gt", "value": 30}},
                    ]
                },
                "effect": {"kind": "percent_bonus", "percent": "5"},
            }
        )
    for i in range(5):
        rules.append(
            {
                "name": f"Premium items {i}",
                "priority": 5,
                "stacking": "exclusive",
                "conditions": {
                    "all": [
                        {
                            "field": "line.unit_amount",
                            "op": "gte",
                            "value": {"amount": 9_500 + 100 * i, "currency": "EUR"},
                        },
                        {"field": "line.quantity", "op": "gte", "value": 2},
                    ]
                },
                "effect": {"kind": "rate", "rates": {"EUR": "1.5"}},
                "caps": {"per_customer_month": 500},
            }
        )
    rules.append(
        {
            "name": "Big basket campaign",
            "conditions": {"field": "order.item_count", "op": "gte", "value": 14},
            "effect": {"kind": "fixed", "points": 20},
            "budget_points": 100_000_000,
        }
    )
    rules.append(
        {
            "name": "App orders",
            "conditions": {"field": "order.attributes.channel", "op": "eq", "value": "app"},
            "effect": {"kind": "multiplier", "multiplier": "1", "scope": "order"},
        }
    )
    rules.append(
        {
            "name": "Birthday month",
            "conditions": {"field": "customer.is_birthday_month", "op": "eq", "value": True},
            "effect": {"kind": "percent_bonus", "percent": "20", "scope": "order"},
        }
    )
    rules.append({"name": "Welcome", "trigger": "signup", "effect": {"kind": "fixed", "points": 100}})
    rules.append(
        {
            "name": "Five-star review",
            "trigger": "review_written",
            "conditions": {"field": "event.properties.stars", "op": "eq", "value": 5},
            "effect": {"kind": "fixed", "points": 50},
        }
    )
    assert len(rules) == 50
    return [{**rule, "status": "active"} for rule in rules]


def _api(base: str, key: str, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    if method == "POST":  # creating POSTs require one; the others ignore it
        request.add_header("Idempotency-Key", uuid.uuid4().hex)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def alternating(
    run: Any, api: Any, seconds: float, rounds: Sequence[Sequence[tuple[str, str]]], title: str = ""
) -> dict[str, list[Any]]:
    """Order phases of `seconds` each on bench.run's server, one per (kind, API key) in each round's
    order: the programs compared take turns on the same machine and the same database."""
    from bench import run as harness

    saved_cfg = run.cfg
    run.cfg = dataclasses.replace(saved_cfg, seconds=seconds)
    phases: dict[str, list[Any]] = {}
    try:
        for number, sides in enumerate(rounds):
            for kind, key in sides:
                orders = harness.Orders(api.base, key, f"{title.strip()}{kind}{number}-{os.getpid()}")
                phases.setdefault(kind, []).append(
                    run.http_phase(f"earn {title}{kind} #{number + 1}", orders, api)
                )
    finally:
        run.cfg = saved_cfg
    return phases


def rate(phases: Sequence[Any]) -> float:
    """Orders per second over the summed requests and seconds of the phases."""
    ok = sum(p.ok for p in phases)
    spent = sum(p.seconds for p in phases)
    return ok / spent if spent else 0.0


def _program(env: dict[str, str], name: str) -> tuple[str, str]:
    from bench import run as harness

    created = json.loads(
        harness.encore_cli(["programs", "create", "--name", name, "--currency", "EUR", "--json"], env)
        .strip()
        .splitlines()[-1]
    )
    return created["program_id"], created["api_key"]


_ORDERS = """
WITH c AS (
    INSERT INTO customer (id, program_id, external_id, birthday, created_at, updated_at)
    SELECT gen_random_uuid(), $1, 'sim-c-' || g, date '1990-01-01' + (g % 365), $3, $3
    FROM generate_series(0, $4 - 1) g
    RETURNING id, external_id
), numbered AS (
    SELECT id, row_number() OVER () - 1 AS n FROM c
), o AS (
    INSERT INTO orders (id, program_id, customer_id, external_id, currency, placed_at, subtotal_amount,
                        discount_amount, shipping_amount, total_amount, eligible_amount, points_earned,
                        refunded_amount, refunded_shipping_amount, points_reversed, status, earn_explanation,
                        created_at, attributes)
    SELECT gen_random_uuid(), $1, numbered.id, 'sim-o-' || g, 'EUR',
           $3 + make_interval(secs => (g::double precision / $2) * $5 * 86400), 0, 0, 0, 0, 0, 0, 0, 0, 0,
           'placed', '', $3,
           CASE WHEN g % 4 = 0 THEN '{"channel": "app"}'::jsonb ELSE '{}'::jsonb END
    FROM generate_series(0, $2 - 1) g JOIN numbered ON numbered.n = (g * 7919) % $4
    RETURNING id, external_id
)
INSERT INTO order_line (id, program_id, order_id, position, sku, name, category, quantity, unit_amount,
                        line_amount, discount_amount, eligible_amount, points, refunded_quantity,
                        refunded_amount, refunded_points)
SELECT gen_random_uuid(), $1, o.id, p, 'SKU-' || s, 'Product ' || s, 'cat-' || (s % 10), q, u, q * u, 0, q * u,
       0, 0, 0, 0
FROM o, LATERAL (SELECT substring(o.external_id FROM 7)::int AS g) k,
     LATERAL generate_series(0, k.g % 5) p,
     LATERAL (SELECT (k.g * 31 + p * 17) % 200 AS s, 1 + (k.g + p) % 3 AS q, 100 + ((k.g * 131 + p * 977) % 9900) AS u) x
"""

_TOTALS = """
UPDATE orders o SET subtotal_amount = t.amount, total_amount = t.amount, eligible_amount = t.amount
FROM (SELECT order_id, sum(line_amount) AS amount FROM order_line GROUP BY order_id) t
WHERE t.order_id = o.id AND o.program_id = $1
"""


def measure(run: Any, api: Any, api_env: dict[str, str], url: str) -> dict[str, Any]:
    """Phase 7 of bench.run, on its API server `api` (an HttpServer) over the database at `url`."""
    from bench import run as harness

    seconds = float(os.environ.get("BENCH_RULES_SECONDS", "15"))
    orders_count = int(os.environ.get("BENCH_SIMULATION_ORDERS", "100000"))
    rules = rule_set()
    base_program, base_key = _program(api_env, "Rules bench: base rule only")
    rules_program, rules_key = _program(api_env, "Rules bench: 50 rules")
    for rule in rules:
        _api(api.base, rules_key, "POST", "/v1/rules", rule)
    base, ruled = ("base", base_key), ("rules", rules_key)
    # base / rules, then rules / base: neither side always runs on the fuller database.
    phases = alternating(run, api, seconds, ((base, ruled), (ruled, base)))
    base_rate, rules_rate = rate(phases["base"]), rate(phases["rules"])

    async def entries_per_order(program_id: str) -> float:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) AS entries, count(DISTINCT order_id) AS orders FROM points_entry "
                "WHERE program_id = $1 AND kind = 'earn'",
                program_id,
            )
        finally:
            await conn.close()
        return round(row["entries"] / row["orders"], 2) if row and row["orders"] else 0.0

    per_order = {
        "base": harness.run_async(lambda: entries_per_order(base_program)),
        "rules": harness.run_async(lambda: entries_per_order(rules_program)),
    }
    errors = sum(p.errors for kind in phases for p in phases[kind])
    ratio = round(rules_rate / base_rate, 3) if base_rate else None

    # Simulation over generated history.
    sim_program, sim_key = _program(api_env, "Rules bench: simulation")
    for rule in rules:
        _api(api.base, sim_key, "POST", "/v1/rules", rule)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=SIMULATION_DAYS + 1)
    generated = time.perf_counter()

    async def generate() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                _ORDERS, sim_program, orders_count, start, max(1, orders_count // 5), SIMULATION_DAYS
            )
            await conn.execute(_TOTALS, sim_program)
            # Vacuumed now, as old history would be: autovacuum would otherwise run beside the simulation.
            for table in ("orders", "order_line", "customer"):
                await conn.execute(f"VACUUM (ANALYZE) {table}")
        finally:
            await conn.close()

    harness.run_async(generate)
    generated_s = time.perf_counter() - generated
    draft = _api(
        api.base,
        sim_key,
        "POST",
        "/v1/rules",
        {
            "name": "Weekend triple on cat-3",
            "priority": 20,
            "stacking": "exclusive",
            "window": {"days_of_week": ["sat", "sun"]},
            "conditions": {"field": "line.category", "op": "eq", "value": "cat-3"},
            "effect": {"kind": "multiplier", "multiplier": "3"},
        },
    )
    began = time.perf_counter()
    result = _api(
        api.base,
        sim_key,
        "POST",
        f"/v1/rules/{draft['id']}/simulate",
        {
            "from": start.isoformat(),
            "to": (start + timedelta(days=SIMULATION_DAYS + 1)).isoformat(),
        },
    )
    wall = time.perf_counter() - began
    return {
        "earn": {
            "seconds_per_phase": seconds,
            "base_per_s": round(base_rate, 1),
            "rules_per_s": round(rules_rate, 1),
            "phases": {k: [round(p.rps, 1) for p in v] for k, v in phases.items()},
            "earn_entries_per_order": per_order,
            "errors": errors,
        },
        "simulation": {
            "orders": result["orders_replayed"],
            "generated_in_s": round(generated_s, 1),
            "wall_s": round(wall, 2),
            "service_ms": result["elapsed_ms"],
            "orders_affected": result["orders_affected"],
            "extra_points": result["extra_points"],
            "extra_cost": result["extra_cost"],
        },
        "ratios": {
            "rules_per_base": {
                "value": ratio,
                "target": TARGET_RULES_PER_BASE,
                "met": None if ratio is None else ratio >= TARGET_RULES_PER_BASE,
            },
            "simulation_seconds": {
                "value": round(wall, 2),
                "target": TARGET_SIMULATION_SECONDS,
                "met": wall <= TARGET_SIMULATION_SECONDS and result["orders_replayed"] >= orders_count,
            },
        },
    }


def format_results(results: dict[str, Any]) -> str:
    earn, sim, ratios = results["earn"], results["simulation"], results["ratios"]
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    per_base = ratios["rules_per_base"]
    sim_ratio = ratios["simulation_seconds"]
    return "\n".join(
        [
            "earning rules (orders of 5 lines, alternating base / rules / rules / base, "
            f"{earn['seconds_per_phase']:g} s each, two rounds)",
            f"  base rule only  {earn['base_per_s']:>8.1f} orders/s  {earn['phases']['base']}  "
            f"{earn['earn_entries_per_order']['base']} earn entries per order",
            f"  50 more rules   {earn['rules_per_s']:>8.1f} orders/s  {earn['phases']['rules']}  "
            f"{earn['earn_entries_per_order']['rules']} earn entries per order"
            + (f"  ({earn['errors']} errors)" if earn["errors"] else ""),
            f"  rules/base = {per_base['value']} (target >= {per_base['target']:g}: {verdict[per_base['met']]})",
            f"  simulation of {sim['orders']:,} orders with 51 rules (generated in {sim['generated_in_s']} s): "
            f"{sim['wall_s']} s wall, {sim['service_ms']} ms in the service; {sim['orders_affected']:,} orders "
            f"affected, {sim['extra_points']:,} extra points, cost {sim['extra_cost']} "
            f"(target <= {sim_ratio['target']:g} s: {verdict[sim_ratio['met']]})",
        ]
    )


def main() -> int:
    """This phase alone: a fresh database on bench.run's server, the production API server, then drop."""
    import secrets

    from bench import run as harness

    cfg = harness.Config.from_env()
    run = harness.Run(cfg)
    server_url, _source = harness.resolve_server()
    run.postmaster = harness.run_async(lambda: harness.postmaster_pid(server_url))
    name = f"encore_rules_{secrets.token_hex(4)}"
    harness.run_async(lambda: harness.create_database(server_url, name))
    url = harness.with_database(server_url, name)
    env = {**os.environ, "ENCORE_DATABASE_URL": url, "ENCORE_LOG_LEVEL": "WARNING"}
    try:
        harness.encore_cli(["migrate"], env)
        api = harness.start_uvicorn("api", ["--factory", "service.app:app_from_env"], env, cfg.workers)
        try:
            results = measure(run, api, env, url)
        finally:
            harness.stop_server(api)
        text = format_results(results)
        print(text)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        harness.RESULTS.mkdir(parents=True, exist_ok=True)
        (harness.RESULTS / f"rules-{stamp}.txt").write_text(text + "\n")
        (harness.RESULTS / f"rules-{stamp}.json").write_text(
            json.dumps(results, indent=2, default=str) + "\n"
        )
    finally:
        harness.run_async(lambda: harness.drop_database(server_url, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
