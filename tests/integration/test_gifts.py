"""Surprise gifts end to end over HTTP: rules with versions, gifts in the order's answer (points, codes,
items, notes), the cooldown across rules, budgets, hold-outs, the same answer for the same order, gifts
without an order waiting for the next parcel, and failures that never fail the order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import Api, fetch, idempotency, in_app, order_body, verify_ledger

POINTS = [{"kind": "points", "points": 200}]


def rule_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Third order thank-you",
        "trigger": {"kind": "nth_order", "n": 3},
        "gifts": POINTS,
        "holdout": "0",
        "status": "active",
    }
    body.update(overrides)
    return body


async def gift_rule(api: Api, **overrides: Any) -> dict[str, Any]:
    made = await api.client.post(
        "/v1/gift-rules", json=rule_body(**overrides), headers=api.headers(**idempotency())
    )
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def order(api: Api, external_id: str, customer: str = "c-1", **overrides: Any) -> dict[str, Any]:
    made = await api.client.post(
        "/v1/orders",
        json=order_body(external_id, customer, **overrides),
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def test_the_third_order_gets_points_explained_in_the_answer(api: Api) -> None:
    rule = await gift_rule(api)
    assert rule["version"] == 1 and rule["status"] == "active"
    assert (await order(api, "o-1"))["surprises"] == []
    assert (await order(api, "o-2"))["surprises"] == []
    third = await order(api, "o-3")
    [surprise] = third["surprises"]
    assert surprise["rule_id"] == rule["id"] and surprise["trigger"] == "nth_order"
    assert surprise["given"] == [{"kind": "points", "points": 200}]
    gift_entries = [e for e in third["entries"] if e["kind"] == "gift"]
    assert [e["points"] for e in gift_entries] == [200]
    assert gift_entries[0]["explanation"] == "Surprise gift 'Third order thank-you' (order o-3): 200 points"
    assert (await order(api, "o-4"))["surprises"] == []
    topics = [r["topic"] for r in fetch(api.client, "SELECT topic FROM outbox ORDER BY id")]
    assert topics.count("gift.granted") == 1
    verify_ledger(api.client)


async def test_an_item_and_a_note_for_the_parcel(api: Api) -> None:
    await api.client.put(
        "/v1/customers/c-1", json={"name": "Ada Lovelace", "locale": "en"}, headers=api.headers()
    )
    await gift_rule(
        api,
        trigger={"kind": "order_over", "amount": {"amount": 5000, "currency": "EUR"}},
        gifts=[
            {
                "kind": "item",
                "sku": "MUG-1",
                "name": "Enamel mug",
                "pick_note": "wrap in tissue",
                "cost": {"amount": 400, "currency": "EUR"},
            },
            {"kind": "note"},
        ],
    )
    placed = await order(api, "o-1")
    [surprise] = placed["surprises"]
    kinds = [g["kind"] for g in surprise["given"]]
    assert kinds == ["item", "note"]
    note = surprise["given"][1]["text"]
    assert "Ada" in note and "Trail shoe" in note
    assert "MUG-1" in surprise["pick_instructions"] and "wrap in tissue" in surprise["pick_instructions"]
    assert surprise["announce"] == "parcel"


async def test_one_surprise_per_cooldown_across_rules(api: Api, clock: FrozenClock) -> None:
    await gift_rule(api, name="Every order", trigger={"kind": "random_share", "share": "1"})
    await gift_rule(
        api, name="Big order", trigger={"kind": "order_over", "amount": {"amount": 1, "currency": "EUR"}}
    )
    first = await order(api, "o-1")
    assert len(first["surprises"]) == 1
    clock.advance(timedelta(days=30))
    assert (await order(api, "o-2", placed_at=clock.now().isoformat()))["surprises"] == []
    clock.advance(timedelta(days=61))
    later = await order(api, "o-3", placed_at=clock.now().isoformat())
    assert len(later["surprises"]) == 1


async def test_the_budget_stops_gifts_and_shows_what_is_left(api: Api) -> None:
    await api.client.patch("/v1/program", json={"gift_cooldown_days": 0}, headers=api.headers())
    rule = await gift_rule(
        api,
        trigger={"kind": "random_share", "share": "1"},
        budget={"amount": {"amount": 500, "currency": "EUR"}, "period": "total"},
    )  # 200 points at 1 cent: 2 EUR a gift, 5 EUR: two gifts
    given = [len((await order(api, f"o-{i}", f"c-{i}"))["surprises"]) for i in range(4)]
    assert given == [1, 1, 0, 0]
    shown = (await api.client.get(f"/v1/gift-rules/{rule['id']}", headers=api.headers())).json()
    assert shown["budget_use"]["used"] == {"amount": 400, "currency": "EUR"}
    assert shown["budget_use"]["left"] == {"amount": 100, "currency": "EUR"}


async def test_the_same_order_gets_the_same_answer_and_hold_outs_are_recorded(api: Api) -> None:
    await api.client.patch("/v1/program", json={"gift_cooldown_days": 0}, headers=api.headers())
    rule = await gift_rule(api, trigger={"kind": "random_share", "share": "0.5"}, holdout="0.3")
    answers = {}
    for i in range(40):
        answers[i] = len((await order(api, f"o-{i}", f"c-{i % 10}"))["surprises"])
    rows = fetch(api.client, "SELECT occasion, outcome FROM gift ORDER BY occasion")
    granted = {r["occasion"] for r in rows if r["outcome"] == "granted"}
    listed, cursor = [], None
    while True:  # the list in pages of 7
        page = await api.client.get(
            "/v1/gifts",
            params={"limit": "7", **({"cursor": cursor} if cursor else {})},
            headers=api.headers(),
        )
        listed += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted((g["occasion"], g["outcome"]) for g in listed) == [
        (r["occasion"], r["outcome"]) for r in rows
    ]
    assert {f"order:o-{i}" for i, n in answers.items() if n} == granted
    # Hold-out membership is per customer: a customer is in one group only.
    groups = fetch(
        api.client,
        "SELECT customer_id, array_agg(DISTINCT outcome) AS outcomes FROM gift GROUP BY customer_id",
    )
    assert all(len(g["outcomes"]) == 1 for g in groups)
    stats = (await api.client.get(f"/v1/gift-rules/{rule['id']}/stats", headers=api.headers())).json()
    assert stats["granted"] == len(granted)
    assert stats["granted"] + stats["held_out"] == len(rows)


async def test_a_birthday_item_waits_for_the_next_order(api: Api) -> None:
    """A gift decided without an order (here a complaint) shows its item on the customer's next order."""
    await api.client.put(
        "/v1/customers/c-1", json={"name": "Ann", "marketing_consent": True}, headers=api.headers()
    )
    await gift_rule(
        api,
        trigger={"kind": "complaint"},
        gifts=[
            {"kind": "item", "sku": "CHOC-1", "name": "Chocolate", "cost": {"amount": 300, "currency": "EUR"}}
        ],
    )
    event = await api.client.post(
        "/v1/events",
        json={
            "type": "complaint",
            "customer": {"external_id": "c-1"},
            "properties": {"about": "late parcel"},
        },
        headers=api.headers(**idempotency()),
    )
    assert event.status_code == 202, event.text
    [gift] = fetch(api.client, "SELECT item_status FROM gift")
    assert gift["item_status"] == "waiting"
    placed = await order(api, "o-1")
    [surprise] = placed["surprises"]
    assert surprise["from_earlier"] is True and surprise["given"][0]["sku"] == "CHOC-1"
    assert (await order(api, "o-2"))["surprises"] == []


async def test_a_failing_gift_never_fails_the_order(api: Api) -> None:
    made = await api.client.post(
        "/v1/rewards",
        json={
            "kind": "amount_off",
            "name": {"en": "EUR 5 off"},
            "cost_points": 50,
            "amount": {"amount": 500, "currency": "EUR"},
            "stock": 0,
        },
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text
    rule = await gift_rule(
        api, trigger={"kind": "nth_order", "n": 1}, gifts=[{"kind": "reward", "reward_id": made.json()["id"]}]
    )
    placed = await order(api, "o-1")
    assert placed["surprises"] == []
    shown = (await api.client.get(f"/v1/gift-rules/{rule['id']}", headers=api.headers())).json()
    assert shown["problems"]["count"] == 1 and "stock" in shown["problems"]["last_error"]
    assert fetch(api.client, "SELECT count(*) AS n FROM gift")[0]["n"] == 0


async def test_bad_input_names_the_field(api: Api) -> None:
    cases = [
        ({"budget": {"amount": {"amount": -1, "currency": "EUR"}}}, "budget.amount.amount"),
        ({"probability": "1.5"}, "probability"),
        ({"holdout": "-0.1"}, "holdout"),
        ({"trigger": {"kind": "nth_fortnight"}}, "trigger.kind"),
        (
            {"gifts": [{"kind": "reward", "reward_id": "6f1c1c1e-0000-4000-8000-000000000000"}]},
            "gifts[0].reward_id",
        ),
    ]
    for overrides, field in cases:
        made = await api.client.post(
            "/v1/gift-rules", json=rule_body(**overrides), headers=api.headers(**idempotency())
        )
        assert made.status_code == 422, (overrides, made.text)
        assert made.json()["field"] == field, (overrides, made.json())
    cooldown = await api.client.patch("/v1/program", json={"gift_cooldown_days": -1}, headers=api.headers())
    assert cooldown.status_code == 422 and cooldown.json()["field"] == "gift_cooldown_days"
    assert fetch(api.client, "SELECT count(*) AS n FROM gift_rule")[0]["n"] == 0


async def test_birthday_gifts_are_decided_once_by_the_daily_sweep(api: Api, clock: FrozenClock) -> None:
    from service.gifts import jobs

    today = clock.now().date()
    await api.client.put(
        "/v1/customers/c-1",
        json={"name": "Ann", "marketing_consent": True, "birthday": today.replace(year=1990).isoformat()},
        headers=api.headers(),
    )
    await api.client.put(  # no consent: the gift would be announced by a marketing message
        "/v1/customers/c-2", json={"birthday": today.replace(year=1991).isoformat()}, headers=api.headers()
    )
    await api.client.put(
        "/v1/customers/c-3",
        json={
            "marketing_consent": True,
            "birthday": (today + timedelta(days=1)).replace(year=1990).isoformat(),
        },
        headers=api.headers(),
    )
    await gift_rule(
        api,
        name="Birthday surprise",
        trigger={"kind": "birthday"},
        gifts=[
            {"kind": "points", "points": 100},
            {
                "kind": "item",
                "sku": "CAKE-1",
                "name": "Cupcake",
                "pick_note": "in a box",
                "cost": {"amount": 250, "currency": "EUR"},
            },
        ],
    )
    result = in_app(api.client, jobs.occasions, clock.now())
    assert (result.customers, result.granted) == (2, 1)
    rows = fetch(api.client, "SELECT occasion, outcome, item_status, cost_amount FROM gift")
    assert rows == [
        {
            "occasion": f"birthday:{today.year}",
            "outcome": "granted",
            "item_status": "waiting",
            "cost_amount": 350,
        }
    ]
    again = in_app(api.client, jobs.occasions, clock.now())
    assert again.granted == 0 and len(fetch(api.client, "SELECT id FROM gift")) == 1
    assert (await api.status("c-1"))["points"]["available"] == 100
    [event] = fetch(
        api.client,
        "SELECT payload ->> 'announce' AS announce, payload -> 'order' AS order_ FROM outbox WHERE topic = 'gift.granted'",
    )
    assert event["announce"] == "message" and event["order_"] == "null"
    waiting = (await api.client.get("/v1/gifts?item_status=waiting", headers=api.headers())).json()
    assert [g["customer_external_id"] for g in waiting["items"]] == ["c-1"]
    assert waiting["items"][0]["pick_instructions"] == "Pick 1 × CAKE-1 (Cupcake): in a box"
    placed = await order(api, "o-1")
    assert placed["surprises"][0]["from_earlier"] and placed["surprises"][0]["given"][0]["sku"] == "CAKE-1"
    picked = (await api.client.get("/v1/gifts?order=o-1", headers=api.headers())).json()["items"]
    assert [(g["item_status"], g["picked_order_external_id"]) for g in picked] == [("picked", "o-1")]
    assert (await api.client.get("/v1/gifts?item_status=waiting", headers=api.headers())).json()[
        "items"
    ] == []


async def test_triggers_on_orders(api: Api, clock: FrozenClock) -> None:
    """Every 2nd order; the first order after 30 days away; the first order after a tier upgrade; a refund."""
    await api.client.patch("/v1/program", json={"gift_cooldown_days": 0}, headers=api.headers())
    # A refund's gift is announced by a (marketing) message: it needs the customer's consent.
    await api.client.put("/v1/customers/c-1", json={"marketing_consent": True}, headers=api.headers())
    every_second = await gift_rule(
        api, name="Every 2nd", trigger={"kind": "nth_order", "n": 2, "repeat": True}
    )
    returning = await gift_rule(
        api, name="Welcome back", trigger={"kind": "returning_customer", "days_away": 30}
    )
    refunded = await gift_rule(
        api, name="Sorry", trigger={"kind": "refund"}, gifts=[{"kind": "points", "points": 50}]
    )
    by_rule: dict[str, list[str]] = {}

    async def place(external_id: str) -> None:
        placed = await order(api, external_id, placed_at=clock.now().isoformat())
        for s in placed["surprises"]:
            by_rule.setdefault(s["rule_id"], []).append(external_id)

    for external_id in ("o-1", "o-2", "o-3", "o-4"):
        await place(external_id)
        clock.advance(timedelta(days=1))
    clock.advance(timedelta(days=40))
    await place("o-5")
    assert by_rule[every_second["id"]] == ["o-2", "o-4"]
    assert by_rule[returning["id"]] == ["o-5"]
    refund = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-1", "amount": 1000}, headers=api.headers()
    )
    assert refund.status_code == 201, refund.text
    sorry = fetch(api.client, "SELECT occasion FROM gift WHERE rule_id = $1", refunded["id"])
    assert [r["occasion"] for r in sorry] == [
        f"refund:{r}" for r in [fetch(api.client, "SELECT id FROM refund")[0]["id"]]
    ]


async def test_eligibility_tiers_orders_and_recent_refunds(api: Api, clock: FrozenClock) -> None:
    await api.client.patch("/v1/program", json={"gift_cooldown_days": 0}, headers=api.headers())
    tier = await api.client.post(
        "/v1/tiers",
        json={
            "key": "gold",
            "name": "Gold",
            "rank": 1,
            "qualification": {"metric": "orders", "threshold": 2, "window": "lifetime"},
        },
        headers=api.headers(**idempotency()),
    )
    assert tier.status_code == 201, tier.text
    upgraded = await gift_rule(api, name="New Gold", trigger={"kind": "first_order_after_upgrade"})
    gold_only = await gift_rule(
        api,
        name="Gold, 2 orders, no refund in 10 days",
        trigger={"kind": "random_share", "share": "1"},
        eligibility={"tiers": ["gold"], "min_orders": 2, "no_refund_within_days": 10},
    )
    got: list[tuple[str, str]] = []
    for i in range(1, 5):
        placed = await order(api, f"o-{i}", placed_at=clock.now().isoformat())
        got += [(f"o-{i}", s["rule_name"]) for s in placed["surprises"]]
        clock.advance(timedelta(hours=1))
    # o-2 lifts the customer to Gold: o-3 is the first order after the upgrade, and from o-3 they are
    # gold with two earlier orders.
    assert ("o-3", "New Gold") in got and ("o-4", "New Gold") not in got
    assert [o for o, name in got if name == gold_only["name"]] == ["o-3", "o-4"]
    refund = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-1", "amount": 100}, headers=api.headers()
    )
    assert refund.status_code == 201
    assert (await order(api, "o-5", placed_at=clock.now().isoformat()))["surprises"] == []
    clock.advance(timedelta(days=11))
    assert [
        s["rule_id"] for s in (await order(api, "o-6", placed_at=clock.now().isoformat()))["surprises"]
    ] == [gold_only["id"]]
    assert upgraded["id"]


async def test_versions_once_active_and_drafts_decide_nothing(api: Api) -> None:
    draft = await gift_rule(api, status="draft", trigger={"kind": "nth_order", "n": 1})
    assert (await order(api, "o-1"))["surprises"] == []
    patched = await api.client.patch(
        f"/v1/gift-rules/{draft['id']}", json={"holdout": "0.2"}, headers=api.headers()
    )
    assert patched.json()["version"] == 1  # a draft is changed in place
    active = await api.client.patch(
        f"/v1/gift-rules/{draft['id']}", json={"status": "active"}, headers=api.headers()
    )
    assert active.json()["status"] == "active"
    changed = await api.client.patch(
        f"/v1/gift-rules/{draft['id']}",
        json={"gifts": [{"kind": "points", "points": 300}]},
        headers=api.headers(),
    )
    assert changed.json()["version"] == 2
    versions = (await api.client.get(f"/v1/gift-rules/{draft['id']}/versions", headers=api.headers())).json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    assert versions["items"][1]["definition"]["gifts"] == POINTS
    back = await api.client.patch(
        f"/v1/gift-rules/{draft['id']}", json={"status": "draft"}, headers=api.headers()
    )
    assert back.status_code == 422 and back.json()["field"] == "status"
    gone = await api.client.delete(f"/v1/gift-rules/{draft['id']}", headers=api.headers())
    assert gone.status_code == 409
    unknown = await api.client.get(
        "/v1/gift-rules/6f1c1c1e-0000-4000-8000-000000000000", headers=api.headers()
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "path:gift_rule_id"


async def test_the_gift_key_is_for_admins_and_reproduces_the_dice(api: Api) -> None:
    from service.gifts import domain

    await api.client.patch("/v1/program", json={"gift_cooldown_days": 0}, headers=api.headers())
    rule = await gift_rule(api, trigger={"kind": "random_share", "share": "0.5"})
    shown = (await api.client.get("/v1/gift-key", headers=api.headers())).json()
    assert len(shown["key"]) == 64 and "HMAC-SHA256" in shown["how"]
    granted = set()
    for i in range(30):
        if (await order(api, f"o-{i}", f"c-{i}"))["surprises"]:
            granted.add(f"o-{i}")
    key = shown["key"].encode()
    from decimal import Decimal
    from uuid import UUID

    expected = {
        f"o-{i}"
        for i in range(30)
        if domain.passes(domain.roll(key, "share", UUID(rule["id"]), 1, f"order:o-{i}"), Decimal("0.5"))
    }
    assert granted == expected and 0 < len(granted) < 30


async def test_a_detractor_gets_the_gesture_once_per_feedback(api: Api, clock: FrozenClock) -> None:
    """The feedback feature's entry: `pipeline.record_detractor` in its own transaction."""
    from uuid import UUID

    from service.core import db
    from service.core.work import Work, committed
    from service.earning import pipeline
    from service.programs import service as programs

    await api.client.put(
        "/v1/customers/c-1", json={"name": "Ann", "marketing_consent": True}, headers=api.headers()
    )
    rule = await gift_rule(api, name="Make it right", trigger={"kind": "detractor"})

    async def detract(key: str) -> int:
        async with db.transaction() as conn:
            program = await programs.load(conn, UUID(api.program_id), crediting=True)
            work: Work[programs.Program] = Work(conn, program.id, program, clock.now(), "feedback")
            given = await pipeline.record_detractor(work, "c-1", key)
        await committed(work)
        return len(given.surprises)

    assert in_app(api.client, detract, "feedback:1") == 1
    assert in_app(api.client, detract, "feedback:1") == 0  # the same feedback again
    assert (await api.status("c-1"))["points"]["available"] == 200
    [row] = fetch(api.client, "SELECT occasion, trigger FROM gift WHERE rule_id = $1", rule["id"])
    assert row == {"occasion": "feedback:1", "trigger": "detractor"}


async def test_a_refund_gesture_counts_earlier_refunds_not_its_own(api: Api, clock: FrozenClock) -> None:
    await api.client.patch("/v1/program", json={"gift_cooldown_days": 0}, headers=api.headers())
    await api.client.put("/v1/customers/c-1", json={"marketing_consent": True}, headers=api.headers())
    rule = await gift_rule(
        api, name="Sorry", trigger={"kind": "refund"}, eligibility={"no_refund_within_days": 30}
    )
    await order(api, "o-1")
    for n in (1, 2):
        made = await api.client.post(
            "/v1/orders/o-1/refunds", json={"external_id": f"r-{n}", "amount": 100}, headers=api.headers()
        )
        assert made.status_code == 201, made.text
        clock.advance(timedelta(days=1))
    # The first refund had none before it; the second came a day after the first.
    assert len(fetch(api.client, "SELECT id FROM gift WHERE rule_id = $1", rule["id"])) == 1


async def test_the_cooldown_holds_when_two_occasions_race_for_the_lock(api: Api, clock: FrozenClock) -> None:
    """Two complaints of one customer decided at once in two transactions (no order row lock between
    them): the second waits for the first's ledger lock and then sees its gift."""
    import asyncio
    import contextvars
    from uuid import UUID

    from service.core import db
    from service.gifts import service as gifts
    from service.ledger import service as ledger
    from service.programs import service as programs

    await api.client.put("/v1/customers/c-1", json={"marketing_consent": True}, headers=api.headers())
    # Points already, so the customer's ledger row exists and the second transaction waits on it.
    made = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 10, "reason": "seed"},
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text
    await gift_rule(api, name="Sorry", trigger={"kind": "complaint"})

    async def decide(conn: Any, key: str) -> int:
        program = await programs.load(conn, UUID(api.program_id))
        row = await db_customer(conn, program)
        occasion = gifts.occasion_of(row, "complaint", key, clock.now())
        return len(
            (await gifts.decide(conn, program, ledger.customer_of(row), row, occasion, clock.now())).surprises
        )

    async def db_customer(conn: Any, program: Any) -> Any:
        from service.customers import service as customers

        return await customers.get(conn, program.id, "c-1", *gifts.CUSTOMER_CONTEXT)

    async def race() -> tuple[int, int]:
        async def second() -> int:
            async with db.transaction() as conn:
                return await decide(conn, "event:2")

        async with db.transaction() as conn:
            first = await decide(conn, "event:1")
            # A context of its own: Piccolo keeps the current transaction in a context variable.
            waiting = asyncio.create_task(second(), context=contextvars.Context())
            await asyncio.sleep(0.3)  # the second is waiting for the ledger lock
            assert not waiting.done()
        return first, await waiting

    assert in_app(api.client, race) == (1, 0)
    assert len(fetch(api.client, "SELECT id FROM gift")) == 1


async def test_a_gift_priced_over_its_budget_is_a_problem_on_the_rule(api: Api) -> None:
    rule = await gift_rule(
        api,
        trigger={"kind": "nth_order", "n": 1},
        budget={"amount": {"amount": 500, "currency": "EUR"}, "period": "month"},
    )  # 200 points at 1 cent: EUR 2.00 a gift
    changed = await api.client.patch(
        "/v1/program", json={"point_value": {"amount": 5, "points": 1}}, headers=api.headers()
    )  # now EUR 10.00 a gift
    assert changed.status_code == 200, changed.text
    assert (await order(api, "o-1"))["surprises"] == []
    shown = (await api.client.get(f"/v1/gift-rules/{rule['id']}", headers=api.headers())).json()
    assert shown["problems"]["count"] == 1 and "more than the whole budget" in shown["problems"]["last_error"]


async def test_a_note_that_writes_what_cannot_be_stored_is_refused_at_save(api: Api) -> None:
    for source, what in (('{{ "\\x00" }}', "NUL"), ('{{ "\\ud800" }}', "surrogate")):
        made = await api.client.post(
            "/v1/gift-rules",
            json=rule_body(gifts=[{"kind": "note", "templates": {"en": source}}]),
            headers=api.headers(**idempotency()),
        )
        assert made.status_code == 422, made.text
        assert made.json()["field"] == "gifts[0].templates.en" and what in made.json()["detail"]
