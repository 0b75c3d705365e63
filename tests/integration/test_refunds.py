"""Refunds reverse exactly what the refunded part earned, from the order's own lots, and never go
silently negative: spent points become a clawback debt that the next earnings settle."""

from __future__ import annotations

from datetime import timedelta

from service.core.clock import FrozenClock
from service.ledger import jobs
from tests.conftest import START, Api, fetch, idempotency, in_app, table_counts, verify_ledger

LINES = [
    {"sku": "A", "quantity": 2, "unit_amount": 2500},
    {"sku": "B", "quantity": 1, "unit_amount": 4000},
]


async def refund(api: Api, order: str, **body: object) -> object:
    return await api.client.post(f"/v1/orders/{order}/refunds", json=body, headers=api.headers())


async def test_line_refund_reverses_the_lines_share_with_discount_spread(api: Api) -> None:
    await api.order("o-1", lines=LINES, discount_amount=550, shipping_amount=495)
    # Line A: 5000 − 306 discount = 4694 eligible, 47 of the 84 points; one of two units refunded.
    response = await refund(api, "o-1", external_id="r-1", lines=[{"sku": "A", "quantity": 1}])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["lines"] == [{"sku": "A", "quantity": 1, "amount": 2347, "points": 23}]
    assert body["points_reversed"] == 23 and body["debt_recorded"] == 0
    [entry] = body["entries"]
    assert entry["kind"] == "reverse" and entry["points"] == -23
    assert entry["explanation"] == "Refund r-1 of order o-1 (1 × A, EUR 23.47): 23 points reversed"
    status = await api.status()
    assert status["points"]["pending"] == 84 - 23
    verify_ledger(api.client)


async def test_full_refund_of_an_unspent_order_returns_customer_to_where_they_were(api: Api) -> None:
    await api.order("o-0", lines=[{"sku": "Z", "quantity": 1, "unit_amount": 1234}])
    before = await api.status()
    await api.order("o-1", lines=LINES, discount_amount=550, shipping_amount=495)
    await refund(api, "o-1", external_id="r-1", lines=[{"sku": "A", "quantity": 1}])
    await refund(
        api, "o-1", external_id="r-2", lines=[{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}]
    )
    after = await api.status()
    assert after["points"]["available"] == before["points"]["available"]
    assert after["points"]["pending"] == before["points"]["pending"]
    assert after["points"]["lifetime_earned"] == before["points"]["lifetime_earned"]
    assert after["points"]["debt"] == 0
    assert after["pending"] == before["pending"]
    order = (await api.client.get("/v1/orders/o-1", headers=api.headers())).json()
    assert order["status"] == "refunded" and order["points_reversed"] == 84
    verify_ledger(api.client)


async def test_amount_refund_spreads_over_lines_then_shipping(api: Api) -> None:
    await api.order("o-1", lines=LINES, discount_amount=550, shipping_amount=495)
    response = await refund(api, "o-1", external_id="r-1", amount=8945)  # everything, shipping included
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["points_reversed"] == 84
    assert body["shipping_amount"] == 495
    assert body["entries"][0]["explanation"] == (
        "Refund r-1 of order o-1 (EUR 89.45, of which EUR 4.95 shipping): 84 points reversed"
    )
    more = await refund(api, "o-1", external_id="r-2", amount=1)
    assert more.status_code == 422 and more.json()["field"] == "amount"


async def test_partial_amount_refund_reverses_proportionally(api: Api) -> None:
    await api.order("o-1", lines=[{"sku": "A", "quantity": 1, "unit_amount": 10000}])
    response = await refund(api, "o-1", external_id="r-1", amount=2550)
    assert response.json()["points_reversed"] == 25
    [entry] = response.json()["entries"]
    assert entry["explanation"] == "Refund r-1 of order o-1 (EUR 25.50): 25 points reversed"
    response = await refund(api, "o-1", external_id="r-2", amount=7450)
    assert response.json()["points_reversed"] == 75


async def test_refund_is_idempotent_by_external_id(api: Api) -> None:
    await api.order("o-1", lines=LINES)
    first = await refund(api, "o-1", external_id="r-1", lines=[{"sku": "A", "quantity": 1}])
    before = table_counts(api.client)
    again = await refund(api, "o-1", external_id="r-1", lines=[{"sku": "A", "quantity": 1}])
    assert again.status_code == 200
    assert again.json() == first.json()
    assert table_counts(api.client) == before
    other = await refund(api, "o-1", external_id="r-1", lines=[{"sku": "B", "quantity": 1}])
    assert other.status_code == 409 and other.json()["field"] == "external_id"


async def test_bad_refunds_are_422_and_change_nothing(api: Api) -> None:
    await api.order("o-1", lines=LINES)
    before = table_counts(api.client)
    cases = [
        ({"external_id": "r", "lines": [{"sku": "NOPE", "quantity": 1}]}, 422, "lines[0].sku"),
        ({"external_id": "r", "lines": [{"sku": "A", "quantity": 3}]}, 422, "lines[0].quantity"),
        ({"external_id": "r", "lines": [{"sku": "A", "quantity": 0}]}, 422, "lines[0].quantity"),
        ({"external_id": "r", "amount": 9001}, 422, "amount"),
        ({"external_id": "r", "amount": -1}, 422, "amount"),
        ({"external_id": "r"}, 422, "lines"),
        ({"external_id": "r", "amount": 100, "lines": [{"sku": "A", "quantity": 1}]}, 422, "amount"),
        ({"external_id": "r", "amount": "100"}, 422, "amount"),
    ]
    for body, status, field in cases:
        response = await api.client.post("/v1/orders/o-1/refunds", json=body, headers=api.headers())
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
    missing = await refund(api, "nope", external_id="r", amount=1)
    assert missing.status_code == 404
    assert table_counts(api.client) == before


async def test_refund_after_points_were_spent_records_a_debt_settled_by_next_earnings(api: Api) -> None:
    await api.client.patch("/v1/program", json={"pending_days": 0}, headers=api.headers())
    await api.order("o-1", lines=[{"sku": "A", "quantity": 1, "unit_amount": 10000}])  # 100 points
    spend = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": -80, "reason": "redeemed a voucher"},
        headers=api.headers(**idempotency()),
    )
    assert spend.status_code == 201, spend.text
    response = await refund(api, "o-1", external_id="r-1", amount=10000)
    body = response.json()
    assert body["points_reversed"] == 100 and body["debt_recorded"] == 80
    assert "80 points had already been spent" in body["entries"][0]["explanation"]
    status = await api.status()
    assert status["points"] == {"available": 0, "pending": 0, "debt": 80, "lifetime_earned": 0}

    earned = await api.order("o-2", lines=[{"sku": "B", "quantity": 1, "unit_amount": 5000}])  # 50 points
    kinds = [(e["kind"], e["points"], e["debt_change"]) for e in earned.json()["entries"]]
    assert kinds == [("earn", 50, 0), ("debt_settled", -50, -50)]
    status = await api.status()
    assert status["points"]["available"] == 0 and status["points"]["debt"] == 30
    await api.order("o-3", lines=[{"sku": "C", "quantity": 1, "unit_amount": 4000}])  # 40 points
    status = await api.status()
    assert status["points"]["available"] == 10 and status["points"]["debt"] == 0
    verify_ledger(api.client)


async def test_refund_takes_pending_lots_of_the_order_before_other_points(api: Api) -> None:
    await api.client.patch("/v1/program", json={"pending_days": 0}, headers=api.headers())
    await api.order("o-old", lines=[{"sku": "A", "quantity": 1, "unit_amount": 5000}])  # 50 available
    await api.client.patch("/v1/program", json={"pending_days": 14}, headers=api.headers())
    await api.order("o-new", lines=[{"sku": "B", "quantity": 1, "unit_amount": 3000}])  # 30 pending
    await refund(api, "o-new", external_id="r-1", amount=3000)
    status = await api.status()
    assert status["points"]["available"] == 50 and status["points"]["pending"] == 0
    lots = fetch(
        api.client, "SELECT o.external_id, l.remaining FROM points_lot l JOIN orders o ON o.id = l.order_id"
    )
    assert {r["external_id"]: r["remaining"] for r in lots} == {"o-old": 50, "o-new": 0}


async def test_refund_after_maturity_and_expiry_dates_keep_the_ledger_consistent(api: Api) -> None:
    await api.client.patch("/v1/program", json={"points_expire_after_days": 30}, headers=api.headers())
    await api.order("o-1", lines=LINES)
    in_app(api.client, jobs.mature, START + timedelta(days=15))
    await refund(api, "o-1", external_id="r-1", lines=[{"sku": "B", "quantity": 1}])
    status = await api.status()
    assert status["points"]["available"] == 90 - 40
    assert status["next_expiring"]["points"] == 50
    verify_ledger(api.client)


async def test_refund_of_an_order_whose_points_expired_does_not_take_them_twice(
    api: Api, clock: FrozenClock
) -> None:
    # Order A's 100 points expire; order B's 100, earned 20 days later, not yet. Refunding A must not take
    # B's points instead. (Switching expiry off in between would now take the dates off A's points too.)
    await api.client.patch(
        "/v1/program", json={"pending_days": 0, "points_expire_after_days": 30}, headers=api.headers()
    )
    await api.order("o-a", lines=[{"sku": "A", "quantity": 1, "unit_amount": 10000}])
    clock.advance(timedelta(days=20))
    await api.order(
        "o-b", lines=[{"sku": "B", "quantity": 1, "unit_amount": 10000}], placed_at=clock.now().isoformat()
    )
    in_app(api.client, jobs.expire, START + timedelta(days=31))
    clock.set(START + timedelta(days=31))
    assert (await api.status())["points"]["available"] == 100
    response = await refund(api, "o-a", external_id="r-1", amount=6000)
    body = response.json()
    assert body["points_reversed"] == 60 and body["debt_recorded"] == 0
    assert (
        "60 points of them had already expired and are not taken again" in body["entries"][0]["explanation"]
    )
    await refund(api, "o-a", external_id="r-2", amount=4000)
    status = await api.status()
    assert status["points"]["available"] == 100 and status["points"]["debt"] == 0
    verify_ledger(api.client)


async def test_points_past_their_expiry_date_cannot_be_spent_before_the_sweep(
    api: Api, clock: FrozenClock
) -> None:
    await api.client.patch(
        "/v1/program", json={"pending_days": 0, "points_expire_after_days": 30}, headers=api.headers()
    )
    await api.order("o-1", lines=[{"sku": "A", "quantity": 1, "unit_amount": 5000}])
    clock.advance(timedelta(days=31))
    spend = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": -10, "reason": "voucher"},
        headers=api.headers(**idempotency()),
    )
    assert spend.status_code == 409 and spend.json()["available"] == 0
