"""VIP tiers on real PostgreSQL: the tier set and its checks, the upgrade inside the order that crosses a
threshold, the earn multiplier as a rule, refunds against the metric, the re-evaluation moved through two
years with the clock (protection, warning, downgrade, idempotency, withdrawn warning), manual gestures,
deleting a tier customers hold, and the history of it all."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from service.core.clock import FrozenClock
from service.tiers import domain, jobs
from tests.conftest import START, Api, fetch, idempotency, in_app, iso, table_counts

SILVER = {
    "key": "silver",
    "name": "Silver",
    "rank": 1,
    "qualification": {"metric": "spend", "threshold": {"amount": 15000, "currency": "EUR"}},
}
GOLD = {
    "key": "gold",
    "name": "Gold",
    "rank": 2,
    "qualification": {"metric": "spend", "threshold": {"amount": 25000, "currency": "EUR"}},
    "benefits": {"earn_multiplier": "1.5", "free_shipping": True, "perks": ["Early access to sales"]},
}


async def post_tier(api: Api, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await api.client.post("/v1/tiers", json=body, headers=api.headers(**idempotency()))
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def tier_of(api: Api, customer: str = "c-1") -> dict[str, Any]:
    response = await api.client.get(f"/v1/customers/{customer}/tier", headers=api.headers())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def history_of(api: Api, customer: str = "c-1") -> list[dict[str, Any]]:
    response = await api.client.get(f"/v1/customers/{customer}/tier-history", headers=api.headers())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def reevaluate(api: Api, now: datetime) -> dict[str, int]:
    result = in_app(api.client, jobs.reevaluate, now)
    return dict(result.counts)


def topics(api: Api) -> list[str]:
    rows = fetch(api.client, "SELECT topic FROM outbox WHERE topic LIKE 'tier.%' ORDER BY created_at, id")
    return [r["topic"] for r in rows]


async def test_tier_set_checks_and_listing(api: Api) -> None:
    created = await post_tier(api, SILVER)
    assert created["qualification"]["months"] == 12  # the default written out
    await post_tier(api, GOLD)
    problems = [
        (
            {
                **GOLD,
                "key": "gold2",
                "rank": 3,
                "qualification": {**GOLD["qualification"], "threshold": {"amount": 20000, "currency": "EUR"}},
            },
            "qualification.threshold",
        ),
        ({**GOLD, "key": "gold3"}, "rank"),
        (
            {**SILVER, "key": "x", "rank": 5, "qualification": {"metric": "spend", "threshold": 500}},
            "qualification.threshold",
        ),
        (
            {
                **SILVER,
                "key": "x",
                "rank": 5,
                "qualification": {"metric": "orders", "threshold": {"amount": 5, "currency": "EUR"}},
            },
            "qualification.threshold",
        ),
        (
            {
                **SILVER,
                "key": "x",
                "rank": 5,
                "qualification": {"metric": "spend", "threshold": {"amount": 90000, "currency": "USD"}},
            },
            "qualification.threshold.currency",
        ),
        ({**SILVER, "key": "x", "rank": 5, "retention": {"grace_days": -1}}, "retention.grace_days"),
        (
            {**SILVER, "key": "x", "rank": 5, "benefits": {"earn_multiplier": "0.5"}},
            "benefits.earn_multiplier",
        ),
        (
            {
                **SILVER,
                "key": "x",
                "rank": 5,
                "qualification": {"metric": "orders", "threshold": 9, "window": "lifetime", "months": 3},
            },
            "qualification.months",
        ),
        ({**SILVER, "key": "Not A Key", "rank": 5}, "key"),
    ]
    for body, field in problems:
        problem = await post_tier(api, body, 422)
        assert problem["field"] == field, (body, problem)
    assert (await post_tier(api, {**SILVER, "rank": 7}, 409))["field"] == "key"
    # A different metric may have any threshold: only tiers counting the same thing must not overlap.
    await post_tier(
        api,
        {
            "key": "loyal",
            "name": "Loyal",
            "rank": 3,
            "qualification": {"metric": "orders", "threshold": 3, "window": "lifetime"},
        },
    )
    listed = (await api.client.get("/v1/tiers", headers=api.headers())).json()["items"]
    assert [(t["key"], t["rank"], t["customers"]) for t in listed] == [
        ("silver", 1, 0),
        ("gold", 2, 0),
        ("loyal", 3, 0),
    ]
    patched = await api.client.patch("/v1/tiers/gold", json={"rank": 1}, headers=api.headers())
    assert patched.status_code == 422 and patched.json()["field"] == "rank"
    patched = await api.client.patch("/v1/tiers/gold", json={"name": "Gold Club"}, headers=api.headers())
    assert patched.status_code == 200 and patched.json()["version"] == 2
    # Rules may target tiers by key, and only known ones.
    rule = {
        "name": "Silver weekend",
        "audience": {"tiers": ["silver", "platinum"]},
        "effect": {"kind": "fixed", "points": 5},
    }
    response = await api.client.post("/v1/rules", json=rule, headers=api.headers(**idempotency()))
    assert response.status_code == 422 and response.json()["field"] == "audience.tiers[1]"


async def test_an_order_crossing_the_threshold_upgrades_at_once_and_the_multiplier_applies(api: Api) -> None:
    await post_tier(api, SILVER)
    await post_tier(api, GOLD)
    await api.order("o-1")  # EUR 90.00
    standing = await tier_of(api)
    assert standing["tier"] is None
    assert standing["next_tier"]["tier"]["key"] == "silver"
    assert standing["next_tier"]["amounts"]["remaining"] == 6000
    assert standing["next_tier"]["text"] == "spend EUR 60.00 more to reach Silver"
    await api.order("o-2")  # EUR 180.00: Silver, inside this order's transaction
    status = await api.status()
    assert status["tier"]["tier"] == {"key": "silver", "name": "Silver", "rank": 1}
    assert status["tier"]["since"] is not None and status["tier"]["source"] == "earned"
    assert status["tier"]["next_tier"]["amounts"] == {
        "metric": "spend",
        "window": "rolling_months",
        "months": 12,
        "current": 18000,
        "needed": 25000,
        "remaining": 7000,
        "currency": "EUR",
    }
    assert status["tier"]["at_risk"] is None
    [upgrade] = await history_of(api)
    assert (upgrade["change"], upgrade["cause"], upgrade["to_tier"]["key"]) == ("upgrade", "order", "silver")
    assert upgrade["reason"] == "order o-2: spend over 12 months EUR 180.00 (Silver needs EUR 150.00)"
    await api.order("o-3")  # EUR 270.00: Gold (the order that crosses earns at the old tier)
    assert (await api.order("o-4")).json()["order"]["points_earned"] == 90 + 45
    order = (await api.client.get("/v1/orders/o-4", headers=api.headers())).json()
    assert "Gold tier × 1.5 v1: 50% bonus on 90 points" in order["earn_explanation"]
    gold = (await api.status())["tier"]
    assert gold["benefits"] == {
        "earn_multiplier": "1.5",
        "free_shipping": True,
        "perks": ["Early access to sales"],
    }
    assert gold["next_tier"] is None
    assert topics(api) == ["tier.upgraded", "tier.upgraded"]
    listed = (await api.client.get("/v1/tiers", headers=api.headers())).json()["items"]
    assert [(t["key"], t["customers"]) for t in listed] == [("silver", 0), ("gold", 1)]


async def test_reevaluation_protects_warns_then_downgrades_and_is_idempotent(
    api: Api, clock: FrozenClock
) -> None:
    await post_tier(api, SILVER)
    await api.order("o-1")
    await api.order("o-2")  # Silver at START, from EUR 180.00 placed at START
    # Those orders count until START + 12 months; kept until the end of the next window: START + 24 months.
    later = domain.add_months(START, 13)
    assert reevaluate(api, later) == {}
    clock.set(later)
    risk = (await tier_of(api))["at_risk"]
    assert risk["downgrade_at"] == iso(domain.add_months(START, 24))
    assert risk["to_tier"] is None and risk["warned_at"] is None
    assert risk["keep"]["remaining"] == 15000
    assert risk["text"] == "spend EUR 150.00 more by 2 Mar 2028 to keep Silver"
    warn_at = domain.add_months(START, 24) - timedelta(days=10)  # inside the 30-day warning period
    assert reevaluate(api, warn_at) == {"warn": 1}
    assert reevaluate(api, warn_at) == {}  # idempotent
    assert reevaluate(api, warn_at + timedelta(days=5)) == {}
    clock.set(warn_at)
    risk = (await tier_of(api))["at_risk"]
    # Never sooner than 30 days after the warning, even though the protection ends in 10.
    assert risk["downgrade_at"] == iso(warn_at + timedelta(days=30))
    assert risk["warned_at"] == iso(warn_at)
    warning = fetch(api.client, "SELECT payload FROM outbox WHERE topic = 'tier.downgrade_warning'")
    assert len(warning) == 1
    down_at = warn_at + timedelta(days=30)
    assert reevaluate(api, down_at - timedelta(seconds=1)) == {}
    assert reevaluate(api, down_at) == {"downgrade": 1}
    assert reevaluate(api, down_at) == {}
    clock.set(down_at)
    assert (await tier_of(api))["tier"] is None
    changes = [(h["change"], h["cause"]) for h in await history_of(api)]
    assert changes == [("downgrade", "reevaluation"), ("warning", "reevaluation"), ("upgrade", "order")]
    assert topics(api) == ["tier.upgraded", "tier.downgrade_warning", "tier.downgraded"]


async def test_buying_again_after_a_warning_withdraws_it(api: Api, clock: FrozenClock) -> None:
    await post_tier(api, {**SILVER, "retention": {"keep_until_end_of_next_window": False, "grace_days": 7}})
    await api.order("o-1")
    await api.order("o-2")
    # No retention: protection ends when the orders leave the window (START + 12 months), then 7 days.
    at = domain.add_months(START, 12) + timedelta(days=1)
    assert reevaluate(api, at) == {"warn": 1}
    clock.set(at + timedelta(days=3))
    await api.order("o-3", placed_at=iso(clock.now()))
    await api.order("o-4", placed_at=iso(clock.now()))
    assert reevaluate(api, clock.now()) == {"withdraw_warning": 1}
    standing = await tier_of(api)
    assert standing["tier"]["key"] == "silver" and standing["at_risk"] is None
    assert reevaluate(api, at + timedelta(days=60)) == {}


async def test_a_refund_counts_against_the_metric(api: Api, clock: FrozenClock) -> None:
    await post_tier(api, SILVER)
    await api.order("o-1")
    await api.order("o-2")
    response = await api.client.post(
        "/v1/orders/o-2/refunds", json={"external_id": "r-1", "amount": 9000}, headers=api.headers()
    )
    assert response.status_code == 201, response.text
    standing = await tier_of(api)
    assert standing["tier"]["key"] == "silver"  # never down inside a transaction
    assert standing["qualification"]["current"] == 9000
    # It never really qualified: the tier counts from when it was given; warned now, down in 30 days.
    assert standing["at_risk"]["downgrade_at"] == iso(START + timedelta(days=30))
    assert reevaluate(api, START) == {"warn": 1}
    assert reevaluate(api, START + timedelta(days=30)) == {"downgrade": 1}


async def test_manual_gesture_and_its_end(api: Api, clock: FrozenClock) -> None:
    await post_tier(api, SILVER)
    await post_tier(api, GOLD)
    await api.order("o-1")
    await api.order("o-2")  # Silver by spend
    until = START + timedelta(days=365)
    body = {"tier": "gold", "reason": "sorry for the lost parcel", "until": iso(until), "actor": "ana@shop"}
    response = await api.client.post(
        "/v1/customers/c-1/tier", json=body, headers=api.headers(**idempotency())
    )
    assert response.status_code == 200, response.text
    standing = response.json()
    assert (standing["tier"]["key"], standing["source"], standing["manual_until"]) == (
        "gold",
        "manual",
        iso(until),
    )
    assert standing["at_risk"]["downgrade_at"] == iso(until)  # warned 30 days before the gesture ends
    [manual, _] = await history_of(api)
    assert manual["change"] == "manual" and manual["actor"] == "ana@shop"
    assert manual["reason"] == "set by hand to Gold until 2027-03-02: sorry for the lost parcel"
    bad = [
        ({**body, "tier": "platinum"}, "tier"),
        ({**body, "until": iso(START - timedelta(days=1))}, "until"),
        ({"tier": "gold"}, "reason"),
    ]
    for wrong, field in bad:
        response = await api.client.post(
            "/v1/customers/c-1/tier", json=wrong, headers=api.headers(**idempotency())
        )
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert (
        await api.client.post("/v1/customers/nobody/tier", json=body, headers=api.headers(**idempotency()))
    ).status_code == 404
    assert reevaluate(api, until - timedelta(days=31)) == {}
    assert reevaluate(api, until - timedelta(days=30)) == {"warn": 1}
    assert reevaluate(api, until) == {"downgrade": 1}
    clock.set(until)
    assert (await tier_of(api))["tier"]["key"] == "silver"  # one level at a time


async def test_deleting_a_tier_customers_hold(api: Api) -> None:
    await post_tier(api, SILVER)
    await post_tier(api, GOLD)
    for n in range(3):
        await api.order(f"o-{n}")  # EUR 270.00: Gold
    response = await api.client.delete("/v1/tiers/gold", headers=api.headers())
    assert response.status_code == 409 and response.json()["field"] == "move_to"
    response = await api.client.delete("/v1/tiers/gold?move_to=gold", headers=api.headers())
    assert response.status_code == 422
    response = await api.client.delete("/v1/tiers/gold?move_to=silver", headers=api.headers())
    assert response.status_code == 200, response.text
    assert response.json() == {"key": "gold", "customers_moved": 1, "moved_to": "silver"}
    assert (await tier_of(api))["tier"]["key"] == "silver"
    moved = (await history_of(api))[0]
    assert (moved["change"], moved["cause"], moved["from_tier"]["key"]) == ("moved", "tier_deleted", "gold")
    assert (await api.client.get("/v1/tiers/gold", headers=api.headers())).status_code == 404
    # The multiplier went with the tier: the rules see it at once.
    assert (await api.order("o-9")).json()["order"]["points_earned"] == 90


async def test_the_databases_qualification_is_the_domains(api: Api, clock: FrozenClock) -> None:
    """The re-evaluation picks the tier a customer reaches with a CASE in SQL; it must agree with
    domain.qualified_tier on the same metrics, across metrics, windows and refunds."""
    from service.programs import service as programs
    from service.tiers import repository
    from service.tiers import service as tiers

    await post_tier(api, SILVER)
    await post_tier(
        api, {**GOLD, "qualification": {"metric": "orders", "threshold": 3, "window": "lifetime"}}
    )
    await post_tier(
        api,
        {
            "key": "star",
            "name": "Star",
            "rank": 3,
            "qualification": {"metric": "points", "threshold": 250, "window": "calendar_year"},
        },
    )
    for customer, count in (("a", 1), ("b", 2), ("c", 3), ("d", 4)):
        for n in range(count):
            await api.order(
                f"{customer}-{n}", customer=customer, placed_at=iso(START - timedelta(days=200 * n))
            )
    await api.client.post(
        "/v1/orders/b-1/refunds", json={"external_id": "r", "amount": 9000}, headers=api.headers()
    )

    # Forget the tiers the orders gave, so every customer who reaches one is a candidate.
    fetch(api.client, "UPDATE customer_tier SET tier_id = NULL, since = NULL RETURNING customer_id")

    async def compare() -> tuple[dict[str, str], dict[str, str]]:
        from service.core import db

        async with db.connection() as conn:
            program = await programs.load(conn, api.program_id)  # type: ignore[arg-type]
            tier_set = await tiers.tier_set(conn, program)
            assert tier_set.all_customers is not None and tier_set.one_customer is not None
            starts = tier_set.starts(START, program.zone)
            rows = await repository.candidates(
                conn,
                tier_set.all_customers,
                tier_set.qualified_sql(),
                tier_set.held_rank_sql(),
                program.id,
                program.base_currency,
                starts,
                START,
            )
            by_sql = {
                r["external_id"]: tier_set.by_id[r["qualified_id"]].key for r in rows if r["qualified_id"]
            }
            customers = await conn.fetch(
                "SELECT id, external_id FROM customer WHERE program_id = $1", program.id
            )
            by_domain = {}
            for c in customers:
                values = await repository.metrics_of(
                    conn, tier_set.one_customer, program.id, "EUR", c["id"], starts
                )
                reached = domain.qualified_tier(tier_set.tiers, tier_set.values(values))
                if reached is not None:
                    by_domain[c["external_id"]] = reached.key
            return by_sql, by_domain

    by_sql, by_domain = in_app(api.client, compare)
    assert by_sql == by_domain == {"c": "gold", "d": "gold"}


async def test_two_reevaluations_at_once_change_each_customer_once(api: Api) -> None:
    await post_tier(api, SILVER)
    customers = [f"c-{n}" for n in range(40)]
    for customer in customers:
        await api.order(f"{customer}-a", customer=customer)
        await api.order(f"{customer}-b", customer=customer)
    # As if the tier had come after the orders: nobody holds it yet, every one of them qualifies.
    fetch(api.client, "UPDATE customer_tier SET tier_id = NULL, since = NULL RETURNING customer_id")
    fetch(api.client, "DELETE FROM tier_change RETURNING id")
    fetch(api.client, "DELETE FROM outbox WHERE topic LIKE 'tier.%' RETURNING id")

    async def both() -> list[Any]:
        import asyncio

        return list(await asyncio.gather(jobs.reevaluate(START, chunk=7), jobs.reevaluate(START, chunk=7)))

    first, second = in_app(api.client, both)
    assert first.counts["upgrade"] + second.counts["upgrade"] == len(customers)
    history = fetch(api.client, "SELECT customer_id, count(*) AS n FROM tier_change GROUP BY customer_id")
    assert len(history) == len(customers) and {h["n"] for h in history} == {1}
    assert topics(api).count("tier.upgraded") == len(customers)


async def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(api: Api) -> None:
    await post_tier(api, SILVER)
    await api.order("o-1")
    before = table_counts(api.client)
    h = api.headers()
    attempts = [
        ("POST", "/v1/tiers", {**GOLD, "qualification": {"metric": "spend", "threshold": 1.5}}),
        ("POST", "/v1/tiers", {**GOLD, "benefits": {"earn_multiplier": "NaN"}}),
        ("POST", "/v1/tiers", {**GOLD, "benefits": {"earn_multiplier": "1.255"}}),
        ("POST", "/v1/tiers", {**GOLD, "benefits": {"earn_multiplier": "abc"}}),
        ("POST", "/v1/tiers", {**GOLD, "rank": -1}),
        ("POST", "/v1/tiers", {**GOLD, "retention": {"warning_days": 0}}),
        ("POST", "/v1/tiers", {**GOLD, "surprise": True}),
        (
            "PATCH",
            "/v1/tiers/silver",
            {"qualification": {"metric": "orders", "threshold": {"amount": 1, "currency": "EUR"}}},
        ),
        ("PATCH", "/v1/tiers/nope", {"name": "x"}),
        ("POST", "/v1/customers/c-1/tier", {"tier": "silver", "reason": "x", "until": "2027-01-01T00:00:00"}),
        (
            "POST",
            "/v1/customers/c-1/tier",
            {"tier": None, "reason": "x", "until": iso(START + timedelta(days=9))},
        ),
        ("POST", "/v1/customers/c-1/tier", {"tier": "silver", "reason": ""}),
        ("GET", "/v1/customers/c-1/tier-history?cursor=garbage", None),
        ("GET", "/v1/customers/c-1/tier-history?limit=0", None),
        ("DELETE", "/v1/tiers/silver?move_to=gold", None),
        ("DELETE", "/v1/tiers/nope?move_to=none", None),
    ]
    for method, path, body in attempts:
        # A key for the POSTs that require one: the refusal must be the body's, not a missing header's.
        response = await api.client.request(method, path, json=body, headers={**h, **idempotency()})
        assert 400 <= response.status_code < 500, (method, path, body, response.text)
        assert response.json().get("field") != "header:Idempotency-Key", response.text
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
    assert table_counts(api.client) == before


async def test_tier_state_has_its_own_row_and_a_stale_read_is_decided_again(api: Api) -> None:
    """Tier state lives in `customer_tier` (a customer without a row holds no tier). The order reads it
    with the customer's upsert, unlocked: when it moved before the upgrade is written (a re-evaluation
    committed meanwhile), the upgrade is decided again on what is there, and after_activity says so."""
    from service.core import db
    from service.programs import service as programs
    from service.tiers import service as tiers

    await post_tier(api, SILVER)
    await post_tier(api, GOLD)
    await api.order("o-1")
    await api.order("o-2")  # EUR 180.00: Silver
    await api.order("n-1", customer="c-2")  # EUR 90.00: no tier, no row
    [row] = fetch(api.client, "SELECT customer_id, tier_id, source FROM customer_tier")
    [silver] = fetch(api.client, "SELECT id FROM tier WHERE key = 'silver'")
    assert (row["tier_id"], row["source"]) == (silver["id"], "earned")
    assert (await tier_of(api, "c-2"))["tier"] is None
    # Gold within reach, without an order to take the customer there.
    fetch(api.client, "UPDATE orders SET total_amount = 30000 WHERE external_id = 'o-2' RETURNING id")
    [customer] = fetch(
        api.client, "SELECT id, program_id, external_id FROM customer WHERE external_id = 'c-1'"
    )
    stale = {
        **customer,
        "tier_id": None,
        "tier_since": None,
        "tier_source": "earned",
        "tier_manual_until": None,
        "tier_warned_at": None,
    }

    async def lift() -> tiers.Lifted | None:
        async with db.transaction() as conn:
            program = await programs.load(conn, api.program_id)  # type: ignore[arg-type]
            return await tiers.after_activity(conn, program, stale, START, "order", "o-x", spend=0, orders=1)

    lifted = in_app(api.client, lift)
    assert lifted is not None
    assert (lifted.from_tier and lifted.from_tier.key, lifted.to_tier.key) == ("silver", "gold")
    assert lifted.reason == "order o-x: spend over 12 months EUR 390.00 (Gold needs EUR 250.00)"
    assert (await tier_of(api))["tier"]["key"] == "gold"
    upgrade = (await history_of(api))[0]
    assert (upgrade["from_tier"]["key"], upgrade["to_tier"]["key"]) == ("silver", "gold")
    assert topics(api) == ["tier.upgraded", "tier.upgraded"]
    # Nothing left to lift: the same call changes nothing and says so.
    assert in_app(api.client, lift) is None
    assert topics(api) == ["tier.upgraded", "tier.upgraded"]
