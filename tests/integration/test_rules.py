"""Earning rules over HTTP on PostgreSQL: versions named in the ledger, exclusivity, caps, budgets,
events, quotes and simulations; bad rules refused with the JSON path of the error."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import START, Api, fetch, idempotency, iso, order_body, table_counts, verify_ledger

# START is Monday 2026-03-02 12:00 UTC; the next Sunday is 2026-03-08.
SUNDAY = START + timedelta(days=6)

SUNDAY_DOUBLE_SHOES = {
    "name": "Sunday double points",
    "status": "active",
    "priority": 10,
    "stacking": "exclusive",
    "window": {"days_of_week": ["sun"]},
    "conditions": {"field": "line.category", "op": "eq", "value": "Shoes"},
    "effect": {"kind": "multiplier", "multiplier": "2"},
}


async def create_rule(api: Api, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await api.client.post("/v1/rules", json=body, headers=api.headers(**idempotency()))
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_sunday_double_points_names_its_version_and_leaves_other_lines_to_the_base_rule(
    api: Api, clock: FrozenClock
) -> None:
    clock.set(SUNDAY)
    rule = await create_rule(api, SUNDAY_DOUBLE_SHOES)
    assert rule["version"] == 1 and rule["status"] == "active"
    # Edit the active rule twice: versions 2 and 3; the ledger names the one that awarded.
    for multiplier in ("3", "2"):
        response = await api.client.patch(
            f"/v1/rules/{rule['id']}",
            json={"effect": {"kind": "multiplier", "multiplier": multiplier}},
            headers=api.headers(),
        )
        assert response.status_code == 200, response.text
    assert response.json()["version"] == 3

    weekday = await api.order("o-mon")
    assert weekday.status_code == 201, weekday.text
    assert weekday.json()["order"]["points_earned"] == 90  # 1 point per EUR on EUR 90.00

    sunday = await api.order("o-sun", placed_at=SUNDAY.isoformat())
    assert sunday.status_code == 201, sunday.text
    body = sunday.json()
    explanations = sorted(e["explanation"] for e in body["entries"])
    assert explanations == [
        "Base earn rate v1: 1 point per EUR 1.00 on EUR 30.00 of Socks",
        "Sunday double points v3: 2 × 1 point per EUR 1.00 on EUR 60.00 of Shoes",
    ]
    assert body["order"]["points_earned"] == 150
    assert [line["points"] for line in body["order"]["lines"]] == [120, 30]
    rule_entry = next(e for e in body["entries"] if e["rule_id"] == rule["id"])
    assert rule_entry["rule_version"] == 3 and rule_entry["points"] == 120
    versions = await api.client.get(f"/v1/rules/{rule['id']}/versions", headers=api.headers())
    assert [v["version"] for v in versions.json()["items"]] == [3, 2, 1]
    assert [v["definition"]["effect"]["multiplier"] for v in versions.json()["items"]] == ["2", "3", "2"]

    # A refund of the shoe takes back exactly the shoe's 120 points.
    refund = await api.client.post(
        "/v1/orders/o-sun/refunds",
        json={"external_id": "r-1", "lines": [{"sku": "SHOE-1", "quantity": 1}]},
        headers=api.headers(),
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["points_reversed"] == 120
    verify_ledger(api.client)


async def test_stacking_fixed_bonus_and_percent_bonus(api: Api) -> None:
    await create_rule(
        api,
        {
            "name": "Big basket bonus",
            "status": "active",
            "conditions": {"field": "order.total", "op": "gte", "value": {"amount": 5000, "currency": "EUR"}},
            "effect": {"kind": "fixed", "points": 50},
        },
    )
    await create_rule(
        api,
        {
            "name": "Shoe week",
            "status": "active",
            "conditions": {"field": "line.sku", "op": "starts_with", "value": "SHOE"},
            "effect": {"kind": "percent_bonus", "percent": "10"},
        },
    )
    response = await api.order("o-1")
    assert response.status_code == 201, response.text
    order = response.json()["order"]
    # base 90; fixed 50 spread 33 : 17 by amount; 10% of the shoe line's 60 + 33 = 9.
    assert order["points_earned"] == 90 + 50 + 9
    assert "Shoe week v1: 10% bonus on 93 points of Shoes" in order["earn_explanation"]
    assert "Big basket bonus v1: 50 points" in order["earn_explanation"]


async def test_caps_per_order_and_per_customer_day(api: Api) -> None:
    await create_rule(
        api,
        {
            "name": "Triple",
            "status": "active",
            "priority": 5,
            "stacking": "exclusive",
            "effect": {"kind": "rate", "rates": {"EUR": "3"}},
            "caps": {"per_order": 200, "per_customer_day": 300},
        },
    )
    first = (await api.order("o-1")).json()
    assert first["order"]["points_earned"] == 200
    assert "capped at 200 points per order" in first["order"]["earn_explanation"]
    second = (await api.order("o-2")).json()
    assert second["order"]["points_earned"] == 100
    assert "300 points per customer per day" in second["order"]["earn_explanation"]
    # Cap spent for the day: the base rule takes the lines back.
    third = (await api.order("o-3")).json()
    assert third["order"]["points_earned"] == 90
    assert third["order"]["earn_explanation"].startswith("Base earn rate v1")
    other = (await api.order("o-4", customer="c-2")).json()
    assert other["order"]["points_earned"] == 200


async def test_campaign_budget_holds_under_concurrent_orders(api: Api) -> None:
    rule = await create_rule(
        api,
        {
            "name": "Launch bonus",
            "status": "active",
            "effect": {"kind": "fixed", "points": 100},
            "budget_points": 950,
        },
    )
    responses = await asyncio.gather(*(api.order(f"o-{i}", customer=f"c-{i}") for i in range(20)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
    given = fetch(
        api.client,
        "SELECT coalesce(sum(points), 0) AS points FROM points_entry WHERE rule_id = $1",
        rule["id"],
    )[0]["points"]
    assert given == 950
    after = (await api.client.get(f"/v1/rules/{rule['id']}", headers=api.headers())).json()
    assert after["budget"]["spent"] == 950 and after["budget"]["remaining"] == 0
    assert after["budget"]["exhausted_at"] is not None
    late = (await api.order("o-late", customer="c-late")).json()
    assert late["order"]["points_earned"] == 90
    topics = fetch(api.client, "SELECT count(*) AS n FROM outbox WHERE topic = 'rule.budget_exhausted'")
    assert topics[0]["n"] == 1
    verify_ledger(api.client)


async def test_events_award_by_rule_or_answer_no_rule_matched(api: Api) -> None:
    await create_rule(
        api,
        {
            "name": "Review reward",
            "status": "active",
            "trigger": "review_written",
            "conditions": {"field": "event.properties.stars", "op": "gte", "value": 4},
            "effect": {"kind": "fixed", "points": 25},
            "caps": {"per_customer_lifetime": 50},
        },
    )
    headers = api.headers(**{"Idempotency-Key": "ev-1"})
    body = {"type": "review_written", "customer": {"external_id": "c-9"}, "properties": {"stars": 5}}
    first = await api.client.post("/v1/events", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["result"] == "awarded" and first.json()["points"] == 25
    replay = await api.client.post("/v1/events", json=body, headers=headers)
    assert replay.json() == first.json()
    low = await api.client.post(
        "/v1/events",
        json={**body, "properties": {"stars": 2}},
        headers=api.headers(**{"Idempotency-Key": "ev-2"}),
    )
    assert low.status_code == 202 and low.json()["result"] == "no rule matched" and low.json()["points"] == 0
    # A property of the wrong type makes the rule fail at run time: recorded, visible, nothing breaks.
    odd = await api.client.post(
        "/v1/events",
        json={**body, "properties": {"stars": "five"}},
        headers=api.headers(**{"Idempotency-Key": "ev-3"}),
    )
    assert odd.status_code == 202, odd.text
    assert odd.json()["result"] == "no rule matched"
    rules = (await api.client.get("/v1/rules", headers=api.headers())).json()["items"]
    review = next(r for r in rules if r["name"] == "Review reward")
    assert review["problems"]["count"] == 1 and "cannot compare" in review["problems"]["last_error"]
    status = await api.status("c-9")
    assert status["points"]["available"] == 25
    unknown = await api.client.post(
        "/v1/events", json={**body, "type": "made_up"}, headers=api.headers(**{"Idempotency-Key": "ev-4"})
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "type"
    # Without a key a retry would award twice: the key is required.
    keyless = await api.client.post("/v1/events", json=body, headers=api.headers())
    assert keyless.status_code == 400, keyless.text
    assert keyless.json()["field"] == "header:Idempotency-Key"
    assert fetch(api.client, "SELECT count(*) AS n FROM customer_event")[0]["n"] == 3


async def test_quote_writes_nothing(api: Api, clock: FrozenClock) -> None:
    clock.set(SUNDAY)
    await create_rule(api, SUNDAY_DOUBLE_SHOES)
    before = table_counts(api.client)
    body = order_body("cart")
    body.pop("external_id")
    body["placed_at"] = SUNDAY.isoformat()
    response = await api.client.post("/v1/orders/quote", json=body, headers=api.headers())
    assert response.status_code == 200, response.text
    quote = response.json()
    assert quote["points"] == 150
    assert [line["points"] for line in quote["lines"]] == [120, 30]
    assert table_counts(api.client) == before


async def test_simulation_reports_extra_points_and_cost(api: Api, clock: FrozenClock) -> None:
    clock.set(START + timedelta(days=7))
    for day in range(7):
        response = await api.order(
            f"o-{day}", customer=f"c-{day % 3}", placed_at=(START + timedelta(days=day)).isoformat()
        )
        assert response.status_code == 201
    draft = await create_rule(api, {**SUNDAY_DOUBLE_SHOES, "status": "draft"})
    before = table_counts(api.client)
    response = await api.client.post(
        f"/v1/rules/{draft['id']}/simulate",
        json={"from": iso(START), "to": iso(START + timedelta(days=7))},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["orders_replayed"] == 7
    assert result["orders_affected"] == 1 and result["customers_affected"] == 1
    assert result["extra_points"] == 60
    assert result["extra_cost"] == {"amount": 60, "currency": "EUR"}
    assert result["top_customers"] == [{"customer_external_id": "c-0", "orders": 1, "extra_points": 60}]
    assert table_counts(api.client) == before


async def test_bad_rules_are_refused_with_the_path(api: Api) -> None:
    before = table_counts(api.client)
    cases = [
        (
            {"conditions": {"all": [{"field": "order.colour", "op": "eq", "value": "red"}]}},
            "conditions.all[0].field",
        ),
        ({"conditions": {"field": "order.total", "op": "contains", "value": "x"}}, "conditions.op"),
        (
            {"conditions": {"ref": "a"}, "definitions": {"a": {"ref": "b"}, "b": {"ref": "a"}}},
            "definitions.b.ref",
        ),
        ({"effect": {"kind": "multiplier", "multiplier": "101"}}, "effect.multiplier"),
        ({"effect": {"kind": "multiplier", "multiplier": "-2"}}, "effect.multiplier"),
        ({"status": "active", "window": {"ends_at": iso(START - timedelta(days=1))}}, "window.ends_at"),
        ({"trigger": "nonsense"}, "trigger"),
    ]
    deep: dict[str, Any] = {"field": "order.total", "op": "gt", "value": {"amount": 1, "currency": "EUR"}}
    for _ in range(11):
        deep = {"not": deep}
    cases.append(({"conditions": deep}, "conditions" + ".not" * 10))
    for change, field in cases:
        body = {**SUNDAY_DOUBLE_SHOES, "status": "draft", **change}
        response = await api.client.post("/v1/rules", json=body, headers=api.headers(**idempotency()))
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field, (change, response.json())
    assert table_counts(api.client) == before
