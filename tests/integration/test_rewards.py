"""Rewards end to end over HTTP: the catalogue, redemptions that spend FIFO, refusals, codes validated and
used at checkout, cancellation and refunds that give points back to the lots they came from."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import START, Api, fetch, idempotency, order_body, table_counts, verify_ledger

FIVE_OFF = {
    "kind": "amount_off",
    "name": {"en": "EUR 5 off", "tr": "5 EUR indirim"},
    "cost_points": 50,
    "amount": {"amount": 500, "currency": "EUR"},
}


async def reward(api: Api, **overrides: Any) -> dict[str, Any]:
    body = {**FIVE_OFF, **overrides}
    created = await api.client.post("/v1/rewards", json=body, headers=api.headers(**idempotency()))
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


async def redeem(api: Api, reward_id: str, customer: str = "c-1", **body: Any) -> Any:
    return await api.client.post(
        f"/v1/customers/{customer}/redemptions",
        json={"reward_id": reward_id, **body},
        headers=api.headers(**idempotency()),
    )


async def earn(api: Api, points: int, customer: str = "c-1", reason: str = "seed") -> None:
    """Available points at once (an adjustment: no return window), the customer made if need be."""
    await api.client.put(f"/v1/customers/{customer}", json={}, headers=api.headers())
    made = await api.client.post(
        f"/v1/customers/{customer}/adjustments",
        json={"points": points, "reason": reason},
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text


async def available(api: Api, customer: str = "c-1") -> int:
    return int((await api.status(customer))["points"]["available"])


async def test_redeeming_spends_points_and_answers_a_code(api: Api) -> None:
    await api.client.put("/v1/customers/c-1", json={"name": "Ann"}, headers=api.headers())
    await earn(api, 120)
    five = await reward(api)
    made = await redeem(api, five["id"])
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["status"] == "issued" and body["points"] == 50 and body["source"] == "points"
    assert body["value"] == {"amount": 500, "currency": "EUR"}
    assert body["discount"]["amount"] == {"amount": 500, "currency": "EUR"}
    assert body["entries"][0]["explanation"] == "Redeemed 'EUR 5 off' for 50 points"
    assert body["entries"][0]["points"] == -50
    code = body["code"]
    groups = code.split("-")
    assert len(groups) == 4 and all(len(g) == 4 for g in groups)
    assert set(code.replace("-", "")) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert await available(api) == 70
    status = await api.status()
    assert [c["code"] for c in status["open_codes"]] == [code]
    assert status["open_codes"][0]["name"] == "EUR 5 off"
    topics = [r["topic"] for r in fetch(api.client, "SELECT topic FROM outbox ORDER BY id")]
    assert "redemption.created" in topics and "points.redeemed" in topics
    verify_ledger(api.client)


async def test_refusals_have_their_own_types_and_change_nothing(api: Api, clock: FrozenClock) -> None:
    await api.client.put("/v1/customers/c-1", json={"name": "Ann"}, headers=api.headers())
    await earn(api, 40)
    five = await reward(api)
    short = await redeem(api, five["id"])
    assert short.status_code == 409
    assert short.json()["type"].endswith("insufficient-points")
    assert short.json()["shortfall"] == 10
    await earn(api, 200)
    limited = await reward(api, stock=1, limit={"count": 1, "period": "month"})
    assert (await redeem(api, limited["id"])).status_code == 201
    again = await redeem(api, limited["id"])
    assert again.status_code == 409 and again.json()["type"].endswith("out-of-stock"), again.text
    monthly = await reward(api, limit={"count": 1, "period": "month"})
    assert (await redeem(api, monthly["id"])).status_code == 201
    over = await redeem(api, monthly["id"])
    assert over.status_code == 409 and over.json()["type"].endswith("limit-reached"), over.text
    paused = await reward(api, status="paused")
    off = await redeem(api, paused["id"])
    assert off.status_code == 409 and off.json()["type"].endswith("reward-inactive")
    before = table_counts(api.client)
    assert (await redeem(api, monthly["id"])).status_code == 409
    assert table_counts(api.client)["redemption"] == before["redemption"]
    clock.advance(timedelta(days=40))  # a new month: the limit allows one more
    assert (await redeem(api, monthly["id"])).status_code == 201


async def test_a_customer_in_debt_cannot_redeem(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201  # 90 points pending
    await earn(api, 100)
    five = await reward(api, cost_points=100)
    assert (await redeem(api, five["id"])).status_code == 201  # spends the 100 available
    refund = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-1", "amount": 9000}, headers=api.headers()
    )
    assert refund.status_code == 201, refund.text
    await earn(api, 5)  # settles part of nothing: order points were still pending, so no debt
    status = await api.status()
    assert status["points"]["debt"] == 0


async def test_cancel_gives_points_back_to_their_lots_with_their_expiry(api: Api, clock: FrozenClock) -> None:
    await api.client.patch("/v1/program", json={"points_expire_after_days": 30}, headers=api.headers())
    await earn(api, 30, reason="first")  # expires START + 30 days
    clock.advance(timedelta(days=10))
    await earn(api, 40, reason="second")  # expires START + 40 days
    five = await reward(api)
    body = (await redeem(api, five["id"])).json()  # 30 from the first lot, 20 from the second
    lots = fetch(api.client, "SELECT points, remaining, expires_at FROM points_lot ORDER BY expires_at")
    assert [(lot["points"], lot["remaining"]) for lot in lots] == [(30, 0), (40, 20)]
    cancelled = await api.client.post(f"/v1/redemptions/{body['id']}/cancel", json={}, headers=api.headers())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["points_returned"] == 50
    lots = fetch(api.client, "SELECT points, remaining, expires_at FROM points_lot ORDER BY expires_at")
    assert [(lot["points"], lot["remaining"]) for lot in lots] == [(30, 30), (40, 40)]
    assert lots[0]["expires_at"] == START + timedelta(days=30)
    again = await api.client.post(f"/v1/redemptions/{body['id']}/cancel", json={}, headers=api.headers())
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert await available(api) == 70
    verify_ledger(api.client)


async def test_cancel_after_a_lot_lapsed_forfeits_just_those_points(api: Api, clock: FrozenClock) -> None:
    await api.client.patch("/v1/program", json={"points_expire_after_days": 30}, headers=api.headers())
    await earn(api, 30, reason="first")
    clock.advance(timedelta(days=10))
    await earn(api, 40, reason="second")
    five = await reward(api)
    body = (await redeem(api, five["id"])).json()
    clock.advance(timedelta(days=25))  # the first lot (30 days) has lapsed, the second has not
    cancelled = await api.client.post(f"/v1/redemptions/{body['id']}/cancel", headers=api.headers())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["points_returned"] == 20
    returned, expired = cancelled.json()["entries"]
    # All 50 go back to their lots; the 30 of the lapsed lot expire again at once, as an expiry of it.
    assert returned["points"] == 50 and returned["details"]["forfeited_expired"] == 30
    assert "30 points of them had passed their expiry date and expire again" in returned["explanation"]
    assert expired["kind"] == "expire" and expired["points"] == -30
    assert await available(api) == 40
    verify_ledger(api.client)


async def test_points_that_lapsed_on_a_cancelled_code_are_not_taken_twice_by_a_refund(
    api: Api, clock: FrozenClock
) -> None:
    await api.client.patch(
        "/v1/program", json={"points_expire_after_days": 30, "pending_days": 0}, headers=api.headers()
    )
    assert (await api.order("o-1")).status_code == 201  # 90 points, available at once
    ninety = await reward(api, cost_points=90)
    body = (await redeem(api, ninety["id"])).json()
    clock.advance(timedelta(days=31))  # the order's lot has lapsed
    cancelled = await api.client.post(f"/v1/redemptions/{body['id']}/cancel", headers=api.headers())
    assert cancelled.json()["points_returned"] == 0
    refund = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-1", "amount": 9000}, headers=api.headers()
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["debt_recorded"] == 0  # the 90 had expired: forgiven, not owed
    assert (await api.status())["points"]["debt"] == 0
    verify_ledger(api.client)


async def test_a_code_cannot_be_used_on_an_order_refunded_in_full(api: Api) -> None:
    await earn(api, 100)
    five = await reward(api)
    made = (await redeem(api, five["id"])).json()
    assert (await api.order("o-1")).status_code == 201
    refund = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-1", "amount": 9000}, headers=api.headers()
    )
    assert refund.status_code == 201
    used = await api.client.post(
        f"/v1/codes/{made['code']}/use", json={"order_external_id": "o-1"}, headers=api.headers()
    )
    assert used.status_code == 409 and used.json()["type"].endswith("code-not-applicable")
    assert fetch(api.client, "SELECT status FROM redemption")[0]["status"] == "issued"


async def test_a_cursor_with_a_time_beyond_the_calendar_is_refused(api: Api) -> None:
    import base64

    for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        raw = f"at:{at}|00000000-0000-0000-0000-000000000000".encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        listed = await api.client.get(f"/v1/redemptions?cursor={cursor}", headers=api.headers())
        assert listed.status_code == 422 and listed.json()["field"] == "query:cursor", listed.text


async def test_a_code_at_checkout_is_applied_once(api: Api) -> None:
    await earn(api, 100)
    five = await reward(api, min_order={"amount": 2000, "currency": "EUR"})
    code = (await redeem(api, five["id"])).json()["code"]
    cart = order_body("cart")
    checked = await api.client.post(f"/v1/codes/{code.lower()}/validate", json=cart, headers=api.headers())
    assert checked.status_code == 200, checked.text
    assert checked.json()["discount"] == {"amount": 500, "currency": "EUR"}
    small = order_body("cart", lines=[{"sku": "SOCK-3", "quantity": 1, "unit_amount": 1000}])
    refused = await api.client.post(f"/v1/codes/{code}/validate", json=small, headers=api.headers())
    assert refused.status_code == 409 and refused.json()["type"].endswith("code-not-applicable")
    other = order_body("cart", customer="c-2")
    theirs = await api.client.post(f"/v1/codes/{code}/validate", json=other, headers=api.headers())
    assert theirs.status_code == 409 and "another customer" in theirs.json()["detail"]
    first = await api.client.post("/v1/orders", json=order_body("o-1", codes=[code]), headers=api.headers())
    assert first.status_code == 201, first.text
    assert first.json()["codes"][0]["result"] == "applied"
    assert first.json()["codes"][0]["discount"] == {"amount": 500, "currency": "EUR"}
    second = await api.client.post("/v1/orders", json=order_body("o-2", codes=[code]), headers=api.headers())
    assert second.status_code == 201
    assert second.json()["codes"][0]["result"] == "code-used"
    used = await api.client.post(f"/v1/codes/{code}/validate", json=cart, headers=api.headers())
    assert used.status_code == 409 and used.json()["type"].endswith("code-used")
    listed = await api.client.get("/v1/redemptions?status=used&customer=c-1", headers=api.headers())
    assert [r["order_external_id"] for r in listed.json()["items"]] == ["o-1"]


async def test_a_full_refund_cancels_the_code_and_returns_its_points(api: Api) -> None:
    await earn(api, 100)
    five = await reward(api)
    code = (await redeem(api, five["id"])).json()["code"]
    assert await available(api) == 50
    assert (
        await api.client.post("/v1/orders", json=order_body("o-1", codes=[code]), headers=api.headers())
    ).status_code == 201
    partial = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-1", "amount": 1000}, headers=api.headers()
    )
    assert partial.status_code == 201
    assert fetch(api.client, "SELECT status FROM redemption")[0]["status"] == "used"
    rest = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r-2", "amount": 8000}, headers=api.headers()
    )
    assert rest.status_code == 201, rest.text
    assert fetch(api.client, "SELECT status, points_returned FROM redemption")[0] == {
        "status": "cancelled",
        "points_returned": 50,
    }
    assert await available(api) == 100
    verify_ledger(api.client)


async def test_percent_codes_take_their_value_at_use(api: Api) -> None:
    await earn(api, 100)
    ten = await reward(
        api, kind="percent_off", percent=10, amount=None, cap={"amount": 500, "currency": "EUR"}
    )
    code = (await redeem(api, ten["id"])).json()["code"]
    order = await api.client.post("/v1/orders", json=order_body("o-1", codes=[code]), headers=api.headers())
    assert order.json()["codes"][0]["discount"] == {"amount": 500, "currency": "EUR"}  # 10 % of 90, capped
    row = fetch(api.client, "SELECT value_amount, currency FROM redemption")[0]
    assert row == {"value_amount": 500, "currency": "EUR"}


async def test_variable_rewards_spend_on_their_step(api: Api) -> None:
    await earn(api, 1000)
    slider = await reward(
        api,
        kind="points_for_discount",
        cost_points=None,
        amount=None,
        points_step=100,
        step_amount={"amount": 100, "currency": "EUR"},
        max_points=500,
        max_share_percent=50,
    )
    off_step = await redeem(api, slider["id"], points=150)
    assert off_step.status_code == 422 and off_step.json()["field"] == "points"
    made = await redeem(api, slider["id"], points=300)
    assert made.status_code == 201, made.text
    assert made.json()["value"] == {"amount": 300, "currency": "EUR"}
    assert await available(api) == 700


async def test_bad_rewards_are_refused_naming_the_field(api: Api) -> None:
    cases = [
        ({**FIVE_OFF, "cost_points": 0}, "cost_points"),
        ({**FIVE_OFF, "cost_points": -5}, "cost_points"),
        ({**FIVE_OFF, "kind": "percent_off", "amount": None, "percent": 120}, "percent"),
        ({**FIVE_OFF, "amount": {"amount": 500, "currency": "USD"}}, "amount.currency"),
        ({**FIVE_OFF, "min_tier": "gold"}, "min_tier"),
    ]
    for body, field in cases:
        answer = await api.client.post("/v1/rewards", json=body, headers=api.headers(**idempotency()))
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["field"] == field, (field, answer.json())
    unknown = await redeem(api, "00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
    keyless = await api.client.post(
        "/v1/customers/c-1/redemptions",
        json={"reward_id": "00000000-0000-0000-0000-000000000000"},
        headers=api.headers(),
    )
    assert keyless.status_code == 400 and "Idempotency-Key" in keyless.text


async def test_another_programs_code_is_unknown(api: Api) -> None:
    from tests.conftest import make_program

    await earn(api, 100)
    five = await reward(api)
    code = (await redeem(api, five["id"])).json()["code"]
    other = make_program(api.client, "Other")
    theirs = await other.client.post(
        f"/v1/codes/{code}/validate", json=order_body("x"), headers=other.headers()
    )
    nothing = await other.client.post(
        "/v1/codes/ZZZZ-ZZZZ/validate", json=order_body("x"), headers=other.headers()
    )
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.json()["detail"] == nothing.json()["detail"]


async def test_a_retried_redemption_spends_once_and_answers_the_same_code(api: Api) -> None:
    await earn(api, 120)
    five = await reward(api)
    headers = api.headers(**{"Idempotency-Key": "redeem-1"})
    first = await api.client.post(
        "/v1/customers/c-1/redemptions", json={"reward_id": five["id"]}, headers=headers
    )
    again = await api.client.post(
        "/v1/customers/c-1/redemptions", json={"reward_id": five["id"]}, headers=headers
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["code"] == first.json()["code"]
    assert await available(api) == 70
    assert len(fetch(api.client, "SELECT id FROM redemption")) == 1


async def test_the_catalogue_as_the_customer_sees_it(api: Api) -> None:
    gold = {
        "key": "gold",
        "name": "Gold",
        "rank": 2,
        "qualification": {"metric": "spend", "threshold": {"amount": 50000, "currency": "EUR"}},
    }
    assert (
        await api.client.post("/v1/tiers", json=gold, headers=api.headers(**idempotency()))
    ).status_code == 201
    await earn(api, 250)
    cheap = await reward(
        api,
        name={"en": "Tote bag", "tr": "Çanta"},
        kind="custom",
        amount=None,
        value={"amount": 900, "currency": "EUR"},
        cost_points=200,
    )
    dear = await reward(api, cost_points=500)
    vip = await reward(api, cost_points=100, min_tier="gold")
    gone = await reward(api, cost_points=10, stock=0)
    seen = await api.client.get("/v1/customers/c-1/rewards?locale=tr", headers=api.headers())
    assert seen.status_code == 200, seen.text
    items = {item["reward_id"]: item for item in seen.json()["items"]}
    assert items[cheap["id"]]["state"] == "available" and items[cheap["id"]]["name"] == "Çanta"
    assert items[dear["id"]]["state"] == "points_missing" and items[dear["id"]]["note"] == "250 more points"
    assert items[vip["id"]]["state"] == "tier_locked" and items[vip["id"]]["note"] == "Gold and above"
    assert items[gone["id"]]["state"] == "out_of_stock"
    refused = await redeem(api, vip["id"])
    assert refused.status_code == 409 and refused.json()["type"].endswith("tier-too-low")
    assert (
        await api.client.post(
            "/v1/customers/c-1/tier",
            json={"tier": "gold", "reason": "VIP"},
            headers=api.headers(**idempotency()),
        )
    ).status_code == 200
    assert (await redeem(api, vip["id"])).status_code == 201


async def test_a_used_reward_changes_by_a_new_version(api: Api) -> None:
    await earn(api, 200)
    five = await reward(api)
    unused = await api.client.put(
        f"/v1/rewards/{five['id']}", json={**FIVE_OFF, "cost_points": 40}, headers=api.headers()
    )
    assert unused.json()["version"] == 1
    code = (await redeem(api, five["id"])).json()
    changed = await api.client.put(
        f"/v1/rewards/{five['id']}",
        json={**FIVE_OFF, "cost_points": 60, "amount": {"amount": 700, "currency": "EUR"}},
        headers=api.headers(),
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    kept = await api.client.get(f"/v1/redemptions/{code['id']}", headers=api.headers())
    assert kept.json()["reward_version"] == 1 and kept.json()["discount"]["amount"]["amount"] == 500
    versions = await api.client.get(f"/v1/rewards/{five['id']}/versions", headers=api.headers())
    assert [v["version"] for v in versions.json()["items"]] == [2, 1]
    gone = await api.client.delete(f"/v1/rewards/{five['id']}", headers=api.headers())
    assert gone.status_code == 409
    archived = await api.client.patch(
        f"/v1/rewards/{five['id']}", json={"status": "archived"}, headers=api.headers()
    )
    assert archived.json()["status"] == "archived"
    off = await redeem(api, five["id"])
    assert off.status_code == 409 and off.json()["type"].endswith("reward-inactive")


async def test_use_on_its_own_and_cancel_of_a_used_code(api: Api) -> None:
    await earn(api, 100)
    five = await reward(api)
    made = (await redeem(api, five["id"])).json()
    used = await api.client.post(f"/v1/codes/{made['code']}/use", headers=api.headers())
    assert used.status_code == 200, used.text
    assert used.json()["status"] == "used"
    twice = await api.client.post(f"/v1/codes/{made['code']}/use", headers=api.headers())
    assert twice.status_code == 409 and twice.json()["type"].endswith("code-used")
    cancel = await api.client.post(f"/v1/redemptions/{made['id']}/cancel", headers=api.headers())
    assert cancel.status_code == 409 and cancel.json()["type"].endswith("code-used")
    assert await available(api) == 50
