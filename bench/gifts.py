"""Surprise gifts: order throughput with 20 active gift rules against none.

Two programs on one API server (the production uvicorn of bench.run) and one database: "none" has no gift
rules, "gifts" has the 20 of gift_rules(), the kinds a program runs at once: the 3rd, 5th and 10th order and
every 10th, orders over EUR 600-1,400, returning customers after 30 / 60 / 90 days, the first order after
an upgrade, random shares of 1-5 % of orders, giving bonus points, an item with a personal note, or a code
of a catalogue reward (an amount_off reward made for them); the default hold-out of 10 %, budgets on
some (a day, a week, a month, ever), the program's default cooldown of 90 days. The same order load
(bench.run.Orders: 5 lines, 2,000 customers, placed now) alternates none / gifts / gifts / none,
BENCH_GIFTS_SECONDS (default 15) each, so both see the same machine; the ratio is gifts ÷ none over the
summed requests and seconds (target >= 0.9).

What the gift step adds to an order of the gifts program: the rules' decisions in memory (the active
set is cached per process) and, only for an order a rule would give on (or finds the customer ineligible
for), the ledger lock, the customer's nearest gift (the cooldown), the budget's row and the gift's. (The
count of waiting items, a LATERAL on the customer upsert, is read for both programs' orders: the ratio
leaves it out.) Over a run most customers place several orders, so the cooldown soon holds most of the
triggered ones: the run reports the gifts and hold-outs given per 1,000 orders, by trigger, and each
side's p99.

Run alone: `python -m bench.gifts` (uses bench.run's choice of database server), or `make bench ONLY=gifts`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

TARGET_GIFTS_PER_NONE = 0.9


def _eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


def gift_rules(reward_id: str) -> list[dict[str, Any]]:
    """Twenty active gift rules; bench.run.Orders sends orders of EUR 5-1,500 (about EUR 500 on
    average), a customer's 1st to 7th or so over a run, all placed now (so returning customers and
    upgrades never trigger: their rules are decided and pass, as they do for most orders of a shop)."""
    points = lambda n: {"kind": "points", "points": n}  # noqa: E731
    item = {
        "kind": "item",
        "sku": "GIFT-MUG",
        "name": "Enamel mug",
        "pick_note": "wrap it",
        "cost": _eur(400),
    }
    note = {"kind": "note"}
    code = {"kind": "reward", "reward_id": reward_id}

    def budget(euros: int, period: str) -> dict[str, Any]:
        return {"budget": {"amount": _eur(euros * 100), "period": period}}

    rules: list[dict[str, Any]] = [
        {"name": "Third order", "trigger": {"kind": "nth_order", "n": 3}, "gifts": [points(300)]},
        {"name": "Fifth order", "trigger": {"kind": "nth_order", "n": 5}, "gifts": [item, note]},
        {"name": "Tenth order", "trigger": {"kind": "nth_order", "n": 10}, "gifts": [code]},
        {
            "name": "Every tenth order",
            "trigger": {"kind": "nth_order", "n": 10, "repeat": True},
            "gifts": [points(500)],
            **budget(2_000, "month"),
        },
        {
            "name": "Basket over EUR 800",
            "trigger": {"kind": "order_over", "amount": _eur(80_000)},
            "gifts": [points(400)],
        },
        {
            "name": "Basket over EUR 1,000",
            "trigger": {"kind": "order_over", "amount": _eur(100_000)},
            "gifts": [item, note],
            **budget(1_000, "month"),
        },
        {
            "name": "Basket over EUR 1,200",
            "trigger": {"kind": "order_over", "amount": _eur(120_000)},
            "gifts": [code],
        },
        {
            "name": "Basket over EUR 1,400",
            "priority": 10,
            "trigger": {"kind": "order_over", "amount": _eur(140_000)},
            "gifts": [points(1_000), note],
        },
        {
            "name": "Some baskets over EUR 600",
            "trigger": {"kind": "order_over", "amount": _eur(60_000)},
            "probability": "0.1",
            "gifts": [code],
            **budget(500, "total"),
        },
        {
            "name": "Welcome back (30 days)",
            "trigger": {"kind": "returning_customer", "days_away": 30},
            "gifts": [points(200)],
        },
        {
            "name": "Welcome back (60 days)",
            "trigger": {"kind": "returning_customer", "days_away": 60},
            "gifts": [code],
        },
        {
            "name": "Welcome back (90 days)",
            "trigger": {"kind": "returning_customer", "days_away": 90},
            "gifts": [item, note],
        },
        {
            "name": "New tier, thank you",
            "trigger": {"kind": "first_order_after_upgrade"},
            "gifts": [item, note],
        },
        {"name": "Lucky 1 %", "trigger": {"kind": "random_share", "share": "0.01"}, "gifts": [points(500)]},
        {
            "name": "Lucky 2 %: a mug",
            "trigger": {"kind": "random_share", "share": "0.02"},
            "gifts": [item, note],
            **budget(300, "week"),
        },
        {"name": "Lucky 3 %: a code", "trigger": {"kind": "random_share", "share": "0.03"}, "gifts": [code]},
        {"name": "Lucky 4 %: a note", "trigger": {"kind": "random_share", "share": "0.04"}, "gifts": [note]},
        {
            "name": "Lucky 5 %: points",
            "trigger": {"kind": "random_share", "share": "0.05"},
            "gifts": [points(100)],
            **budget(50, "day"),
        },
        {
            "name": "Lucky 1 %: mug and code",
            "trigger": {"kind": "random_share", "share": "0.01"},
            "gifts": [item, code],
        },
        {
            "name": "Lucky 2 % of regulars",
            "trigger": {"kind": "random_share", "share": "0.02"},
            "eligibility": {"min_orders": 4},
            "gifts": [points(250)],
        },
    ]
    assert len(rules) == 20
    return [{**rule, "status": "active"} for rule in rules]


REWARD = {
    "kind": "amount_off",
    "name": {"en": "EUR 5 off your next order"},
    "cost_points": 500,
    "amount": _eur(500),
}


def _p99(phases: Sequence[Any]) -> float | None:
    from bench.load import percentile

    latencies = sorted(ms for phase in phases for ms in phase.latencies_ms)
    value = percentile(latencies, 99)
    return None if value is None else round(value, 1)


async def _given(url: str, program_id: str) -> dict[str, Any]:
    """What the gifts program's orders got over the run, read from the database."""
    conn = await asyncpg.connect(url)
    try:
        orders = await conn.fetchval("SELECT count(*) FROM orders WHERE program_id = $1", program_id)
        rows = await conn.fetch(
            "SELECT trigger, outcome, count(*) AS n, sum(cost_amount) AS cost FROM gift WHERE program_id = $1 "
            "GROUP BY trigger, outcome ORDER BY trigger, outcome",
            program_id,
        )
        problems = await conn.fetch(
            "SELECT r.problem_count, r.last_problem, v.definition ->> 'name' AS name FROM gift_rule r "
            "JOIN gift_rule_version v ON v.rule_id = r.id AND v.version = r.current_version "
            "WHERE r.program_id = $1 AND r.problem_count > 0",
            program_id,
        )
        budgets = await conn.fetch(
            "SELECT v.definition ->> 'name' AS name, b.period, b.used_amount, "
            "(v.definition -> 'budget' -> 'amount' ->> 'amount')::bigint AS amount FROM gift_budget b "
            "JOIN gift_rule r ON r.id = b.rule_id "
            "JOIN gift_rule_version v ON v.rule_id = r.id AND v.version = r.current_version "
            "WHERE r.program_id = $1 ORDER BY 1, 2",
            program_id,
        )
    finally:
        await conn.close()
    granted = sum(r["n"] for r in rows if r["outcome"] == "granted")
    held_out = sum(r["n"] for r in rows if r["outcome"] == "held_out")

    def per_mille(n: int) -> float:
        return round(1000 * n / orders, 1) if orders else 0.0

    return {
        "orders": orders,
        "granted": granted,
        "held_out": held_out,
        "granted_per_1000_orders": per_mille(granted),
        "held_out_per_1000_orders": per_mille(held_out),
        "by_trigger": {
            f"{r['trigger']} {r['outcome']}": {"n": r["n"], "cost": int(r["cost"] or 0)} for r in rows
        },
        "cost": sum(int(r["cost"] or 0) for r in rows),
        "budgets": [
            f"{b['name']} {b['period']}: {b['used_amount'] / 100:.2f} of {b['amount'] / 100:.2f} EUR"
            for b in budgets
        ],
        "rule_problems": {p["name"]: f"{p['problem_count']}: {p['last_problem']}" for p in problems},
    }


def measure(run: Any, api: Any, api_env: dict[str, str], url: str) -> dict[str, Any]:
    """On bench.run's API server `api` (an HttpServer) over the database at `url`."""
    from bench import run as harness
    from bench.rules import _api, _program, alternating, rate

    seconds = float(os.environ.get("BENCH_GIFTS_SECONDS", "15"))
    _none_program, none_key = _program(api_env, "Gifts bench: no gift rules")
    gifts_program, gifts_key = _program(api_env, "Gifts bench: 20 gift rules")
    reward = _api(api.base, gifts_key, "POST", "/v1/rewards", REWARD)
    for rule in gift_rules(reward["id"]):
        _api(api.base, gifts_key, "POST", "/v1/gift-rules", rule)
    none, gifts = ("none", none_key), ("gifts", gifts_key)
    # none / gifts, then gifts / none: neither side always runs on the fuller database.
    phases = alternating(run, api, seconds, ((none, gifts), (gifts, none)), "gifts ")
    none_rate, gifts_rate = rate(phases["none"]), rate(phases["gifts"])
    given = harness.run_async(lambda: _given(url, gifts_program))
    ratio = round(gifts_rate / none_rate, 3) if none_rate else None
    return {
        "seconds_per_phase": seconds,
        "none_per_s": round(none_rate, 1),
        "gifts_per_s": round(gifts_rate, 1),
        "phases": {k: [round(p.rps, 1) for p in v] for k, v in phases.items()},
        "p99_ms": {k: _p99(v) for k, v in phases.items()},
        "errors": sum(p.errors for kind in phases for p in phases[kind]),
        "given": given,
        "ratios": {
            "gifts_per_none": {
                "value": ratio,
                "target": TARGET_GIFTS_PER_NONE,
                "met": None if ratio is None else ratio >= TARGET_GIFTS_PER_NONE,
            }
        },
    }


def format_results(results: dict[str, Any]) -> str:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    given, ratio = results["given"], results["ratios"]["gifts_per_none"]
    by_trigger = ", ".join(f"{name} {v['n']}" for name, v in given["by_trigger"].items()) or "none"
    lines = [
        "surprise gifts (orders of 5 lines, alternating none / gifts / gifts / none, "
        f"{results['seconds_per_phase']:g} s each, two rounds)",
        f"  no gift rules  {results['none_per_s']:>8.1f} orders/s  {results['phases']['none']}  "
        f"p99 {results['p99_ms']['none']} ms",
        f"  20 gift rules  {results['gifts_per_s']:>8.1f} orders/s  {results['phases']['gifts']}  "
        f"p99 {results['p99_ms']['gifts']} ms"
        + (f"  ({results['errors']} errors)" if results["errors"] else ""),
        f"  gifts/none = {ratio['value']} (target >= {ratio['target']:g}: {verdict[ratio['met']]})",
        f"  over {given['orders']:,} orders of the gifts program: {given['granted_per_1000_orders']} gifts and "
        f"{given['held_out_per_1000_orders']} hold-outs per 1,000 orders ({given['granted']:,} gifts costing "
        f"EUR {given['cost'] / 100:,.2f}; {by_trigger})",
    ]
    if given["budgets"]:
        lines.append(f"  budgets: {'; '.join(given['budgets'])}")
    if given["rule_problems"]:
        lines.append(f"  RULE PROBLEMS: {given['rule_problems']}")
    return "\n".join(lines)


def main() -> int:
    """This phase alone: a fresh database on bench.run's server, the production API server, then drop."""
    import secrets

    from bench import run as harness

    cfg = harness.Config.from_env()
    run = harness.Run(cfg)
    server_url, _source = harness.resolve_server()
    run.postmaster = harness.run_async(lambda: harness.postmaster_pid(server_url))
    name = f"encore_gifts_{secrets.token_hex(4)}"
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
        (harness.RESULTS / f"gifts-{stamp}.txt").write_text(text + "\n")
        (harness.RESULTS / f"gifts-{stamp}.json").write_text(
            json.dumps(results, indent=2, default=str) + "\n"
        )
    finally:
        harness.run_async(lambda: harness.drop_database(server_url, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
