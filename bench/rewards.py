"""Rewards: redemptions against orders, one hot customer, and code validations against hello.

On bench.run's API server (the production uvicorn) and database, a program of its own ("Rewards bench")
with one reward: EUR 5 off an order of EUR 20 or more for COST_POINTS (10) points, unlimited stock, no
per-customer limit. Beforehand CUSTOMERS (2,000) customers get SEED_POINTS each and the hot customer
HOT_SEED_POINTS, by the API's own path (PUT the customer, then a manual adjustment), 16 at a time.

1. redemptions: `POST /v1/customers/{id}/redemptions` (each with its Idempotency-Key) on 16 connections,
   each connection cycling through customers of its own, so no two requests in flight share a ledger
   lock; the ratio to the orders phase of the same run (target >= 0.8).
2. hot: one customer on all 16 connections, serialised by its ledger lock: req/s and p99. No warm-up, so
   every 201 is counted; then its available points must be seeded - successes × cost, its codes as many
   as the successes, and `encore ledger verify` must exit 0 ("nothing overdrawn").
3. validations: `POST /v1/codes/{code}/validate` of up to VALIDATION_CODES (1,000) codes issued in 1 and
   2, each with a cart of its owner that it applies to (200 answers; it writes nothing); the ratio to the
   hello phase of the same run (target >= 0.3).

hello and orders are the foundation group's phases; when that group did not run (`ONLY=rewards`),
bench.run measures hello before the API starts and this module measures orders first, with the same
functions. BENCH_REWARDS=0 skips the group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import subprocess
import uuid
from typing import Any

import aiohttp
import asyncpg
import msgspec
from yarl import URL

from bench.load import PhaseResult, Request

TARGET_REDEMPTIONS_PER_ORDER = 0.8
TARGET_VALIDATIONS_PER_HELLO = 0.3

CUSTOMERS = 2000
COST_POINTS = 10
SEED_POINTS = 1_000_000  # 100,000 redemptions each: never the limit in a run
HOT_CUSTOMER = "rw-hot"
HOT_SEED_POINTS = 10_000_000  # the most one adjustment may give
VALIDATION_CODES = 1000
SEED_CONCURRENCY = 16

REWARD = {
    "kind": "amount_off",
    "name": {"en": "EUR 5 off", "tr": "5 EUR indirim"},
    "cost_points": COST_POINTS,
    "amount": {"amount": 500, "currency": "EUR"},
    "min_order": {"amount": 2000, "currency": "EUR"},
}


def _customer(n: int) -> str:
    return f"rw-{n}"


class Redemptions:
    """Redemptions of one reward; worker i redeems for customers i, i + N, i + 2N, ... (N = connections) in
    turn, or every worker for `hot` when it is given."""

    def __init__(self, base: str, api_key: str, reward_id: str, concurrency: int, hot: str | None = None):
        self.base = base
        self.auth = f"Bearer {api_key}"
        self.body = msgspec.json.encode({"reward_id": reward_id})
        self.hot = hot
        self.seq = 0
        self.turn = [0] * concurrency
        self.slices = [list(range(i, CUSTOMERS, concurrency)) for i in range(concurrency)]
        self.urls: dict[str, URL] = {}
        self.run_tag = uuid.uuid4().hex[:8]

    def _url(self, customer: str) -> URL:
        url = self.urls.get(customer)
        if url is None:
            url = self.urls[customer] = URL(f"{self.base}/v1/customers/{customer}/redemptions")
        return url

    def __call__(self, worker: int) -> Request:
        self.seq += 1
        if self.hot is not None:
            customer = self.hot
        else:
            own = self.slices[worker]
            customer = _customer(own[self.turn[worker] % len(own)])
            self.turn[worker] += 1
        headers = {
            "Authorization": self.auth,
            "Content-Type": "application/json",
            "Idempotency-Key": f"rw-{self.run_tag}-{self.seq}",
        }
        return Request("POST", self._url(customer), headers, self.body, tag=customer)


class Validations:
    """`POST /v1/codes/{code}/validate` of random codes, each with a cart of its owner (bodies made once)."""

    def __init__(self, base: str, api_key: str, codes: list[tuple[str, str]], seed: str) -> None:
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        rng = random.Random(seed)
        self.requests: list[tuple[URL, bytes]] = []
        for code, owner in codes:
            lines: list[dict[str, Any]] = [
                {
                    "sku": f"SKU-{sku}",
                    "quantity": rng.randint(1, 3),
                    "unit_amount": rng.randrange(1_000, 10_000),
                    "name": f"Product {sku}",
                    "category": f"cat-{sku % 10}",
                }
                for sku in rng.sample(range(200), 5)
            ]
            cart = {
                "customer": {"external_id": owner},
                "currency": "EUR",
                "lines": lines,
                "total_amount": sum(line["quantity"] * line["unit_amount"] for line in lines),
            }
            self.requests.append((URL(f"{base}/v1/codes/{code}/validate"), msgspec.json.encode(cart)))
        self.rng = rng

    def __call__(self, _worker: int) -> Request:
        url, body = self.rng.choice(self.requests)
        return Request("POST", url, self.headers, body)


async def _seed(base: str, api_key: str, grants: list[tuple[str, int]]) -> list[str]:
    """PUT each customer and credit it by a manual adjustment, SEED_CONCURRENCY at a time; error lines."""
    problems: list[str] = []
    semaphore = asyncio.Semaphore(SEED_CONCURRENCY)
    auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def one(customer: str, points: int) -> None:
            async with semaphore:
                async with session.put(f"{base}/v1/customers/{customer}", json={}, headers=auth) as made:
                    if made.status not in (200, 201):
                        problems.append(f"PUT {customer}: {made.status} {(await made.text())[:300]}")
                        return
                async with session.post(
                    f"{base}/v1/customers/{customer}/adjustments",
                    json={"points": points, "reason": "rewards bench seed"},
                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                ) as adjusted:
                    if adjusted.status != 201:
                        problems.append(
                            f"adjust {customer}: {adjusted.status} {(await adjusted.text())[:300]}"
                        )

        await asyncio.gather(*(one(customer, points) for customer, points in grants))
    return problems


async def _issued_codes(base: str, api_key: str, most: int) -> list[tuple[str, str]]:
    """(code, owner) of up to `most` issued codes, newest first, through the listing's cursor pages."""
    found: list[tuple[str, str]] = []
    cursor: str | None = None
    auth = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession() as session:
        while len(found) < most:
            params = {"status": "issued", "limit": "200", **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{base}/v1/redemptions", params=params, headers=auth) as page:
                page.raise_for_status()
                body = await page.json()
            found.extend((item["code"], item["customer_external_id"]) for item in body["items"])
            cursor = body["next_cursor"]
            if not cursor:
                break
    return found[:most]


async def _hot_state(url: str, program_id: str) -> tuple[int, int]:
    """The hot customer's codes and their points, read from the database (counted, nothing written)."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS codes, coalesce(sum(r.points), 0) AS points FROM redemption r "
            "JOIN customer c ON c.id = r.customer_id WHERE c.program_id = $1 AND c.external_id = $2",
            uuid.UUID(program_id),
            HOT_CUSTOMER,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["codes"]), int(row["points"])


def _available(base: str, api_key: str, customer: str) -> int:
    from bench.rules import _api

    return int(_api(base, api_key, "GET", f"/v1/customers/{customer}")["points"]["available"])


def ledger_verify(env: dict[str, str]) -> dict[str, Any]:
    from bench import run as harness

    done = subprocess.run(
        [harness.venv_bin("encore"), "ledger", "verify"],
        cwd=harness.ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    output = (done.stdout + done.stderr).strip().splitlines()
    return {"exit_code": done.returncode, "summary": output[0] if output else "", "output": output[:20]}


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


def _ratio(top: PhaseResult | None, bottom: PhaseResult | None, target: float) -> dict[str, Any]:
    value = None
    if top is not None and bottom is not None and top.ok and bottom.ok and bottom.rps:
        value = round(top.rps / bottom.rps, 3)
    return {"value": value, "target": target, "met": None if value is None else value >= target}


def measure(
    run: Any, api: Any, api_env: dict[str, str], api_url: str, api_key: str, tag: str
) -> dict[str, Any]:
    """On bench.run's API server `api` (an HttpServer) over the database at `api_url`; `api_key` is the
    key of the run's own program (the orders phase's, when it has to be measured here)."""
    from bench import run as harness
    from bench.rules import _api, _program

    cfg = run.cfg
    if run.phases.get("orders") is None:  # the foundation group did not run: orders of this run
        run.http_phase("orders", harness.Orders(api.base, api_key, tag), api)
    program_id, key = _program(api_env, "Rewards bench")
    reward_id = _api(api.base, key, "POST", "/v1/rewards", REWARD)["id"]
    print(f"rewards: seeding {CUSTOMERS:,} customers and the hot one with points ...", flush=True)
    grants = [(_customer(n), SEED_POINTS) for n in range(CUSTOMERS)] + [(HOT_CUSTOMER, HOT_SEED_POINTS)]
    problems = harness.run_async(lambda: _seed(api.base, key, grants))
    if problems:
        raise RuntimeError("rewards: seeding failed:\n" + "\n".join(problems[:5]))

    # 1. Distinct customers: no two requests in flight share a ledger lock.
    distinct = run.http_phase("rewards redeem", Redemptions(api.base, key, reward_id, cfg.concurrency), api)

    # 2. One hot customer: every request waits for the one before it. No warm-up: every 201 is counted.
    saved_cfg = run.cfg
    run.cfg = dataclasses.replace(saved_cfg, warmup=0.0)
    try:
        hot = run.http_phase(
            "rewards hot",
            Redemptions(api.base, key, reward_id, cfg.concurrency, hot=HOT_CUSTOMER),
            api,
        )
    finally:
        run.cfg = saved_cfg
    available = _available(api.base, key, HOT_CUSTOMER)
    codes, spent = harness.run_async(lambda: _hot_state(api_url, program_id))
    expected = HOT_SEED_POINTS - hot.ok * COST_POINTS
    print("rewards: ledger verify after the hot customer ...", flush=True)
    verify = ledger_verify(api_env)
    consistent = (
        available == expected and codes == hot.ok and spent == hot.ok * COST_POINTS and available >= 0
    )
    hot_check = {
        "seeded": HOT_SEED_POINTS,
        "successes": hot.ok,
        "available_after": available,
        "expected": expected,
        "codes": codes,
        "points_on_codes": spent,
        "ledger_verify": verify,
        "met": consistent and verify["exit_code"] == 0,
    }

    # 3. Validations of codes issued above, each with a cart of its owner that the code applies to.
    pool = harness.run_async(lambda: _issued_codes(api.base, key, VALIDATION_CODES))
    validations: PhaseResult | None = None
    if pool:
        validations = run.http_phase("rewards validate", Validations(api.base, key, pool, tag), api)
        validations.notes.append(f"{len(pool)} codes")
    else:
        print("rewards: no issued code to validate; the phase is not measured")

    orders, hello = run.phases.get("orders"), run.phases.get("hello")
    return {
        "seconds_per_phase": cfg.seconds,
        "concurrency": cfg.concurrency,
        "customers": CUSTOMERS,
        "cost_points": COST_POINTS,
        "orders": _figures(orders),
        "hello": _figures(hello),
        "redeem": _figures(distinct),
        "hot": {**(_figures(hot) or {}), "check": hot_check},
        "validate": {**(_figures(validations) or {}), "codes": len(pool)},
        "ratios": {
            "redemptions_per_order": _ratio(distinct, orders, TARGET_REDEMPTIONS_PER_ORDER),
            "hot_nothing_overdrawn": {
                "value": hot_check["met"],
                "target": "available == seeded - successes x cost, ledger verify ok",
                "met": hot_check["met"],
            },
            "validations_per_hello": _ratio(validations, hello, TARGET_VALIDATIONS_PER_HELLO),
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

    check = results["hot"]["check"]
    return "\n".join(
        [
            f"rewards ({results['concurrency']} connections, {results['seconds_per_phase']:g} s per phase; "
            f"EUR 5 off for {results['cost_points']} points)",
            row("hello (this run)", results["hello"]),
            row("orders (this run)", results["orders"]),
            row(f"redeem, {results['customers']:,} customers", results["redeem"]),
            row("redeem, one hot customer", results["hot"]),
            row(f"validate, {results['validate']['codes']:,} codes", results["validate"]),
            ratio("redemptions/orders", ratios["redemptions_per_order"]),
            ratio("validations/hello", ratios["validations_per_hello"]),
            f"  hot customer: {check['successes']:,} redeemed, available {check['available_after']:,} "
            f"(seeded {check['seeded']:,} - {check['successes']:,} x {results['cost_points']} = "
            f"{check['expected']:,}), {check['codes']:,} codes; ledger verify: "
            f"{check['ledger_verify']['summary']} (exit {check['ledger_verify']['exit_code']}): "
            f"nothing overdrawn {verdict[check['met']]}",
        ]
    )
