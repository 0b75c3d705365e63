"""Rewards under concurrency against a real `encore serve` process (uvicorn) on the tests' database:
redemptions on one balance never overdraw, a code applies to exactly one of many orders at once, a cancel
racing a use has exactly one winner, and concurrent cancels give the points back once. Each test ends
with `encore ledger verify` (the CLI, a process of its own)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from service.core.clock import FrozenClock
from tests.conftest import Api, fetch, idempotency, order_body
from tests.support.cli import encore
from tests.support.server import encore_serve

Request = tuple[str, str, dict[str, Any], dict[str, str]]


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    # A pool large enough that requests really meet at the customer's lock, not only at the pool.
    with encore_serve(database_url, ENCORE_DB_POOL_MAX="40") as base:
        yield base


def ledger_verified(database_url: str) -> None:
    run = encore(database_url, "ledger", "verify")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ledger consistent" in run.stdout


async def _burst(base: str, requests: list[Request]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        return list(
            await asyncio.gather(
                *(http.request(m, url, json=body, headers=h) for m, url, body, h in requests)
            )
        )


async def _reward(api: Api, cost: int, **overrides: Any) -> str:
    body = {
        "kind": "amount_off",
        "name": {"en": "EUR 5 off"},
        "cost_points": cost,
        "amount": {"amount": 500, "currency": "EUR"},
        # Issued on the tests' frozen clock, used on the server's real one: codes that never expire.
        "code_valid_days": None,
        **overrides,
    }
    made = await api.client.post("/v1/rewards", json=body, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def _earn(api: Api, points: int, customer: str = "c-1") -> None:
    await api.client.put(f"/v1/customers/{customer}", json={}, headers=api.headers())
    made = await api.client.post(
        f"/v1/customers/{customer}/adjustments",
        json={"points": points, "reason": "seed"},
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text


async def _redeem(api: Api, reward_id: str, customer: str = "c-1") -> dict[str, Any]:
    made = await api.client.post(
        f"/v1/customers/{customer}/redemptions",
        json={"reward_id": reward_id},
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def _points(api: Api, customer: str = "c-1") -> dict[str, int]:
    return {k: int(v) for k, v in (await api.status(customer))["points"].items() if isinstance(v, int)}


def _lots(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client, "SELECT id, points, remaining, state, expires_at FROM points_lot ORDER BY expires_at, id"
    )


def _no_lot_out_of_bounds(api: Api) -> None:
    bad = fetch(api.client, "SELECT id FROM points_lot WHERE remaining < 0 OR remaining > points")
    assert bad == []


async def test_two_hundred_concurrent_redemptions_on_one_balance(
    api: Api, server: str, clock: FrozenClock, database_url: str
) -> None:
    # The balance in five lots, each expiring on its own day (ten years out: the server's real clock
    # must not see them lapse), so the redemptions draw across lots FIFO.
    await api.client.patch("/v1/program", json={"points_expire_after_days": 3650}, headers=api.headers())
    for lot in (300, 250, 400, 111, 173):  # 1234
        await _earn(api, lot)
        clock.advance(timedelta(days=1))
    before = _lots(api)
    balance, cost = 1234, 70
    reward_id = await _reward(api, cost)
    requests: list[Request] = [
        (
            "POST",
            "/v1/customers/c-1/redemptions",
            {"reward_id": reward_id},
            api.headers(**idempotency()),
        )
        for _ in range(200)
    ]
    responses = await _burst(server, requests)
    statuses = Counter(r.status_code for r in responses)
    wins = balance // cost  # 17
    assert statuses == {201: wins, 409: 200 - wins}, {r.status_code: r.text for r in responses}
    refused = [r.json() for r in responses if r.status_code == 409]
    assert {p["type"] for p in refused} == {"urn:encore:problem:insufficient-points"}
    made = [r.json() for r in responses if r.status_code == 201]
    assert len({m["code"] for m in made}) == wins and len({m["id"] for m in made}) == wins
    points = await _points(api)
    assert points["available"] == balance - wins * cost == 44
    assert points["debt"] == 0
    assert fetch(api.client, "SELECT count(*) AS n FROM redemption")[0]["n"] == wins
    spent = fetch(api.client, "SELECT coalesce(sum(points), 0) AS s FROM points_entry WHERE kind = 'redeem'")
    assert spent[0]["s"] == -wins * cost
    _no_lot_out_of_bounds(api)
    ledger_verified(database_url)

    # Every one cancelled at once: each lot gets back exactly what it gave, its expiry as it was.
    cancels: list[Request] = [("POST", f"/v1/redemptions/{m['id']}/cancel", {}, api.headers()) for m in made]
    answers = await _burst(server, cancels)
    assert [a.status_code for a in answers] == [200] * wins, [a.text for a in answers]
    assert all(a.json()["points_returned"] == cost for a in answers)
    assert _lots(api) == before
    assert (await _points(api))["available"] == balance
    ledger_verified(database_url)


async def test_one_code_on_fifty_concurrent_orders_applies_once(
    api: Api, server: str, database_url: str
) -> None:
    await _earn(api, 100)
    redemption = await _redeem(api, await _reward(api, 50))
    code = redemption["code"]
    requests: list[Request] = [
        (
            "POST",
            "/v1/orders",
            order_body(f"o-{i}", codes=[code.lower() if i % 2 else code]),
            api.headers(**idempotency()),
        )
        for i in range(50)
    ]
    responses = await _burst(server, requests)
    assert [r.status_code for r in responses] == [201] * 50, {r.status_code: r.text for r in responses}
    results = [r.json()["codes"][0]["result"] for r in responses]
    assert Counter(results) == {"applied": 1, "code-used": 49}, Counter(results)
    winner = responses[results.index("applied")].json()
    assert fetch(api.client, "SELECT count(*) AS n FROM orders")[0]["n"] == 50
    rows = fetch(
        api.client,
        "SELECT d.status, o.external_id, d.points_returned, d.return_entry_id FROM redemption d "
        "JOIN orders o ON o.id = d.order_id",
    )
    assert rows == [
        {
            "status": "used",
            "external_id": winner["order"]["external_id"],
            "points_returned": 0,
            "return_entry_id": None,
        }
    ]
    used = fetch(api.client, "SELECT count(*) AS n FROM outbox WHERE topic = 'redemption.used'")
    assert used[0]["n"] == 1
    # Every order earned its points (the code or not): 50 order credits.
    credits = fetch(api.client, "SELECT count(*) AS n FROM points_entry WHERE order_id IS NOT NULL")
    assert credits[0]["n"] == 50
    _no_lot_out_of_bounds(api)
    ledger_verified(database_url)


@pytest.mark.parametrize(
    "via",
    ["use", "checkout"],
)
async def test_cancel_racing_use_of_one_code_has_one_winner(
    api: Api, server: str, database_url: str, via: str
) -> None:
    cost, rounds = 40, 12
    await _earn(api, cost * rounds)
    reward_id = await _reward(api, cost)
    codes = [await _redeem(api, reward_id) for _ in range(rounds)]
    assert (await _points(api))["available"] == 0
    requests: list[Request] = []
    whose: list[tuple[str, str]] = []  # (redemption id, cancel | use | order) of each request
    for i, c in enumerate(codes):
        # Three cancels and three uses per code, in both orders, all at once: used on their own
        # (POST /v1/codes/{code}/use), or at checkout (an order each).
        kinds = ["cancel", "use", "cancel", "use", "use", "cancel"] if i % 3 else ["use", "cancel"] * 3
        for j, kind in enumerate(kinds):
            if kind == "cancel":
                requests.append(("POST", f"/v1/redemptions/{c['id']}/cancel", {}, api.headers()))
            elif via == "use":
                requests.append(("POST", f"/v1/codes/{c['code']}/use", {}, api.headers()))
            else:
                kind = "order"
                requests.append(
                    ("POST", "/v1/orders", order_body(f"o-{i}-{j}", codes=[c["code"]]), api.headers())
                )
            whose.append((c["id"], kind))
    responses = await _burst(server, requests)
    by_code: dict[str, list[tuple[str, httpx.Response]]] = {c["id"]: [] for c in codes}
    for (redemption_id, kind), response in zip(whose, responses, strict=True):
        by_code[redemption_id].append((kind, response))
    used = 0
    for c in codes:
        answers = by_code[c["id"]]
        assert len(answers) == 6
        assert all(r.status_code in (200, 201, 409) for _, r in answers), [r.text for _, r in answers]
        assert all(r.status_code == 201 for kind, r in answers if kind == "order")  # orders always stand
        uses = [
            r
            for kind, r in answers
            if (kind == "use" and r.status_code == 200)
            or (kind == "order" and r.json()["codes"][0]["result"] == "applied")
        ]
        cancels = [r for kind, r in answers if kind == "cancel" and r.status_code == 200]
        row = fetch(
            api.client,
            "SELECT status, used_at, points_returned, return_entry_id FROM redemption WHERE id = $1::uuid",
            c["id"],
        )[0]
        if uses:  # the use won: one use, no cancel at all, nothing given back
            assert len(uses) == 1 and cancels == [], [r.text for _, r in answers]
            assert row["status"] == "used" and row["points_returned"] == 0 and row["return_entry_id"] is None
            losers = [r.json() for kind, r in answers if kind == "cancel"]
            assert all(p["type"].endswith("code-used") for p in losers), losers
            used += 1
        else:  # the cancel won: every cancel answers it cancelled, no use applied
            assert len(cancels) == 3, [r.text for _, r in answers]
            assert all(
                r.json()["status"] == "cancelled" and r.json()["points_returned"] == cost for r in cancels
            )
            assert row["status"] == "cancelled" and row["used_at"] is None
            assert row["points_returned"] == cost and row["return_entry_id"] is not None
            refused = [
                r.json()["type"] if kind == "use" else r.json()["codes"][0]["result"]
                for kind, r in answers
                if kind != "cancel"
            ]
            assert all(t.endswith("code-cancelled") for t in refused), refused
    returns = fetch(
        api.client,
        "SELECT count(*) AS n, coalesce(sum(points), 0) AS s FROM points_entry WHERE kind = 'redeem_return'",
    )[0]
    assert returns == {"n": rounds - used, "s": cost * (rounds - used)}
    # What is available: the cancelled codes' points, plus what the checkout orders earned (the March
    # orders are past their return window on the server's real clock).
    earned = fetch(
        api.client, "SELECT coalesce(sum(points), 0) AS s FROM points_entry WHERE order_id IS NOT NULL"
    )
    assert (await _points(api))["available"] == cost * (rounds - used) + earned[0]["s"]
    _no_lot_out_of_bounds(api)
    ledger_verified(database_url)


async def test_concurrent_cancels_of_one_redemption_give_back_once(
    api: Api, server: str, clock: FrozenClock, database_url: str
) -> None:
    await api.client.patch("/v1/program", json={"points_expire_after_days": 3650}, headers=api.headers())
    await _earn(api, 30)
    clock.advance(timedelta(days=2))
    await _earn(api, 45)
    before = _lots(api)
    redemption = await _redeem(api, await _reward(api, 60, stock=1))  # 30 + 30 of the 45
    assert [lot["remaining"] for lot in _lots(api)] == [0, 15]
    cancels: list[Request] = [
        ("POST", f"/v1/redemptions/{redemption['id']}/cancel", {"reason": f"try {i}"}, api.headers())
        for i in range(30)
    ]
    answers = await _burst(server, cancels)
    assert [a.status_code for a in answers] == [200] * 30, [a.text for a in answers]
    assert {(a.json()["status"], a.json()["points_returned"]) for a in answers} == {("cancelled", 60)}
    returns = fetch(api.client, "SELECT points FROM points_entry WHERE kind = 'redeem_return'")
    assert returns == [{"points": 60}]
    assert (
        fetch(api.client, "SELECT count(*) AS n FROM outbox WHERE topic = 'redemption.cancelled'")[0]["n"]
        == 1
    )
    assert _lots(api) == before  # lot by lot, expiry included
    assert (await _points(api))["available"] == 75
    # The stock came back once (1 again, not 30).
    assert fetch(api.client, "SELECT stock_left FROM reward")[0]["stock_left"] == 1
    ledger_verified(database_url)


async def test_orders_racing_ledger_writes_of_their_customer_never_deadlock(api: Api, server: str) -> None:
    """Orders and adjustments of one customer at once (no rewards in it): an order's customer upsert locks
    the customer row without blocking the foreign key checks of ledger writes, so nothing deadlocks."""
    await _earn(api, 10)
    requests: list[Request] = []
    for i in range(10):
        requests.append(("POST", "/v1/orders", order_body(f"o-{i}"), api.headers()))
        requests.append(
            (
                "POST",
                "/v1/customers/c-1/adjustments",
                {"points": 5, "reason": "x"},
                api.headers(**idempotency()),
            )
        )
    statuses = Counter(r.status_code for r in await _burst(server, requests))
    assert statuses == {201: 20}, statuses
