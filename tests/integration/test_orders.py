"""Orders over HTTP against PostgreSQL: earning, idempotency, duplicates, and bad input that changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import START, Api, fetch, idempotency, iso, order_body, table_counts, verify_ledger


async def test_order_earns_pending_points_with_explanation(api: Api) -> None:
    response = await api.order(
        "o-1",
        lines=[
            {"sku": "A", "quantity": 2, "unit_amount": 2500},
            {"sku": "B", "quantity": 1, "unit_amount": 4000},
        ],
        discount_amount=550,
        shipping_amount=495,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    order = body["order"]
    assert order["eligible_amount"] == 8450
    assert order["points_earned"] == 84
    assert [line["discount_amount"] for line in order["lines"]] == [306, 244]
    assert sum(line["points"] for line in order["lines"]) == 84
    [entry] = body["entries"]
    assert entry["kind"] == "earn" and entry["points"] == 84
    assert entry["explanation"] == "Base earn rate v1: 1 point per EUR 1.00 on EUR 84.50"
    assert entry["order_external_id"] == "o-1"

    status = await api.status()
    assert status["points"] == {"available": 0, "pending": 84, "debt": 0, "lifetime_earned": 84}
    assert status["pending"] == [{"points": 84, "available_at": iso(START + timedelta(days=14))}]
    assert status["orders"]["count"] == 1
    verify_ledger(api.client)


async def test_replay_with_same_key_returns_same_response_and_writes_nothing(api: Api) -> None:
    first = await api.order("o-1", key="key-1")
    before = table_counts(api.client)
    again = await api.order("o-1", key="key-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert table_counts(api.client) == before


async def test_same_key_other_body_is_409(api: Api) -> None:
    await api.order("o-1", key="key-1")
    response = await api.order("o-2", key="key-1")
    assert response.status_code == 409
    assert response.json()["field"] == "header:Idempotency-Key"
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_second_order_with_same_external_id_is_409_naming_it(api: Api) -> None:
    await api.order("o-1")
    before = table_counts(api.client)
    response = await api.order("o-1", lines=[{"sku": "X", "quantity": 1, "unit_amount": 100}])
    assert response.status_code == 409
    problem = response.json()
    assert problem["field"] == "external_id"
    assert problem["existing_order"] == "/v1/orders/o-1"
    assert table_counts(api.client) == before


async def test_order_creates_customer_with_profile_and_writes_events(api: Api) -> None:
    body = order_body("o-1", "new-customer")
    body["customer"].update({"email": "nia@example.com", "name": "Nia", "locale": "cy"})
    response = await api.client.post("/v1/orders", json=body, headers=api.headers())
    assert response.status_code == 201, response.text
    status = await api.status("new-customer")
    assert status["customer"]["email"] == "nia@example.com"
    assert status["customer"]["locale"] == "cy"
    topics = [r["topic"] for r in fetch(api.client, "SELECT topic FROM outbox ORDER BY created_at, topic")]
    assert {"customer.created", "order.created", "points.earned"} <= set(topics)
    ids = fetch(api.client, "SELECT id, payload->>'id' AS payload_id FROM outbox")
    assert all(str(r["id"]) == r["payload_id"] for r in ids)


async def test_get_order(api: Api) -> None:
    await api.order("o-1")
    response = await api.client.get("/v1/orders/o-1", headers=api.headers())
    assert response.status_code == 200
    assert response.json()["points_earned"] == 90
    missing = await api.client.get("/v1/orders/nope", headers=api.headers())
    assert missing.status_code == 404


def _bad(**changes: Any) -> dict[str, Any]:
    body = order_body("bad-1")
    for key, value in changes.items():
        body[key] = value
    return body


BAD_ORDERS: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("unknown currency", _bad(currency="XYZ"), 422, "currency"),
    ("lowercase currency", _bad(currency="eur"), 422, "currency"),
    (
        "zero quantity",
        _bad(lines=[{"sku": "A", "quantity": 0, "unit_amount": 100}], total_amount=0),
        422,
        "lines[0].quantity",
    ),
    (
        "negative quantity",
        _bad(lines=[{"sku": "A", "quantity": -1, "unit_amount": 100}], total_amount=-100),
        422,
        "lines[0].quantity",
    ),
    ("amounts don't add up", _bad(total_amount=1), 422, "total_amount"),
    ("future placed_at", _bad(placed_at=(START + timedelta(days=2)).isoformat()), 422, "placed_at"),
    ("naive placed_at", _bad(placed_at="2026-03-02T12:00:00"), 422, "placed_at"),
    ("empty lines", _bad(lines=[], total_amount=0), 422, "lines"),
    ("string for a number", _bad(total_amount="9000"), 422, "total_amount"),
    (
        "string quantity",
        _bad(lines=[{"sku": "A", "quantity": "2", "unit_amount": 100}]),
        422,
        "lines[0].quantity",
    ),
    ("negative discount", _bad(discount_amount=-5), 422, "discount_amount"),
    ("discount above lines", _bad(discount_amount=10_000, total_amount=-1000), 422, "total_amount"),
    (
        "duplicate sku",
        _bad(lines=[{"sku": "A", "quantity": 1, "unit_amount": 100}] * 2, total_amount=200),
        422,
        "lines[1].sku",
    ),
    ("missing customer", {k: v for k, v in order_body("bad-1").items() if k != "customer"}, 422, "customer"),
    ("unknown field", _bad(colour="red"), 422, "colour"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_ORDERS, ids=[c[0] for c in BAD_ORDERS])
async def test_bad_order_is_rejected_and_changes_nothing(
    api: Api, case: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    before = table_counts(api.client)
    response = await api.client.post("/v1/orders", json=body, headers=api.headers())
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem.get("field") == field, problem
    assert table_counts(api.client) == before


async def test_discount_larger_than_lines_names_discount(api: Api) -> None:
    body = order_body("o-1", lines=[{"sku": "A", "quantity": 1, "unit_amount": 100}], discount_amount=200)
    body["total_amount"] = 0
    response = await api.client.post("/v1/orders", json=body, headers=api.headers())
    assert response.status_code == 422
    assert response.json()["field"] == "discount_amount"


async def test_malformed_json_is_400(api: Api) -> None:
    response = await api.client.post(
        "/v1/orders",
        content=b'{"external_id": "o-1",',
        headers=api.headers(**{"content-type": "application/json"}),
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:encore:problem:malformed-json"


async def test_oversized_body_is_413(api: Api) -> None:
    body = order_body("o-1")
    body["lines"][0]["name"] = "x" * 2_000_000
    response = await api.client.post("/v1/orders", json=body, headers=api.headers())
    assert response.status_code == 413
    assert table_counts(api.client)["orders"] == 0


async def test_order_in_currency_without_rate_earns_nothing_and_says_why(api: Api) -> None:
    response = await api.order("o-usd", currency="USD")
    assert response.status_code == 201, response.text
    assert response.json()["order"]["points_earned"] == 0
    assert response.json()["entries"] == []
    assert "No earn rate is set for USD" in response.json()["order"]["earn_explanation"]


async def test_points_available_at_once_with_zero_pending_days(api: Api) -> None:
    patch = await api.client.patch("/v1/program", json={"pending_days": 0}, headers=api.headers())
    assert patch.status_code == 200, patch.text
    await api.order("o-1")
    status = await api.status()
    assert status["points"]["available"] == 90 and status["points"]["pending"] == 0


async def test_an_order_body_can_be_quoted_as_it_is_and_the_quote_is_what_it_earns(api: Api) -> None:
    body = order_body(
        "o-q",
        discount_amount=700,
        shipping_amount=495,
        attributes={"channel": "web"},
    )
    body["customer"] = {"external_id": "c-q", "email": "q@example.com", "name": "Quinn"}
    rule = {
        "name": "Web bonus",
        "priority": 5,
        "stacking": "stack",
        "conditions": {"field": "order.attributes.channel", "op": "eq", "value": "web"},
        "effect": {"kind": "fixed", "points": 7},
        "status": "active",
    }
    assert (
        await api.client.post("/v1/rules", json=rule, headers=api.headers(**idempotency()))
    ).status_code == 201
    before = table_counts(api.client)
    quoted = await api.client.post("/v1/orders/quote", json=body, headers=api.headers())
    assert quoted.status_code == 200, quoted.text
    assert table_counts(api.client) == before  # a quote writes nothing, not even the customer
    placed = await api.client.post("/v1/orders", json=body, headers=api.headers())
    assert placed.status_code == 201, placed.text
    quote, order = quoted.json(), placed.json()["order"]
    assert quote["points"] == order["points_earned"] == 83 + 7  # EUR 83.00 at the base rate, and the bonus
    assert quote["eligible_amount"] == order["eligible_amount"]
    assert quote["explanation"] == order["earn_explanation"]
    assert [(line["sku"], line["points"]) for line in quote["lines"]] == [
        (line["sku"], line["points"]) for line in order["lines"]
    ]
    # Quoting the body again once the order exists still works (and still writes nothing).
    again = await api.client.post("/v1/orders/quote", json=body, headers=api.headers())
    assert again.status_code == 200 and again.json()["points"] == quote["points"]
    # Everything else is still checked as for an order.
    unknown = await api.client.post("/v1/orders/quote", json={**body, "colour": "red"}, headers=api.headers())
    assert unknown.status_code == 422 and unknown.json()["field"] == "colour"
