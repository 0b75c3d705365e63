"""Service recovery over HTTP: an agent's key puts things right from the monthly budget (points, a code,
a gift, a tier gesture), explained on the ledger; over budget nothing changes; the budget per agent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import START, Api, fetch, idempotency, table_counts, verify_ledger


async def agent_key(api: Api, name: str = "Mira") -> str:
    made = await api.client.post(
        "/v1/api-keys", json={"name": name, "scope": "agent"}, headers=api.headers(**idempotency())
    )
    assert made.status_code == 201, made.text
    key: str = made.json()["api_key"]
    return key


async def settings(api: Api, amount: int = 5000, agent: int | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"monthly_budget": {"amount": amount, "currency": "EUR"}, **extra}
    if agent is not None:
        body["agent_monthly_budget"] = {"amount": agent, "currency": "EUR"}
    put = await api.client.put("/v1/recovery/settings", json=body, headers=api.headers())
    assert put.status_code == 200, put.text
    result: dict[str, Any] = put.json()
    return result


async def complain(api: Api, customer: str = "c-1", idem: str | None = None, **fields: Any) -> dict[str, Any]:
    """A complaint event (it opens a case): the 202 answer, with `id` and `case_id`."""
    body = {"type": "complaint", "customer": {"external_id": customer}, **fields}
    headers = api.headers(**({"Idempotency-Key": idem} if idem else idempotency()))
    made = await api.client.post("/v1/events", json=body, headers=headers)
    assert made.status_code == 202, made.text
    result: dict[str, Any] = made.json()
    return result


async def recover(api: Api, key: str, body: dict[str, Any], customer: str = "c-1") -> Any:
    return await api.client.post(
        f"/v1/customers/{customer}/recovery", json=body, headers=api.headers(key, **idempotency())
    )


async def test_points_from_the_budget_explained_on_the_ledger(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira = await agent_key(api)
    await settings(api, 5000)
    made = await recover(api, mira, {"reason": "parcel lost", "action": {"kind": "points", "points": 500}})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["explanation"] == "Recovery by Mira: parcel lost — 500 points"
    assert body["cost"] == {"amount": 500, "currency": "EUR"}
    assert body["budget_left"] == {"amount": 4500, "currency": "EUR"}
    assert [e["explanation"] for e in body["entries"]] == ["Recovery by Mira: parcel lost — 500 points"]
    status = await api.status()
    assert status["points"]["available"] == 500
    budget = (await api.client.get("/v1/recovery/budget", headers=api.headers(mira))).json()
    assert budget["used"]["amount"] == 500 and budget["left"]["amount"] == 4500
    assert [(a["name"], a["used"]["amount"]) for a in budget["agents"]] == [("Mira", 500)]
    verify_ledger(api.client)


async def test_over_budget_is_409_with_what_is_left_and_changes_nothing(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira = await agent_key(api)
    await settings(api, 300)
    before = table_counts(api.client)
    refused = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 500}})
    assert refused.status_code == 409, refused.text
    assert refused.json()["left"] == {"amount": 300, "currency": "EUR"}
    assert table_counts(api.client) == before


async def test_a_complaint_opens_a_case_and_its_times_are_measured(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira = await agent_key(api)
    await settings(api, 5000)
    complaint = await complain(api, properties={"reason": "parcel lost"})
    case_id = complaint["case_id"]
    assert case_id
    status = await api.status()
    assert [c["summary"] for c in status["open_cases"]] == ["parcel lost"]
    clock.advance(timedelta(minutes=10))
    made = await recover(
        api,
        mira,
        {
            "reason": "parcel lost",
            "action": {"kind": "points", "points": 500},
            "complaint_id": complaint["id"],
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["case_id"] == case_id
    clock.advance(timedelta(minutes=50))
    closed = await api.client.post(
        f"/v1/cases/{case_id}/close",
        json={"note": "points given"},
        headers=api.headers(mira, **idempotency()),
    )
    assert closed.status_code == 200, closed.text
    case = closed.json()
    assert case["time_to_first_action_seconds"] == 600
    assert case["time_to_resolution_seconds"] == 3600
    assert case["agent"]["name"] == "Mira"
    assert [e["kind"] for e in case["entries"]] == ["opened", "recovery", "closed"]
    again = await api.client.post(
        f"/v1/cases/{case_id}/close", json={"note": "again"}, headers=api.headers(mira, **idempotency())
    )
    assert again.status_code == 409
    assert (await api.status())["open_cases"] == []
    listed = (await api.client.get("/v1/cases?status=closed", headers=api.headers(mira))).json()
    assert [c["id"] for c in listed["items"]] == [case_id]
    assert fetch(api.client, "SELECT count(*) AS n FROM outbox WHERE topic LIKE 'case.%'")[0]["n"] == 2


async def test_an_agent_key_on_an_admin_route_is_403(api: Api) -> None:
    mira = await agent_key(api)
    adjusted = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5, "reason": "x"},
        headers=api.headers(mira, **idempotency()),
    )
    assert adjusted.status_code == 403


# --- each action ------------------------------------------------------------------------------------------


async def customer(api: Api, external_id: str = "c-1") -> None:
    made = await api.client.put(f"/v1/customers/{external_id}", json={"name": "Ann"}, headers=api.headers())
    assert made.status_code in (200, 201), made.text


async def post(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    made = await api.client.post(path, json=body, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def amount_off(api: Api, name: str, amount: int, **extra: Any) -> dict[str, Any]:
    """A catalogue reward of a fixed value in EUR."""
    body = {"kind": "amount_off", "name": {"en": name}, "amount": {"amount": amount, "currency": "EUR"}}
    return await post(api, "/v1/rewards", {**body, **extra})


async def test_a_reward_as_a_code_at_its_fixed_value_else_its_points_price(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 5000)
    five = await amount_off(api, "EUR 5 off", 500, cost_points=50)
    made = await recover(
        api, mira, {"reason": "parcel lost", "action": {"kind": "reward", "reward_id": five["id"]}}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    code = body["given"]["code"]
    assert body["given"]["kind"] == "reward" and body["given"]["reward_name"] == {"en": "EUR 5 off"}
    assert body["cost"] == {"amount": 500, "currency": "EUR"}  # its fixed value, not its 50 points
    assert body["budget_left"] == {"amount": 4500, "currency": "EUR"}
    assert body["explanation"] == f"Recovery by Mira: parcel lost — code {code} for EUR 5 off"
    assert [(e["kind"], e["points"], e["explanation"]) for e in body["entries"]] == [
        ("recovery", 0, f"Recovery by Mira: parcel lost — code {code} for EUR 5 off")
    ]
    [redemption] = fetch(api.client, "SELECT source, points, code FROM redemption")
    assert (redemption["source"], redemption["points"], redemption["code"]) == ("recovery", 0, code)
    status = await api.status()
    assert status["points"]["available"] == 0  # a code at no cost: no points spent
    assert [c["code"] for c in status["open_codes"]] == [code]
    # A percent off has no fixed value: priced at its points at the program's point value (5 cents per
    # 100 points: 130 points are 6.5 cents, rounded up to 7 so that a budget never pays 0).
    patched = await api.client.patch(
        "/v1/program", json={"point_value": {"amount": 5, "points": 100}}, headers=api.headers()
    )
    assert patched.status_code == 200, patched.text
    percent = await post(
        api,
        "/v1/rewards",
        {"kind": "percent_off", "name": {"en": "10 % off"}, "cost_points": 130, "percent": 10},
    )
    priced = await recover(
        api, mira, {"reason": "late", "action": {"kind": "reward", "reward_id": percent["id"]}}
    )
    assert priced.status_code == 201, priced.text
    assert priced.json()["cost"] == {"amount": 7, "currency": "EUR"}
    assert priced.json()["budget_left"] == {"amount": 4493, "currency": "EUR"}
    assert (
        priced.json()["explanation"]
        == f"Recovery by Mira: late — code {priced.json()['given']['code']} for 10 % off"
    )
    # The agent names no price of their own; a points_for_discount reward is worth the points spent on it.
    discount = await post(
        api,
        "/v1/rewards",
        {
            "kind": "points_for_discount",
            "name": {"en": "Points off"},
            "points_step": 100,
            "step_amount": {"amount": 100, "currency": "EUR"},
        },
    )
    before = table_counts(api.client)
    named = await recover(
        api,
        mira,
        {
            "reason": "late",
            "action": {
                "kind": "reward",
                "reward_id": percent["id"],
                "cost": {"amount": 1, "currency": "EUR"},
            },
        },
    )
    assert (named.status_code, named.json()["field"]) == (422, "action.cost"), named.text
    spent = await recover(
        api, mira, {"reason": "late", "action": {"kind": "reward", "reward_id": discount["id"]}}
    )
    assert (spent.status_code, spent.json()["field"]) == (422, "action.reward_id"), spent.text
    assert table_counts(api.client) == before
    archived = await api.client.patch(
        f"/v1/rewards/{five['id']}", json={"status": "archived"}, headers=api.headers()
    )
    assert archived.status_code == 200, archived.text
    before = table_counts(api.client)
    old = await recover(api, mira, {"reason": "late", "action": {"kind": "reward", "reward_id": five["id"]}})
    assert (old.status_code, old.json()["field"]) == (422, "action.reward_id"), old.text
    assert table_counts(api.client) == before
    # A reward that cannot be granted now (out of stock): 409 naming it, nothing changed, nothing spent.
    gone = await amount_off(api, "Sold out", 500, cost_points=50, stock=0)
    before = table_counts(api.client)
    out = await recover(api, mira, {"reason": "late", "action": {"kind": "reward", "reward_id": gone["id"]}})
    assert out.status_code == 409 and out.json()["field"] == "action.reward_id", out.text
    assert out.json()["detail"] == "the reward cannot be given now: this reward is out of stock"
    assert table_counts(api.client) == before
    budget = (await api.client.get("/v1/recovery/budget", headers=api.headers())).json()
    assert (budget["used"]["amount"], budget["recoveries"]) == (507, 2)
    verify_ledger(api.client)


async def test_an_agent_cannot_price_a_reward_below_its_value(api: Api) -> None:
    # An EUR 5 code is worth EUR 5 to the budget: an agent cannot name it "EUR 0" and pass a budget of 0.
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 0)
    five = await amount_off(api, "EUR 5 off", 500, cost_points=50)
    before = table_counts(api.client)
    free = await recover(
        api,
        mira,
        {
            "reason": "late",
            "action": {"kind": "reward", "reward_id": five["id"], "cost": {"amount": 0, "currency": "EUR"}},
        },
    )
    assert (free.status_code, free.json()["field"]) == (422, "action.cost"), free.text
    refused = await recover(
        api, mira, {"reason": "late", "action": {"kind": "reward", "reward_id": five["id"]}}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "urn:encore:problem:recovery-over-budget"
    assert refused.json()["cost"] == {"amount": 500, "currency": "EUR"}
    assert table_counts(api.client) == before


async def test_a_gift_rule_gives_its_gift_at_once(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 5000)
    rule = await post(
        api,
        "/v1/gift-rules",
        {
            "name": "Sorry",
            "trigger": {"kind": "nth_order", "n": 3},
            "gifts": [{"kind": "points", "points": 200}],
            "holdout": "0",
            "status": "active",
        },
    )
    paused = await api.client.patch(
        f"/v1/gift-rules/{rule['id']}", json={"status": "paused"}, headers=api.headers()
    )
    assert paused.status_code == 200, paused.text  # a template for the agents: no order triggers it
    made = await recover(
        api, mira, {"reason": "late", "action": {"kind": "gift", "gift_rule_id": rule["id"]}}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["given"]["kind"] == "gift" and body["given"]["gift_rule_name"] == "Sorry"
    assert body["given"]["gifts"] == [{"kind": "points", "points": 200}]
    assert body["cost"] == {"amount": 200, "currency": "EUR"}
    assert body["explanation"] == "Recovery by Mira: late — gift 'Sorry': 200 points"
    assert [(e["kind"], e["points"]) for e in body["entries"]] == [("gift", 200), ("recovery", 0)]
    assert body["entries"][1]["explanation"] == "Recovery by Mira: late — gift 'Sorry': 200 points"
    assert (await api.status())["points"]["available"] == 200
    [gift] = fetch(api.client, "SELECT outcome FROM gift")
    assert gift["outcome"] == "recovery"
    before = table_counts(api.client)
    unknown = await recover(
        api,
        mira,
        {
            "reason": "late",
            "action": {"kind": "gift", "gift_rule_id": "6f1c1c1e-0000-4000-8000-000000000000"},
        },
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "action.gift_rule_id", unknown.text
    archived = await api.client.patch(
        f"/v1/gift-rules/{rule['id']}", json={"status": "archived"}, headers=api.headers()
    )
    assert archived.status_code == 200, archived.text
    before = table_counts(api.client)
    gone = await recover(
        api, mira, {"reason": "late", "action": {"kind": "gift", "gift_rule_id": rule["id"]}}
    )
    assert gone.status_code == 422 and gone.json()["field"] == "action.gift_rule_id", gone.text
    assert table_counts(api.client) == before
    verify_ledger(api.client)


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
}


async def test_a_tier_gesture_priced_per_month_held_until_months_later(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201  # 90 EUR: no tier by spend
    mira = await agent_key(api)
    await post(api, "/v1/tiers", SILVER)
    await post(api, "/v1/tiers", GOLD)
    await settings(api, 5000, tier_month_values={"gold": {"amount": 1000, "currency": "EUR"}})
    made = await recover(
        api, mira, {"reason": "parcel lost", "action": {"kind": "tier", "tier": "gold", "months": 3}}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["given"] == {"kind": "tier", "tier": "gold", "until": "2026-06-02T12:00:00Z"}
    assert body["cost"] == {"amount": 3000, "currency": "EUR"}
    assert body["budget_left"] == {"amount": 2000, "currency": "EUR"}
    assert body["explanation"] == "Recovery by Mira: parcel lost — Gold until 2026-06-02"
    assert [(e["kind"], e["points"], e["explanation"]) for e in body["entries"]] == [
        ("recovery", 0, "Recovery by Mira: parcel lost — Gold until 2026-06-02")
    ]
    tier = (await api.client.get("/v1/customers/c-1/tier", headers=api.headers())).json()
    assert (tier["tier"]["key"], tier["source"], tier["manual_until"]) == (
        "gold",
        "manual",
        "2026-06-02T12:00:00Z",
    )
    before = table_counts(api.client)
    lower = await recover(
        api, mira, {"reason": "late", "action": {"kind": "tier", "tier": "silver", "months": 6}}
    )
    assert lower.status_code == 422 and lower.json()["field"] == "action.tier", lower.text
    shorter = await recover(
        api, mira, {"reason": "late", "action": {"kind": "tier", "tier": "gold", "months": 2}}
    )
    assert shorter.status_code == 422 and shorter.json()["field"] == "action.months", shorter.text
    unknown = await recover(
        api, mira, {"reason": "late", "action": {"kind": "tier", "tier": "platinum", "months": 1}}
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "action.tier", unknown.text
    assert table_counts(api.client) == before
    # Longer: the gesture is extended, and paid for all its months again.
    longer = await recover(
        api, mira, {"reason": "late", "action": {"kind": "tier", "tier": "gold", "months": 4}}
    )
    assert longer.status_code == 409, longer.text  # 4000 does not fit the 2000 left
    assert longer.json()["left"] == {"amount": 2000, "currency": "EUR"}
    assert longer.json()["cost"] == {"amount": 4000, "currency": "EUR"}
    verify_ledger(api.client)


async def test_a_tier_gesture_in_the_programs_zone(api: Api) -> None:
    await api.client.patch("/v1/program", json={"timezone": "Pacific/Auckland"}, headers=api.headers())
    await customer(api)
    mira = await agent_key(api)
    await post(api, "/v1/tiers", SILVER)
    # 12:00 UTC on 2 March is 01:00 NZDT on 3 March; three months on: 01:00 NZST on 3 June, 13:00 UTC 2 June.
    made = await recover(
        api, mira, {"reason": "sorry", "action": {"kind": "tier", "tier": "silver", "months": 3}}
    )
    assert made.status_code == 201, made.text
    assert made.json()["given"]["until"] == "2026-06-02T13:00:00Z"
    assert made.json()["explanation"] == "Recovery by Mira: sorry — Silver until 2026-06-03"
    assert made.json()["month"] == "2026-03"
    assert made.json()["cost"] == {"amount": 0, "currency": "EUR"}  # an unpriced tier costs nothing


# --- the budget per agent ---------------------------------------------------------------------------------


async def test_an_agent_at_its_cap_is_refused_and_another_still_can(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api, "Mira")
    jonas = await agent_key(api, "Jonas")
    await settings(api, 5000, agent=600)
    idle = (await api.client.get("/v1/recovery/budget", headers=api.headers())).json()
    # Every agent key, before it spent; the admin key only once it has. (Keys made at one frozen instant
    # have no order between them.)
    assert sorted(
        (a["name"], a["recoveries"], a["used"]["amount"], a["left"]["amount"]) for a in idle["agents"]
    ) == [("Jonas", 0, 0, 600), ("Mira", 0, 0, 600)]
    first = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 500}})
    assert first.status_code == 201, first.text
    assert first.json()["agent_left"] == {"amount": 100, "currency": "EUR"}
    assert first.json()["budget_left"] == {"amount": 4500, "currency": "EUR"}
    before = table_counts(api.client)
    capped = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 200}})
    assert capped.status_code == 409, capped.text
    problem = capped.json()
    assert problem["type"] == "urn:encore:problem:recovery-over-budget"
    assert problem["month"] == "2026-03"
    assert problem["cost"] == {"amount": 200, "currency": "EUR"}
    assert problem["left"] == {"amount": 4500, "currency": "EUR"}
    assert problem["agent_left"] == {"amount": 100, "currency": "EUR"}
    assert problem["detail"] == "this costs EUR 2.00; Mira's recovery budget for 2026-03 has EUR 1.00 left"
    assert table_counts(api.client) == before
    other = await recover(api, jonas, {"reason": "late", "action": {"kind": "points", "points": 200}})
    assert other.status_code == 201, other.text
    assert other.json()["agent_left"] == {"amount": 400, "currency": "EUR"}
    assert other.json()["budget_left"] == {"amount": 4300, "currency": "EUR"}
    exact = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 100}})
    assert exact.status_code == 201 and exact.json()["agent_left"] == {"amount": 0, "currency": "EUR"}
    budget = (await api.client.get("/v1/recovery/budget", headers=api.headers(jonas))).json()
    assert (
        budget["month"],
        budget["budget"]["amount"],
        budget["used"]["amount"],
        budget["left"]["amount"],
    ) == (
        "2026-03",
        5000,
        800,
        4200,
    )
    assert budget["recoveries"] == 3
    assert budget["agent_monthly_budget"] == {"amount": 600, "currency": "EUR"}
    agents = {
        a["name"]: (a["scope"], a["recoveries"], a["used"]["amount"], a["left"]["amount"])
        for a in budget["agents"]
    }
    assert agents == {"Mira": ("agent", 2, 600, 0), "Jonas": ("agent", 1, 200, 400)}
    # The program's budget binds too: Jonas' cap has room, the program's has not.
    await settings(api, 900, agent=600)
    program_bound = await recover(api, jonas, {"reason": "late", "action": {"kind": "points", "points": 150}})
    assert program_bound.status_code == 409, program_bound.text
    assert program_bound.json()["left"] == {"amount": 100, "currency": "EUR"}
    assert program_bound.json()["agent_left"] == {"amount": 400, "currency": "EUR"}
    assert "the program's recovery budget for 2026-03 has EUR 1.00 left" in program_bound.json()["detail"]


# --- bad input --------------------------------------------------------------------------------------------


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    assert (await api.order("o-2", customer="c-2")).status_code == 201
    mira = await agent_key(api)
    await settings(api, 5000)
    other_complaint = await complain(api, "c-2", properties={"reason": "rude"})
    points = {"kind": "points", "points": 100}
    nobody = "6f1c1c1e-0000-4000-8000-000000000000"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"action": points}, 422, "reason"),
        ({"reason": "", "action": points}, 422, "reason"),
        ({"reason": "x" * 501, "action": points}, 422, "reason"),
        ({"reason": "late"}, 422, "action"),
        ({"reason": "late", "action": {"kind": "points", "points": -5}}, 422, "action.points"),
        ({"reason": "late", "action": {"kind": "points", "points": 0}}, 422, "action.points"),
        ({"reason": "late", "action": {"kind": "points", "points": "5"}}, 422, "action.points"),
        ({"reason": "late", "action": {"kind": "points"}}, 422, "action.points"),
        ({"reason": "late", "action": {"kind": "cash", "amount": 5}}, 422, "action.kind"),
        ({"reason": "late", "action": {"points": 5}}, 422, "action.kind"),
        ({"reason": "late", "action": {**points, "bonus": 1}}, 422, "action.bonus"),
        ({"reason": "late", "action": points, "note": "hi"}, 422, "note"),
        ({"reason": "late", "action": {"kind": "tier", "tier": "gold", "months": 0}}, 422, "action.months"),
        ({"reason": "late", "action": {"kind": "tier", "tier": "gold", "months": 25}}, 422, "action.months"),
        (
            {"reason": "late", "action": {"kind": "reward", "reward_id": "not-a-uuid"}},
            422,
            "action.reward_id",
        ),
        (
            {
                "reason": "late",
                "action": {"kind": "reward", "reward_id": nobody, "cost": {"amount": 1, "currency": "EUR"}},
            },
            422,
            "action.cost",
        ),
        ({"reason": "late", "action": points, "order": "o-2"}, 422, "order"),
        ({"reason": "late", "action": points, "order": "o-nope"}, 404, "order"),
        (
            {"reason": "late", "action": points, "complaint_id": other_complaint["id"]},
            422,
            "complaint_id",
        ),
        ({"reason": "late", "action": points, "complaint_id": nobody}, 404, "complaint_id"),
        ({"reason": "late", "action": points, "case_id": other_complaint["case_id"]}, 422, "case_id"),
        ({"reason": "late", "action": points, "case_id": nobody}, 404, "case_id"),
    ]
    before = table_counts(api.client)
    for body, status, field in cases:
        refused = await recover(api, mira, body)
        assert (refused.status_code, refused.json().get("field")) == (status, field), (body, refused.text)
    unknown_customer = await recover(api, mira, {"reason": "late", "action": points}, customer="nobody")
    assert unknown_customer.status_code == 404, unknown_customer.text
    assert unknown_customer.json()["field"] == "path:external_id"
    no_key = await api.client.post(
        "/v1/customers/c-1/recovery", json={"reason": "late", "action": points}, headers=api.headers(mira)
    )
    assert no_key.status_code == 400, no_key.text
    assert no_key.json()["field"] == "header:Idempotency-Key"
    not_json = await api.client.post(
        "/v1/customers/c-1/recovery", content=b"{", headers=api.headers(mira, **idempotency())
    )
    assert not_json.status_code == 400, not_json.text
    assert table_counts(api.client) == before


async def test_an_unknown_reward_is_404_naming_the_field(api: Api) -> None:
    # As an unknown gift rule, order, complaint or case of the same request is; and nothing changes.
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 5000)
    before = table_counts(api.client)
    unknown = await recover(
        api,
        mira,
        {"reason": "late", "action": {"kind": "reward", "reward_id": "6f1c1c1e-0000-4000-8000-000000000000"}},
    )
    assert unknown.json()["field"] == "action.reward_id", unknown.text
    assert table_counts(api.client) == before
    assert unknown.status_code == 404, unknown.text


async def test_a_blank_reason_is_refused_as_for_adjustments(api: Api) -> None:
    # As an adjustment's (ledger.service.manual_adjustment): "Recovery by Mira:     — 5 points" would explain
    # nothing on the customer's ledger.
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 5000)
    before = table_counts(api.client)
    blank = await recover(api, mira, {"reason": "   ", "action": {"kind": "points", "points": 5}})
    assert table_counts(api.client) == before, blank.text
    assert (blank.status_code, blank.json()["field"]) == (422, "reason"), blank.text


async def test_points_are_priced_rounded_up_so_small_grants_add_up(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 3)
    patched = await api.client.patch(
        "/v1/program", json={"point_value": {"amount": 5, "points": 100}}, headers=api.headers()
    )
    assert patched.status_code == 200, patched.text
    for left in (2, 1, 0):  # 1 point is 0.05 cents: 1 cent each, never 0
        made = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 1}})
        assert made.status_code == 201, made.text
        assert made.json()["cost"] == {"amount": 1, "currency": "EUR"}
        assert made.json()["budget_left"] == {"amount": left, "currency": "EUR"}
    refused = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 1}})
    assert refused.status_code == 409, refused.text
    big = await api.client.put(
        "/v1/recovery/settings",
        json={"monthly_budget": {"amount": 100, "currency": "EUR"}},
        headers=api.headers(),
    )
    assert big.status_code == 200
    exact = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 200}})
    assert exact.json()["cost"] == {"amount": 10, "currency": "EUR"}  # 200 points are 10 cents exactly
    odd = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 201}})
    assert odd.json()["cost"] == {"amount": 11, "currency": "EUR"}  # 10.05 cents: 11


async def test_a_recovery_on_a_closed_case_is_409_and_changes_nothing(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 5000)
    case = await api.client.post(
        "/v1/cases",
        json={"customer": "c-1", "summary": "parcel lost"},
        headers=api.headers(mira, **idempotency()),
    )
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    closed = await api.client.post(
        f"/v1/cases/{case_id}/close", json={"note": "found it"}, headers=api.headers(mira, **idempotency())
    )
    assert closed.status_code == 200, closed.text
    before = table_counts(api.client)
    refused = await recover(
        api, mira, {"reason": "late", "action": {"kind": "points", "points": 100}, "case_id": case_id}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "urn:encore:problem:case-closed"
    assert refused.json()["field"] == "case_id"
    assert table_counts(api.client) == before


# --- idempotency, months, settings ------------------------------------------------------------------------


async def test_the_same_key_and_body_replay_the_answer_once(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 5000)
    body = {"reason": "parcel lost", "action": {"kind": "points", "points": 500}}
    headers = api.headers(mira, **idempotency())
    first = await api.client.post("/v1/customers/c-1/recovery", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await api.client.post("/v1/customers/c-1/recovery", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await api.client.post(
        "/v1/customers/c-1/recovery", json={**body, "reason": "something else"}, headers=headers
    )
    assert other.status_code == 409, other.text
    assert [r["id"] for r in fetch(api.client, "SELECT id::text FROM recovery")] == [first.json()["id"]]
    assert (await api.status())["points"]["available"] == 500
    budget = (await api.client.get("/v1/recovery/budget", headers=api.headers())).json()
    assert (budget["used"]["amount"], budget["recoveries"]) == (500, 1)


async def test_a_new_month_has_a_fresh_budget_and_the_old_one_keeps_its_spend(
    api: Api, clock: FrozenClock
) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 1000)
    assert (
        await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 800}})
    ).status_code == 201
    full = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 300}})
    assert full.status_code == 409 and full.json()["left"] == {"amount": 200, "currency": "EUR"}
    clock.advance(timedelta(days=30))  # 1 April, 12:00 UTC
    fresh = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 300}})
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["month"] == "2026-04"
    assert fresh.json()["budget_left"] == {"amount": 700, "currency": "EUR"}
    now = (await api.client.get("/v1/recovery/budget", headers=api.headers(mira))).json()
    assert (now["month"], now["used"]["amount"], now["left"]["amount"], now["recoveries"]) == (
        "2026-04",
        300,
        700,
        1,
    )
    march = (await api.client.get("/v1/recovery/budget?month=2026-03", headers=api.headers(mira))).json()
    assert (march["month"], march["used"]["amount"], march["left"]["amount"], march["recoveries"]) == (
        "2026-03",
        800,
        200,
        1,
    )
    assert [(a["name"], a["used"]["amount"]) for a in march["agents"]] == [("Mira", 800)]
    empty = (await api.client.get("/v1/recovery/budget?month=2025-12", headers=api.headers(mira))).json()
    assert (empty["used"]["amount"], empty["left"]["amount"], empty["recoveries"]) == (0, 1000, 0)
    for bad in ("2026-13", "2026-3", "march", "2026-00", "2026-03-01"):
        refused = await api.client.get(f"/v1/recovery/budget?month={bad}", headers=api.headers(mira))
        # A bad query parameter is 422 naming it, as everywhere in the API.
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["field"] == "query:month", refused.text


async def test_the_budget_month_is_the_programs_local_month(api: Api, clock: FrozenClock) -> None:
    await api.client.patch("/v1/program", json={"timezone": "Europe/Berlin"}, headers=api.headers())
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 1000)
    clock.set(clock.now().replace(month=3, day=31, hour=22, minute=30))  # 00:30 CEST on 1 April
    made = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 100}})
    assert made.status_code == 201 and made.json()["month"] == "2026-04", made.text


async def test_settings_defaults_and_checks(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    defaults = await api.client.get("/v1/recovery/settings", headers=api.headers(mira))
    assert defaults.status_code == 200, defaults.text
    assert defaults.json() == {
        "monthly_budget": {"amount": 0, "currency": "EUR"},
        "agent_monthly_budget": None,
        "tier_month_values": {},
        "updated_at": None,
    }
    # Budget 0 (never set): a points recovery costs money and is refused ...
    before = table_counts(api.client)
    refused = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 1}})
    assert refused.status_code == 409, refused.text
    assert refused.json()["left"] == {"amount": 0, "currency": "EUR"}
    assert refused.json()["agent_left"] is None
    assert table_counts(api.client) == before
    # ... but a gesture of a tier without a price costs nothing and passes.
    await post(api, "/v1/tiers", SILVER)
    await post(api, "/v1/tiers", GOLD)
    free = await recover(
        api, mira, {"reason": "late", "action": {"kind": "tier", "tier": "silver", "months": 1}}
    )
    assert free.status_code == 201, free.text
    assert free.json()["cost"] == {"amount": 0, "currency": "EUR"}
    assert free.json()["budget_left"] == {"amount": 0, "currency": "EUR"}
    bad: list[tuple[dict[str, Any], str]] = [
        (
            {
                "monthly_budget": {"amount": 100, "currency": "EUR"},
                "tier_month_values": {"platinum": {"amount": 100, "currency": "EUR"}},
            },
            "tier_month_values.platinum",
        ),
        ({"monthly_budget": {"amount": 100, "currency": "USD"}}, "monthly_budget.currency"),
        (
            {
                "monthly_budget": {"amount": 100, "currency": "EUR"},
                "agent_monthly_budget": {"amount": 5, "currency": "GBP"},
            },
            "agent_monthly_budget.currency",
        ),
        (
            {
                "monthly_budget": {"amount": 100, "currency": "EUR"},
                "tier_month_values": {"gold": {"amount": 100, "currency": "USD"}},
            },
            "tier_month_values.gold.currency",
        ),
        ({"monthly_budget": {"amount": -1, "currency": "EUR"}}, "monthly_budget.amount"),
        ({}, "monthly_budget"),
        ({"monthly_budget": {"amount": 100, "currency": "EUR"}, "daily_budget": 5}, "daily_budget"),
    ]
    for body, field in bad:
        put = await api.client.put("/v1/recovery/settings", json=body, headers=api.headers())
        assert (put.status_code, put.json().get("field")) == (422, field), (body, put.text)
    assert (await api.client.get("/v1/recovery/settings", headers=api.headers())).json()["updated_at"] is None
    by_agent = await api.client.put(
        "/v1/recovery/settings",
        json={"monthly_budget": {"amount": 100, "currency": "EUR"}},
        headers=api.headers(mira),
    )
    assert by_agent.status_code == 403
    stored = await settings(
        api, 2500, agent=400, tier_month_values={"gold": {"amount": 700, "currency": "EUR"}}
    )
    assert stored == {
        "monthly_budget": {"amount": 2500, "currency": "EUR"},
        "agent_monthly_budget": {"amount": 400, "currency": "EUR"},
        "tier_month_values": {"gold": {"amount": 700, "currency": "EUR"}},
        "updated_at": "2026-03-02T12:00:00Z",
    }
    assert (await api.client.get("/v1/recovery/settings", headers=api.headers(mira))).json() == stored


async def test_admin_adjustments_do_not_spend_the_recovery_budget(api: Api) -> None:
    await customer(api)
    mira = await agent_key(api)
    await settings(api, 1000)
    adjusted = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5000, "reason": "goodwill"},
        headers=api.headers(**idempotency()),
    )
    assert adjusted.status_code == 201, adjusted.text
    budget = (await api.client.get("/v1/recovery/budget", headers=api.headers())).json()
    assert (budget["used"]["amount"], budget["left"]["amount"], budget["recoveries"]) == (0, 1000, 0)
    assert fetch(api.client, "SELECT count(*) AS n FROM recovery")[0]["n"] == 0
    made = await recover(api, mira, {"reason": "late", "action": {"kind": "points", "points": 1000}})
    assert made.status_code == 201, made.text  # the whole budget still there
    assert made.json()["budget_left"] == {"amount": 0, "currency": "EUR"}
    assert (await api.status())["points"]["available"] == 6000
    # An admin key may recover too; it spends the budget in its own name.
    await settings(api, 1100)
    by_admin = await api.client.post(
        "/v1/customers/c-1/recovery",
        json={"reason": "late", "action": {"kind": "points", "points": 100}},
        headers=api.headers(**idempotency()),
    )
    assert by_admin.status_code == 201, by_admin.text
    assert by_admin.json()["explanation"] == "Recovery by initial admin key: late — 100 points"
    budget = (await api.client.get("/v1/recovery/budget", headers=api.headers())).json()
    assert (budget["used"]["amount"], budget["left"]["amount"]) == (1100, 0)
    assert sorted((a["name"], a["scope"], a["used"]["amount"]) for a in budget["agents"]) == [
        ("Mira", "agent", 1000),
        ("initial admin key", "admin", 100),
    ]


async def test_recovery_given_is_in_the_outbox(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira = await agent_key(api)
    await settings(api, 5000)
    complaint = await complain(api, properties={"reason": "parcel lost"})
    made = await recover(
        api,
        mira,
        {
            "reason": "parcel lost",
            "action": {"kind": "points", "points": 500},
            "order": "o-1",
            "complaint_id": complaint["id"],
        },
    )
    assert made.status_code == 201, made.text
    body = made.json()
    [row] = fetch(api.client, "SELECT payload, created_at FROM outbox WHERE topic = 'recovery.given'")
    payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
    assert payload.pop("type") == "recovery.given"
    assert payload.pop("id")
    assert payload == {
        "recovery_id": body["id"],
        "customer": "c-1",
        "agent": {"key_id": body["agent"]["key_id"], "name": "Mira"},
        "reason": "parcel lost",
        "action": "points",
        "given": {"kind": "points", "points": 500, "entry_id": body["given"]["entry_id"]},
        "explanation": "Recovery by Mira: parcel lost — 500 points",
        "cost": {"amount": 500, "currency": "EUR"},
        "month": "2026-03",
        "case_id": complaint["case_id"],
        "order": "o-1",
        "complaint_id": complaint["id"],
    }
    assert row["created_at"] == START
    assert body["order_external_id"] == "o-1" and body["complaint_id"] == complaint["id"]
    [stored] = fetch(
        api.client, "SELECT action, cost_amount, currency, budget_period, agent_name FROM recovery"
    )
    assert stored == {
        "action": "points",
        "cost_amount": 500,
        "currency": "EUR",
        "budget_period": "2026-03",
        "agent_name": "Mira",
    }
