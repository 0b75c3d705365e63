"""The rules API's life cycle on real PostgreSQL: the default rule, drafts and versions, pausing (seen by
the per-process rule cache at once), deletion, scopes, time zones, declared event types, run-time
failures, per-customer caps under concurrent orders, and the two simulation modes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import START, Api, fetch, idempotency, iso, table_counts, verify_ledger

SHOES_TRIPLE = {
    "name": "Shoes triple",
    "priority": 10,
    "stacking": "exclusive",
    "conditions": {"field": "line.category", "op": "eq", "value": "Shoes"},
    "effect": {"kind": "multiplier", "multiplier": "3"},
}


async def post_rule(api: Api, body: dict[str, Any], status: int = 201, **headers: str) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/rules", json=body, headers=api.headers(**{**idempotency(), **headers})
    )
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def patch_rule(api: Api, rule_id: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await api.client.patch(f"/v1/rules/{rule_id}", json=body, headers=api.headers())
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def points_of(api: Api, external_id: str, **overrides: Any) -> int:
    response = await api.order(external_id, **overrides)
    assert response.status_code == 201, response.text
    points: int = response.json()["order"]["points_earned"]
    return points


async def test_life_cycle_default_rule_drafts_versions_pause_delete(api: Api) -> None:
    listed = (await api.client.get("/v1/rules", headers=api.headers())).json()["items"]
    [default] = listed
    assert (
        default["name"],
        default["is_default"],
        default["status"],
        default["priority"],
        default["stacking"],
    ) == (
        "Base earn rate",
        True,
        "active",
        0,
        "exclusive",
    )
    draft = await post_rule(api, SHOES_TRIPLE)
    assert (draft["status"], draft["version"]) == ("draft", 1)
    assert await points_of(api, "o-1") == 90  # a draft awards nothing
    edited = await patch_rule(api, draft["id"], {"effect": {"kind": "multiplier", "multiplier": "2"}})
    assert edited["version"] == 1  # a draft is edited in place
    active = await patch_rule(api, draft["id"], {"status": "active"})
    assert active["version"] == 1
    assert await points_of(api, "o-2") == 120 + 30
    await patch_rule(api, draft["id"], {"effect": {"kind": "multiplier", "multiplier": "4"}})
    assert await points_of(api, "o-3") == 240 + 30
    versions = (await api.client.get(f"/v1/rules/{draft['id']}/versions", headers=api.headers())).json()[
        "items"
    ]
    assert [(v["version"], v["definition"]["effect"]["multiplier"]) for v in versions] == [(2, "4"), (1, "2")]
    entries = fetch(
        api.client,
        "SELECT rule_version, points FROM points_entry WHERE rule_id = $1 ORDER BY id",
        draft["id"],
    )
    assert [(e["rule_version"], e["points"]) for e in entries] == [(1, 120), (2, 240)]

    await patch_rule(api, draft["id"], {"status": "paused"})  # the next order must not see the cached set
    assert await points_of(api, "o-4") == 90
    await patch_rule(api, draft["id"], {"status": "draft"}, status=422)
    filtered = (await api.client.get("/v1/rules?status=paused", headers=api.headers())).json()["items"]
    assert [r["id"] for r in filtered] == [draft["id"]]

    deleted = await api.client.delete(f"/v1/rules/{draft['id']}", headers=api.headers())
    assert deleted.status_code == 409 and deleted.json()["field"] == "path:rule_id"
    archived = await patch_rule(api, draft["id"], {"status": "archived"})
    assert archived["status"] == "archived"
    assert (await api.client.delete(f"/v1/rules/{default['id']}", headers=api.headers())).status_code == 409
    never_active = await post_rule(api, {**SHOES_TRIPLE, "name": "Never"})
    gone = await api.client.delete(f"/v1/rules/{never_active['id']}", headers=api.headers())
    assert gone.status_code == 204
    assert (await api.client.get(f"/v1/rules/{never_active['id']}", headers=api.headers())).status_code == 404

    # Pausing the default rule: base points stop too.
    await patch_rule(api, default["id"], {"status": "paused"})
    response = await api.order("o-5")
    assert response.json()["order"]["points_earned"] == 0
    assert response.json()["order"]["earn_explanation"] == "No rule matched: no points"
    verify_ledger(api.client)


async def test_create_is_idempotent_and_scoped(api: Api) -> None:
    first = await post_rule(api, SHOES_TRIPLE, **{"Idempotency-Key": "rule-1"})
    again = await post_rule(api, SHOES_TRIPLE, **{"Idempotency-Key": "rule-1"})
    assert again == first
    assert len(fetch(api.client, "SELECT id FROM rule WHERE NOT is_default")) == 1
    keys = {}
    for scope in ("server", "read"):
        created = await api.client.post(
            "/v1/api-keys", json={"name": scope, "scope": scope}, headers=api.headers(**idempotency())
        )
        keys[scope] = created.json()["api_key"]
    forbidden = await api.client.post(
        "/v1/rules", json=SHOES_TRIPLE, headers=api.headers(keys["server"], **idempotency())
    )
    assert forbidden.status_code == 403
    cart = {
        "customer": {"external_id": "nobody-yet"},
        "currency": "EUR",
        "total_amount": 6000,
        "lines": [{"sku": "S", "category": "Shoes", "quantity": 1, "unit_amount": 6000}],
    }
    quote = await api.client.post("/v1/orders/quote", json=cart, headers=api.headers(keys["read"]))
    assert quote.status_code == 200, quote.text
    assert quote.json()["points"] == 60  # the draft is not active
    assert (
        fetch(api.client, "SELECT count(*) AS n FROM customer WHERE external_id = 'nobody-yet'")[0]["n"] == 0
    )
    event = await api.client.post(
        "/v1/events",
        json={"type": "signup", "customer": {"external_id": "x"}},
        headers=api.headers(keys["read"]),
    )
    assert event.status_code == 403


async def test_window_times_without_offset_are_in_the_program_time_zone(api: Api, clock: FrozenClock) -> None:
    clock.set(START - timedelta(hours=2))
    patched = await api.client.patch(
        "/v1/program", json={"timezone": "Pacific/Auckland"}, headers=api.headers()
    )
    assert patched.status_code == 200
    # Auckland is UTC+13 in March: 2026-03-03T00:00 local = 2026-03-02T11:00Z, one hour before START.
    rule = await post_rule(
        api,
        {
            **SHOES_TRIPLE,
            "status": "active",
            "window": {"starts_at": "2026-03-03T00:00:00", "ends_at": "2026-03-03T01:00:00"},
        },
    )
    assert rule["window"]["starts_at"] == iso(START - timedelta(hours=1))
    assert rule["window"]["ends_at"] == iso(START)
    assert await points_of(api, "o-in", placed_at=(START - timedelta(minutes=1)).isoformat()) == 180 + 30
    assert await points_of(api, "o-out", placed_at=START.isoformat()) == 90
    # Its window has ended: pausing is fine, activating again is refused.
    clock.set(START + timedelta(days=1))
    await patch_rule(api, rule["id"], {"status": "paused"})
    refused = await patch_rule(api, rule["id"], {"status": "active"}, status=422)
    assert refused["field"] == "window.ends_at"


async def test_declared_event_types_and_event_rules(api: Api) -> None:
    body = {
        "name": "Store visit",
        "trigger": "store_visit",
        "status": "active",
        "effect": {"kind": "fixed", "points": 15},
    }
    refused = await post_rule(api, body, status=422)
    assert refused["field"] == "trigger"
    event = {"type": "store_visit", "customer": {"external_id": "c-7"}, "properties": {"store": "Riga"}}
    assert (
        await api.client.post("/v1/events", json=event, headers=api.headers(**{"Idempotency-Key": "visit-1"}))
    ).status_code == 422
    patched = await api.client.patch(
        "/v1/program",
        json={"event_types": ["store_visit"]},
        headers=api.headers(**{"Idempotency-Key": "visit-2"}),
    )
    assert patched.json()["event_types"] == ["store_visit"]
    rate = await post_rule(api, {**body, "effect": {"kind": "rate", "rates": {"EUR": "1"}}}, status=422)
    assert rate["field"] == "effect.kind"
    await post_rule(api, {**body, "caps": {"per_customer_lifetime": 20}})
    first = (
        await api.client.post("/v1/events", json=event, headers=api.headers(**{"Idempotency-Key": "visit-3"}))
    ).json()
    assert (first["result"], first["points"]) == ("awarded", 15)
    assert first["entries"][0]["explanation"] == "Store visit v1: 15 points"
    second = (
        await api.client.post("/v1/events", json=event, headers=api.headers(**{"Idempotency-Key": "visit-4"}))
    ).json()
    assert (second["result"], second["points"]) == ("awarded", 5)
    assert "capped by the 20 points per customer in total: 5 left" in second["explanation"]
    third = (
        await api.client.post("/v1/events", json=event, headers=api.headers(**{"Idempotency-Key": "visit-5"}))
    ).json()
    assert (third["result"], third["points"]) == ("no rule matched", 0)
    status = await api.status("c-7")
    assert status["points"]["available"] == 20  # no return window for events
    future = await api.client.post(
        "/v1/events",
        json={**event, "occurred_at": iso(START + timedelta(days=2))},
        headers=api.headers(**{"Idempotency-Key": "visit-6"}),
    )
    assert future.status_code == 422 and future.json()["field"] == "occurred_at"


async def test_an_order_rule_that_fails_at_run_time_never_fails_the_order(api: Api) -> None:
    rule = await post_rule(
        api,
        {
            "name": "Gift wrap bonus",
            "status": "active",
            "conditions": {"field": "order.attributes.gift_wrap", "op": "gte", "value": 3},
            "effect": {"kind": "fixed", "points": 40},
        },
    )
    response = await api.order("o-1", attributes={"gift_wrap": "yes"})
    assert response.status_code == 201, response.text
    assert response.json()["order"]["points_earned"] == 90
    assert response.json()["order"]["attributes"] == {"gift_wrap": "yes"}
    after = (await api.client.get(f"/v1/rules/{rule['id']}", headers=api.headers())).json()
    assert after["problems"]["count"] == 1
    assert "cannot compare str 'yes'" in after["problems"]["last_error"]
    assert await points_of(api, "o-2", attributes={"gift_wrap": 3}) == 130


async def test_customer_cap_holds_under_concurrent_orders_of_one_customer(api: Api) -> None:
    rule = await post_rule(
        api,
        {
            "name": "Visit bonus",
            "status": "active",
            "effect": {"kind": "fixed", "points": 100},
            "caps": {"per_customer_day": 250},
        },
    )
    responses = await asyncio.gather(*(api.order(f"o-{i}", customer="c-busy") for i in range(12)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    given = fetch(api.client, "SELECT sum(points) AS points FROM points_entry WHERE rule_id = $1", rule["id"])
    assert given[0]["points"] == 250
    verify_ledger(api.client)


async def test_simulation_modes_and_budget(api: Api, clock: FrozenClock) -> None:
    clock.set(START + timedelta(days=3))
    for day in range(3):
        await api.order(f"o-{day}", customer="c-1", placed_at=(START + timedelta(days=day)).isoformat())
    fixed = await post_rule(
        api, {"name": "Flat 10", "effect": {"kind": "fixed", "points": 10}, "budget_points": 25}
    )
    period = {"from": iso(START), "to": iso(START + timedelta(days=3))}
    before = table_counts(api.client)
    added = (
        await api.client.post(f"/v1/rules/{fixed['id']}/simulate", json=period, headers=api.headers())
    ).json()
    assert (added["extra_points"], added["orders_affected"]) == (25, 3)  # 10 + 10 + 5: the budget binds
    replaced = (
        await api.client.post(
            f"/v1/rules/{fixed['id']}/simulate", json={**period, "mode": "replace_all"}, headers=api.headers()
        )
    ).json()
    assert replaced["extra_points"] == 25 - 3 * 90
    assert replaced["top_customers"] == [
        {"customer_external_id": "c-1", "orders": 3, "extra_points": 25 - 270}
    ]
    bad = await api.client.post(
        f"/v1/rules/{fixed['id']}/simulate",
        json={"from": period["to"], "to": period["from"]},
        headers=api.headers(),
    )
    assert bad.status_code == 422 and bad.json()["field"] == "to"
    assert table_counts(api.client) == before
