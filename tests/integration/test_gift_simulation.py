"""`POST /v1/gift-rules/{id}/simulate` over history made through the API: a rule played over a period it
decided live gives what it gave (orders, refunds, complaints, birthdays, anniversaries, upgrades), the
cooldown starts from real gifts before the period, the budget binds per period, a draft's dice are the
domain's, nothing is written, and bad input names its field."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from service.core import db
from service.core.clock import FrozenClock
from service.gifts import domain, jobs
from tests.conftest import START, Api, fetch, fingerprint, idempotency, in_app, iso, order_body

POINTS = [{"kind": "points", "points": 200}]  # 200 points at the default 1 cent: 200 a gift
DAY = timedelta(days=1)


async def gift_rule(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Surprise",
        "trigger": {"kind": "random_share", "share": "1"},
        "gifts": POINTS,
        "holdout": "0",
        "status": "active",
        **overrides,
    }
    made = await api.client.post("/v1/gift-rules", json=body, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def order(
    api: Api, clock: FrozenClock, external_id: str, customer: str, at: datetime, late: timedelta = timedelta()
) -> None:
    """An order placed at `at`, recorded then (the clock moves there: the live path decides it as it
    happens), or `late` after."""
    clock.set(at + late)
    made = await api.client.post(
        "/v1/orders",
        json=order_body(external_id, customer, placed_at=at.isoformat()),
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text


async def simulate(
    api: Api, rule_id: str, start: datetime, end: datetime, status: int = 200
) -> dict[str, Any]:
    response = await api.client.post(
        f"/v1/gift-rules/{rule_id}/simulate", json={"from": iso(start), "to": iso(end)}, headers=api.headers()
    )
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def cooldown(api: Api, days: int) -> None:
    response = await api.client.patch("/v1/program", json={"gift_cooldown_days": days}, headers=api.headers())
    assert response.status_code == 200, response.text


def live(api: Api, rule_id: str, start: datetime, end: datetime, zone: str = "UTC") -> dict[str, Any]:
    """What the live path decided for the rule in [start, end): counts, cost, per month (of `zone`)."""
    rows = fetch(
        api.client,
        "SELECT outcome, cost_amount, to_char(decided_at AT TIME ZONE $4, 'YYYY-MM') AS month FROM gift "
        "WHERE rule_id = $1 AND decided_at >= $2 AND decided_at < $3",
        UUID(rule_id),
        start,
        end,
        zone,
    )
    months: dict[str, list[int]] = {}
    for r in rows:
        counts = months.setdefault(r["month"], [0, 0, 0])
        counts[0 if r["outcome"] == "granted" else 1] += 1
        counts[2] += r["cost_amount"]
    return {
        "gifts": sum(r["outcome"] == "granted" for r in rows),
        "held_out": sum(r["outcome"] == "held_out" for r in rows),
        "cost": sum(r["cost_amount"] for r in rows),
        "by_period": months,
    }


def as_live(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "gifts": result["gifts"],
        "held_out": result["held_out"],
        "cost": result["cost"]["amount"],
        "by_period": {
            p["period"]: [p["gifts"], p["held_out"], p["cost"]["amount"]]
            for p in result["by_period"]
            if p["gifts"] or p["held_out"]
        },
    }


def groups(api: Api, rule_id: str, holdout: Decimal, each: int) -> tuple[list[str], list[str]]:
    """`each` customer ids of the rule's hold-out and as many of its recipients (version 1)."""
    [program] = fetch(api.client, "SELECT gift_key FROM program")
    rule = domain.Rule(id=UUID(rule_id), version=1, name="", priority=0, trigger="", holdout=holdout)
    names = [f"c-{i}" for i in range(1000)]
    held = [n for n in names if domain.in_holdout(program["gift_key"].encode(), rule, n)]
    return held[:each], [n for n in names if n not in held][:each]


async def pause(api: Api, rule_id: str) -> None:
    """Stop the rule deciding (its version stays: a status change alone makes none)."""
    response = await api.client.patch(
        f"/v1/gift-rules/{rule_id}", json={"status": "paused"}, headers=api.headers()
    )
    assert response.status_code == 200 and response.json()["version"] == 1, response.text


async def test_a_rule_simulated_over_the_orders_it_decided_gives_what_it_gave(
    api: Api, clock: FrozenClock
) -> None:
    await cooldown(api, 12)
    rule = await gift_rule(
        api, trigger={"kind": "random_share", "share": "0.6"}, probability="0.8", holdout="0.3"
    )
    # 12 customers, 6 of each group (by the real hold-out hash), each ordering every 2 to 7 days for 80
    # days: chance, cooldown and both groups all occur.
    held, given = groups(api, rule["id"], Decimal("0.3"), 6)
    placed = sorted(
        (START + timedelta(days=day, hours=c), customer)
        for c, customer in enumerate(held + given)
        for day in range(0, 80, 2 + c % 6)
    )
    for number, (at, customer) in enumerate(placed):
        await order(api, clock, f"o-{number}", customer, at)
    await pause(api, rule["id"])
    start, end = START + timedelta(days=30), START + timedelta(days=80)
    result = await simulate(api, rule["id"], start, end)
    assert result["occasions"] == sum(start <= at < end for at, _ in placed)
    assert as_live(result) == live(api, rule["id"], start, end)
    assert result["skipped"]["cooldown"] > 0 and result["skipped"]["chance"] > 0
    assert result["gifts"] > 0 and result["held_out"] > 0
    assert result["triggered"] == result["gifts"] + result["held_out"] + sum(result["skipped"].values())
    assert (result["rule_id"], result["rule_version"], result["from"]) == (rule["id"], 1, iso(start))


async def test_the_cooldown_starts_from_real_gifts_before_the_period_and_other_rules_inside_it_do_not_count(
    api: Api, clock: FrozenClock
) -> None:
    await cooldown(api, 20)
    other = await gift_rule(api, name="Every order")
    draft = await gift_rule(api, name="Draft", status="draft")
    for number, day in enumerate((25, 35, 50, 60)):
        await order(api, clock, f"o-{number}", "c-1", START + timedelta(days=day))
    # Live, the active rule gave on day 25 and day 50 (35 and 60 were within 20 days of a gift).
    assert live(api, other["id"], START, START + timedelta(days=61))["gifts"] == 2
    result = await simulate(api, draft["id"], START + timedelta(days=30), START + timedelta(days=61))
    # Day 35: within 20 days of the real gift of day 25. Day 50: given (the other rule's gift that day is
    # inside the period and not this rule's). Day 60: within 20 days of the simulated gift of day 50.
    assert (result["occasions"], result["gifts"], result["skipped"]) == (3, 1, {"cooldown": 2})


async def test_the_budget_binds_per_period_and_nothing_is_written(api: Api, clock: FrozenClock) -> None:
    await cooldown(api, 0)
    rule = await gift_rule(
        api, status="draft", budget={"amount": {"amount": 500, "currency": "EUR"}, "period": "month"}
    )
    april, may = datetime(2026, 4, 3, 10, tzinfo=UTC), datetime(2026, 5, 3, 10, tzinfo=UTC)
    for i in range(5):
        await order(api, clock, f"a-{i}", f"c-{i}", april + timedelta(hours=i))
    for i in range(3):
        await order(api, clock, f"m-{i}", f"c-{i}", may + timedelta(hours=i))
    before = fingerprint(api.client)
    result = await simulate(api, rule["id"], april - DAY, may + DAY)
    assert fingerprint(api.client) == before
    assert (result["occasions"], result["triggered"], result["gifts"], result["held_out"]) == (8, 8, 4, 0)
    assert result["skipped"] == {"budget": 4}
    assert result["cost"] == {"amount": 800, "currency": "EUR"}
    assert result["by_period"] == [
        {"period": "2026-04", "gifts": 2, "held_out": 0, "cost": {"amount": 400, "currency": "EUR"}},
        {"period": "2026-05", "gifts": 2, "held_out": 0, "cost": {"amount": 400, "currency": "EUR"}},
    ]
    # A budget of the whole time: two gifts in all.
    response = await api.client.patch(
        f"/v1/gift-rules/{rule['id']}",
        json={"budget": {"amount": {"amount": 500, "currency": "EUR"}, "period": "total"}},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    total = await simulate(api, rule["id"], april - DAY, may + DAY)
    assert (total["gifts"], total["skipped"], [p["period"] for p in total["by_period"]]) == (
        2,
        {"budget": 6},
        ["total"],
    )


async def test_a_drafts_dice_are_the_domains(api: Api, clock: FrozenClock) -> None:
    """Every 2nd order of each customer, half of them held out by the keyed hash of the rule's version."""
    await cooldown(api, 0)
    rule = await gift_rule(
        api, status="draft", trigger={"kind": "nth_order", "n": 2, "repeat": True}, holdout="0.5"
    )
    number = 0
    counts = {f"c-{c}": 1 + c % 5 for c in range(20)}
    for day in range(5):
        for customer, count in counts.items():
            if day < count:
                await order(api, clock, f"o-{number}", customer, START + timedelta(days=day, minutes=number))
                number += 1
    [program] = fetch(api.client, "SELECT gift_key FROM program")
    compiled = domain.Rule(
        id=UUID(rule["id"]), version=1, name="", priority=0, trigger="nth_order", holdout=Decimal("0.5")
    )
    groups = Counter(
        domain.in_holdout(program["gift_key"].encode(), compiled, customer)
        for customer, count in counts.items()
        for _ in range(count // 2)  # the 2nd and the 4th orders
    )
    assert groups[True] > 0 and groups[False] > 0
    result = await simulate(api, rule["id"], START, START + timedelta(days=5))
    assert (result["occasions"], result["gifts"], result["held_out"]) == (number, groups[False], groups[True])
    assert result["triggered"] == groups[True] + groups[False] and result["skipped"] == {}


async def test_refunds_and_complaints_simulated_as_they_were_decided(api: Api, clock: FrozenClock) -> None:
    await cooldown(api, 0)
    for c in range(10):  # odd customers never consented: a gift announced by message is not theirs
        response = await api.client.put(
            f"/v1/customers/c-{c}", json={"marketing_consent": c % 2 == 0}, headers=api.headers()
        )
        assert response.status_code in (200, 201), response.text
    complaint = await gift_rule(api, name="Sorry", trigger={"kind": "complaint"}, holdout="0.3")
    refund = await gift_rule(
        api, name="Refund gesture", trigger={"kind": "refund"}, holdout="0.3", eligibility={"min_orders": 1}
    )
    for c in range(10):
        await order(api, clock, f"o-{c}", f"c-{c}", START + timedelta(days=c))
        for k in range(3):
            clock.set(START + timedelta(days=c, hours=2 + k))
            event = await api.client.post(
                "/v1/events",
                json={
                    "type": "complaint",
                    "customer": {"external_id": f"c-{c}"},
                    "occurred_at": iso(clock.now()),
                },
                headers=api.headers(**idempotency()),
            )
            assert event.status_code == 202, event.text
        if c % 3 == 0:  # refunds of customers with one order: `min_orders` 1 is met (the refunded order)
            clock.set(START + timedelta(days=c, hours=8))
            refunded = await api.client.post(
                f"/v1/orders/o-{c}/refunds",
                json={"external_id": f"r-{c}", "amount": 1000},
                headers=api.headers(),
            )
            assert refunded.status_code in (200, 201), refunded.text
    start, end = START - DAY, START + timedelta(days=11)
    for rule in (complaint, refund):
        await pause(api, rule["id"])
    complaints = await simulate(api, complaint["id"], start, end)
    assert as_live(complaints) == live(api, complaint["id"], start, end)
    assert complaints["occasions"] == 30 and complaints["skipped"] == {"ineligible: consent": 15}
    refunds = await simulate(api, refund["id"], start, end)
    assert as_live(refunds) == live(api, refund["id"], start, end)
    assert refunds["occasions"] == 4 and refunds["gifts"] + refunds["held_out"] == 2  # c-0, c-6 consented
    # A period of nothing of the kind: complaints before the first one.
    assert (await simulate(api, complaint["id"], start - timedelta(days=30), start))["occasions"] == 0


async def test_birthdays_and_anniversaries_as_the_daily_sweep_decided_them(
    api: Api, clock: FrozenClock
) -> None:
    await cooldown(api, 0)
    response = await api.client.patch("/v1/program", json={"timezone": "Europe/Riga"}, headers=api.headers())
    assert response.status_code == 200, response.text
    first_day = START.date()
    for c in range(12):
        body = {
            "marketing_consent": c != 5,
            "birthday": (first_day + timedelta(days=c * 3)).replace(year=1990).isoformat(),
        }
        made = await api.client.put(f"/v1/customers/c-{c}", json=body, headers=api.headers())
        assert made.status_code in (200, 201), made.text
    for c in range(8):  # first orders a year before: their anniversaries fall in the period
        placed = START - timedelta(days=365 - c * 4, hours=11)  # 01:00 UTC: 03:00 or 04:00 in Riga
        made = await api.client.post(
            "/v1/orders",
            json=order_body(f"first-{c}", f"c-{c}", placed_at=placed.isoformat()),
            headers=api.headers(**idempotency()),
        )
        assert made.status_code == 201, made.text
    birthday = await gift_rule(api, name="Birthday", trigger={"kind": "birthday"}, holdout="0.3")
    anniversary = await gift_rule(
        api, name="A year with us", trigger={"kind": "first_order_anniversary"}, holdout="0.3"
    )
    for day in range(40):
        clock.set(START + timedelta(days=day))
        in_app(api.client, jobs.occasions, clock.now())
    for rule in (birthday, anniversary):
        await pause(api, rule["id"])
    start = datetime(2026, 3, 1, tzinfo=UTC)
    end = clock.now()
    birthdays = await simulate(api, birthday["id"], start, end)
    assert as_live(birthdays) == live(api, birthday["id"], start, end, "Europe/Riga")
    assert birthdays["occasions"] == 12 and birthdays["skipped"] == {"ineligible: consent": 1}
    anniversaries = await simulate(api, anniversary["id"], start, end)
    assert as_live(anniversaries) == live(api, anniversary["id"], start, end, "Europe/Riga")
    assert anniversaries["occasions"] == 8
    # Dates that have not begun are no occasions: a period reaching past now says the same.
    assert await simulate(api, birthday["id"], start, end + timedelta(days=60)) == {
        **birthdays,
        "to": iso(end + timedelta(days=60)),
    }
    keys = {r["occasion"] for r in fetch(api.client, "SELECT occasion FROM gift")}
    assert keys <= {"birthday:2026", "first_order_anniversary:2026"}


async def test_the_first_order_after_an_upgrade_and_the_tier_held_then(api: Api, clock: FrozenClock) -> None:
    await cooldown(api, 0)
    silver = {
        "key": "silver",
        "name": "Silver",
        "rank": 1,
        "qualification": {"metric": "spend", "threshold": {"amount": 15000, "currency": "EUR"}},
    }
    made = await api.client.post("/v1/tiers", json=silver, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    upgrade = await gift_rule(api, name="Welcome to Silver", trigger={"kind": "first_order_after_upgrade"})
    silver_only = await gift_rule(
        api, name="Silver orders", status="draft", eligibility={"tiers": ["silver"]}
    )
    for number in range(4):  # 9,000 each: Silver after the 2nd order
        # Recorded a minute after it was placed, as a shop's orders arrive (the upgrade an order causes
        # is stamped when it is recorded).
        await order(api, clock, f"o-{number}", "c-1", START + timedelta(days=number), timedelta(minutes=1))
    await pause(api, upgrade["id"])
    start, end = START - DAY, START + timedelta(days=5)
    upgraded = await simulate(api, upgrade["id"], start, end)
    assert live(api, upgrade["id"], start, end)["gifts"] == 1
    assert (upgraded["occasions"], upgraded["triggered"], upgraded["gifts"]) == (4, 1, 1)
    [gift] = fetch(api.client, "SELECT o.external_id FROM gift g JOIN orders o ON o.id = g.order_id")
    assert gift["external_id"] == "o-2"
    held = await simulate(api, silver_only["id"], start, end)
    assert (held["gifts"], held["skipped"]) == (2, {"ineligible: tier": 2})


async def test_bad_input(api: Api) -> None:
    rule = await gift_rule(api, status="draft")
    cases = [
        ({"from": iso(START), "to": iso(START)}, 422, "to"),
        ({"from": iso(START), "to": iso(START - DAY)}, 422, "to"),
        ({"from": iso(START), "to": iso(START + timedelta(days=367))}, 422, "to"),
        ({"from": "2026-03-01T00:00:00", "to": iso(START)}, 422, "from"),  # no offset
        ({"to": iso(START)}, 422, "from"),
    ]
    for body, status, field in cases:
        response = await api.client.post(
            f"/v1/gift-rules/{rule['id']}/simulate", json=body, headers=api.headers()
        )
        assert response.status_code == status and response.json()["field"] == field, (body, response.text)
    longest = await simulate(api, rule["id"], START - timedelta(days=366), START)
    assert longest["occasions"] == 0 and longest["by_period"] == []
    unknown = await api.client.post(
        "/v1/gift-rules/6f1c1c1e-0000-4000-8000-000000000000/simulate",
        json={"from": iso(START), "to": iso(START + DAY)},
        headers=api.headers(),
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "path:gift_rule_id", unknown.text
    detractor = await gift_rule(api, status="draft", trigger={"kind": "detractor"})
    refused = await api.client.post(
        f"/v1/gift-rules/{detractor['id']}/simulate",
        json={"from": iso(START), "to": iso(START + DAY)},
        headers=api.headers(),
    )
    assert refused.status_code == 422 and refused.json()["field"] == "path:gift_rule_id", refused.text


GENERATED = """
WITH c AS (
    INSERT INTO customer (id, program_id, external_id, marketing_consent, created_at, updated_at)
    SELECT gen_random_uuid(), $1, 'sim-c-' || g, g % 2 = 0, $2, $2 FROM generate_series(0, $4 - 1) g
    RETURNING id, external_id
), numbered AS (
    SELECT id, row_number() OVER () - 1 AS n FROM c
)
INSERT INTO orders (id, program_id, customer_id, external_id, currency, placed_at, subtotal_amount,
                    discount_amount, shipping_amount, total_amount, eligible_amount, points_earned,
                    refunded_amount, refunded_shipping_amount, points_reversed, status, earn_explanation,
                    created_at, attributes)
SELECT gen_random_uuid(), $1, numbered.id, 'sim-o-' || g, 'EUR',
       $2 + make_interval(secs => (g::double precision / $3) * 300 * 86400), 9000, 0, 0, 9000 + g % 5000, 9000,
       0, 0, 0, 0, 'placed', '', $2, '{}'::jsonb
FROM generate_series(0, $3 - 1) g JOIN numbered ON numbered.n = (g * 7919) % $4
"""


async def test_a_hundred_thousand_orders_in_a_few_seconds(api: Api, clock: FrozenClock) -> None:
    start = START - timedelta(days=301)

    async def generate() -> None:
        async with db.connection() as conn:
            await conn.execute(GENERATED, UUID(api.program_id), start, 100_000, 20_000)
            await conn.execute("ANALYZE orders")
            await conn.execute("ANALYZE customer")

    in_app(api.client, generate)
    rule = await gift_rule(
        api,
        status="draft",
        trigger={"kind": "order_over", "amount": {"amount": 12000, "currency": "EUR"}},
        budget={"amount": {"amount": 100_000, "currency": "EUR"}, "period": "week"},
        holdout="0.1",
    )
    began = time.perf_counter()
    result = await simulate(api, rule["id"], start, START)
    elapsed = time.perf_counter() - began
    assert result["occasions"] == 100_000
    assert result["gifts"] > 0 and result["held_out"] > 0 and result["skipped"]["cooldown"] > 0
    assert sum(p["gifts"] for p in result["by_period"]) == result["gifts"]
    assert all(p["cost"]["amount"] <= 100_000 for p in result["by_period"])
    assert elapsed < 6, f"{elapsed:.1f} s"
