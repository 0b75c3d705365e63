"""Service recovery over HTTP: an agent's key puts things right from the monthly budget (points, a code,
a gift, a tier gesture), explained on the ledger; over budget nothing changes; the budget per agent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import Api, fetch, idempotency, table_counts, verify_ledger


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
    complaint = await api.client.post(
        "/v1/events",
        json={"type": "complaint", "customer": {"external_id": "c-1"}, "properties": {"reason": "parcel lost"}},
        headers=api.headers(**idempotency()),
    )
    assert complaint.status_code == 202, complaint.text
    case_id = complaint.json()["case_id"]
    assert case_id
    status = await api.status()
    assert [c["summary"] for c in status["open_cases"]] == ["parcel lost"]
    clock.advance(timedelta(minutes=10))
    made = await recover(
        api,
        mira,
        {"reason": "parcel lost", "action": {"kind": "points", "points": 500}, "complaint_id": complaint.json()["id"]},
    )
    assert made.status_code == 201, made.text
    assert made.json()["case_id"] == case_id
    clock.advance(timedelta(minutes=50))
    closed = await api.client.post(
        f"/v1/cases/{case_id}/close", json={"note": "points given"}, headers=api.headers(mira, **idempotency())
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
