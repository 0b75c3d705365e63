"""Surprise gifts under concurrent orders through a real `encore serve` process (uvicorn, its own pool) on
the tests' database: budgets and cooldowns are never exceeded, an nth order is given at most once, and the
same order always gets the same decision — the one `service.gifts.domain.decide` makes with the program's
gift key.

The server runs on the real clock, so orders are placed now (UTC). Rules and program settings are made
through the in-process app; only the orders race, all at once, at the server. Each hypothesis example works
in a program of its own (the per-test truncation runs once per test, not per example)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.gifts import domain
from tests.conftest import Api, fetch, idempotency, make_program, order_body, verify_ledger
from tests.support.server import encore_serve

Client = AsyncTestClient[Litestar]
Request = tuple[str, str, dict[str, Any], dict[str, str]]

# Few examples, each a burst at a server that is slow to start once: no deadline, and the function-scoped
# fixtures (the truncation) are not meant to run between examples.
EXAMPLES = settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with encore_serve(database_url) as base:
        yield base


async def _burst(base: str, requests: list[Request]) -> list[httpx.Response]:
    """Every request at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        return list(
            await asyncio.gather(
                *(http.request(m, url, json=body, headers=h) for m, url, body, h in requests)
            )
        )


def _placed_at(days_ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def _order(api: Api, external_id: str, customer: str, placed_at: str, key: str | None = None) -> Request:
    headers = api.headers(**{"Idempotency-Key": key} if key else idempotency())
    return ("POST", "/v1/orders", order_body(external_id, customer, placed_at=placed_at), headers)


def _created(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    assert [r.status_code for r in responses] == [201] * len(responses), Counter(
        f"{r.status_code} {r.text[:300]}" for r in responses
    )
    return [r.json() for r in responses]


async def _rule(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Every order",
        "trigger": {"kind": "random_share", "share": "1"},
        "gifts": [{"kind": "points", "points": 200}],
        "holdout": "0",
        "status": "active",
        **overrides,
    }
    made = await api.client.post("/v1/gift-rules", json=body, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    rule: dict[str, Any] = made.json()
    return rule


async def _cooldown(api: Api, days: int) -> None:
    patched = await api.client.patch("/v1/program", json={"gift_cooldown_days": days}, headers=api.headers())
    assert patched.status_code == 200, patched.text


def _gifts(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        """
        SELECT g.id, g.rule_id, g.occasion, g.outcome, g.cost_amount, g.budget_period, c.external_id AS customer,
               o.external_id AS order_external_id
        FROM gift g JOIN customer c ON c.id = g.customer_id LEFT JOIN orders o ON o.id = g.order_id
        WHERE g.program_id = $1::uuid ORDER BY g.decided_at, g.id
        """,
        api.program_id,
    )


def _budgets(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        "SELECT b.rule_id, b.period, b.used_amount FROM gift_budget b JOIN gift_rule r ON r.id = b.rule_id "
        "WHERE r.program_id = $1::uuid",
        api.program_id,
    )


def _surprise_ids(answers: list[dict[str, Any]]) -> list[UUID]:
    return [UUID(s["gift_id"]) for a in answers for s in a["surprises"]]


# --- budgets -----------------------------------------------------------------------------------------------


@EXAMPLES
@example(gifts=5, points=200, spare=0, orders=60, period="total")  # EUR 10 of EUR 2 gifts: five
@given(
    gifts=st.integers(1, 8),
    points=st.sampled_from([100, 200, 350]),
    spare=st.integers(0, 99),  # below one gift's cost: never enough for another
    orders=st.integers(20, 60),
    period=st.sampled_from(["total", "day", "month"]),
)
async def test_concurrent_orders_never_exceed_a_budget(
    client: Client, server: str, gifts: int, points: int, spare: int, orders: int, period: str
) -> None:
    api = make_program(client)
    await _cooldown(api, 0)
    cost = points  # at the default point value of 1 cent a point
    budget = gifts * cost + spare
    rule = await _rule(
        api,
        gifts=[{"kind": "points", "points": points}],
        budget={"amount": {"amount": budget, "currency": "EUR"}, "period": period},
    )
    placed_at = _placed_at()
    answers = _created(
        await _burst(server, [_order(api, f"o-{i}", f"c-{i}", placed_at) for i in range(orders)])
    )

    rows = _gifts(api)
    assert len(rows) == gifts, rows
    assert {r["outcome"] for r in rows} == {"granted"}
    assert sum(r["cost_amount"] for r in rows) == gifts * cost <= budget
    assert sorted(_surprise_ids(answers)) == sorted(r["id"] for r in rows)
    key = domain.budget_period(period, datetime.fromisoformat(placed_at), ZoneInfo("UTC"))
    assert _budgets(api) == [{"rule_id": UUID(rule["id"]), "period": key, "used_amount": gifts * cost}]
    assert {r["budget_period"] for r in rows} == {key}
    entries = fetch(
        client,
        "SELECT count(*) AS n, coalesce(sum(points), 0) AS points FROM points_entry "
        "WHERE program_id = $1::uuid AND kind = 'gift'",
        api.program_id,
    )
    assert entries == [{"n": gifts, "points": gifts * points}]
    verify_ledger(client)


# --- the cooldown ------------------------------------------------------------------------------------------


@EXAMPLES
@example(customers=1, per_customer=30, spread_days=0)  # one customer, thirty orders at once
@example(customers=20, per_customer=5, spread_days=0)
@given(
    customers=st.integers(1, 20),
    per_customer=st.integers(2, 8),
    spread_days=st.sampled_from([0, 1, 44]),  # placed up to 89 days apart: all within one cooldown
)
async def test_one_surprise_per_customer_per_cooldown_under_concurrent_orders(
    client: Client, server: str, customers: int, per_customer: int, spread_days: int
) -> None:
    api = make_program(client)  # the default cooldown of 90 days
    await _rule(api)
    await _rule(
        api,
        name="Any order over EUR 1",
        trigger={"kind": "order_over", "amount": {"amount": 1, "currency": "EUR"}},
    )
    requests = [
        # Now and spread_days or twice that before: whichever order wins, the others lie before or after
        # it (the cooldown looks both ways), all within the 90 days.
        _order(api, f"o-{c}-{k}", f"c-{c}", _placed_at(spread_days * (k % 3)))
        for k in range(per_customer)
        for c in range(customers)
    ]
    answers = _created(await _burst(server, requests))

    rows = _gifts(api)
    assert Counter(r["customer"] for r in rows) == {f"c-{c}": 1 for c in range(customers)}, rows
    assert {r["outcome"] for r in rows} == {"granted"}  # a hold-out of 0: nobody held out
    assert sorted(_surprise_ids(answers)) == sorted(r["id"] for r in rows)
    assert all(len(a["surprises"]) <= 1 for a in answers)
    verify_ledger(client)


# --- the nth order -------------------------------------------------------------------------------------------


@EXAMPLES
@example(n=3, repeat=False, before=0, budgeted=False)  # ten orders of one new customer at once
@example(n=3, repeat=False, before=2, budgeted=True)  # ten orders race to be the third
@given(n=st.integers(1, 4), repeat=st.booleans(), before=st.integers(0, 3), budgeted=st.booleans())
async def test_the_nth_order_is_given_at_most_once_under_concurrent_orders(
    client: Client, server: str, n: int, repeat: bool, before: int, budgeted: bool
) -> None:
    """No cooldown: only the gift's key (`orders:<count>`) stands between two orders that both counted
    themselves the nth; with a budget, the losing order must not spend it either."""
    api = make_program(client)
    await _cooldown(api, 0)
    budget = (
        {"budget": {"amount": {"amount": 100_000, "currency": "EUR"}, "period": "total"}} if budgeted else {}
    )
    rule = await _rule(
        api, name="The nth order", trigger={"kind": "nth_order", "n": n, "repeat": repeat}, **budget
    )
    placed_at = _placed_at()
    for i in range(before):  # one at a time: counted exactly
        _created(await _burst(server, [_order(api, f"before-{i}", "c-1", placed_at)]))
    answers = _created(await _burst(server, [_order(api, f"o-{i}", "c-1", placed_at) for i in range(10)]))

    rows = _gifts(api)
    occasions = Counter(r["occasion"] for r in rows)
    assert all(count == 1 for count in occasions.values()), occasions
    possible = {f"orders:{k}" for k in range(1, before + 11) if (k % n == 0 if repeat else k == n)}
    assert set(occasions) <= possible, (occasions, possible)
    assert sorted(_surprise_ids(answers)) == sorted(
        r["id"] for r in rows if r["order_external_id"].startswith("o-")
    )
    if budgeted:
        used = sum(b["used_amount"] for b in _budgets(api) if b["rule_id"] == UUID(rule["id"]))
        assert used == sum(r["cost_amount"] for r in rows), (used, rows)
    verify_ledger(client)


# --- the same order, the same decision -----------------------------------------------------------------------


async def test_concurrent_replays_of_an_order_answer_the_same_surprises(client: Client, server: str) -> None:
    api = make_program(client)
    await _rule(api)
    placed_at = _placed_at()
    request = _order(api, "o-replayed", "c-1", placed_at, key="one-key")
    responses = await _burst(server, [request] * 30)
    answers = _created(responses)
    assert len({r.content for r in responses}) == 1  # byte for byte the same answer
    [surprise] = answers[0]["surprises"]
    assert surprise["given"] == [{"kind": "points", "points": 200}]
    [row] = _gifts(api)
    assert row["id"] == UUID(surprise["gift_id"]) and row["occasion"] == "order:o-replayed"
    # The same order under other keys is a conflict, never a second decision.
    others = await _burst(server, [_order(api, "o-replayed", "c-1", placed_at) for _ in range(10)])
    assert [r.status_code for r in others] == [409] * 10
    assert len(_gifts(api)) == 1
    verify_ledger(client)


ORDER_IDS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")), min_size=1, max_size=40
)


@EXAMPLES
@given(
    orders=st.lists(
        st.tuples(ORDER_IDS, st.integers(0, 7)), min_size=10, max_size=40, unique_by=lambda o: o[0]
    )
)
async def test_every_order_gets_the_decision_the_domain_makes_with_the_program_key(
    client: Client, server: str, orders: list[tuple[str, int]]
) -> None:
    """A share of 0.5 and a hold-out of 0.3, no cooldown: whether each order (placed concurrently) got a
    gift, a hold-out row or nothing is what `domain.decide` answers from the gift key in the database, the
    rule and the order alone — and each customer is in one group only."""
    api = make_program(client)
    await _cooldown(api, 0)
    made = await _rule(
        api, name="Half of the orders", trigger={"kind": "random_share", "share": "0.5"}, holdout="0.3"
    )
    placed_at = _placed_at()
    answers = _created(
        await _burst(server, [_order(api, external_id, f"c-{c}", placed_at) for external_id, c in orders])
    )
    [key] = [
        r["gift_key"]
        for r in fetch(client, "SELECT gift_key FROM program WHERE id = $1::uuid", api.program_id)
    ]
    rule = domain.Rule(
        id=UUID(made["id"]),
        version=made["version"],
        name=made["name"],
        priority=0,
        trigger="random_share",
        share=Decimal("0.5"),
        holdout=Decimal("0.3"),
    )
    rows = {r["order_external_id"]: r for r in _gifts(api)}
    expected: dict[str, str | None] = {}
    for (external_id, c), answer in zip(orders, answers, strict=True):
        occasion = domain.Occasion(
            trigger="order", key=f"order:{external_id}", at=datetime.fromisoformat(placed_at)
        )
        decision = domain.decide(key.encode(), rule, occasion, f"c-{c}", last_gift_at=None, cooldown_days=0)
        expected[external_id] = decision.outcome
        row = rows.get(external_id)
        assert (row and row["outcome"]) == (decision.outcome or None), (external_id, decision, row)
        assert bool(answer["surprises"]) == (decision.outcome == "granted"), (
            external_id,
            answer["surprises"],
        )
    assert len(rows) == sum(outcome is not None for outcome in expected.values())
    groups: dict[str, set[str]] = {}
    for row in rows.values():
        groups.setdefault(row["customer"], set()).add(row["outcome"])
    assert all(len(outcomes) == 1 for outcomes in groups.values()), groups
