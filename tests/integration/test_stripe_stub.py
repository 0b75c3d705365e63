"""The local Stripe stub against the official SDK: what the Stripe integration's tests and bench rely on
(sessions and line items served, coupons and promotion codes recorded, Stripe's errors and idempotency,
events signed as Stripe signs them)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import stripe

from tests.support.stripe_stub import (
    REFUSED_KEY,
    WEBHOOK_SECRET,
    StripeStub,
    event,
    line_item,
    signed_event,
)


@pytest.fixture
async def stub() -> AsyncIterator[StripeStub]:
    async with StripeStub() as running:
        yield running


async def test_a_session_and_its_line_items(stub: StripeStub) -> None:
    items = [
        line_item(1500, 2, sku="TEE", category="shirts"),
        line_item(990, name="Mug"),
        line_item(500, name="Pin"),
    ]
    stub.add_session(
        "cs_test_1",
        line_items=items,
        customer="cus_1",
        metadata={"encore_customer_id": "c-1"},
        total_details={
            "amount_discount": 500,
            "amount_shipping": 490,
            "breakdown": {"discounts": [], "taxes": []},
        },
    )
    stub.add_customer("cus_1", email="Ann@Example.com")
    client = stub.client()

    plain = await client.v1.checkout.sessions.retrieve_async("cs_test_1")
    assert plain.payment_status == "paid" and plain.currency == "eur"
    assert (plain.amount_subtotal, plain.amount_total) == (3000 + 990 + 500, 4490 - 500 + 490)
    assert plain.customer == "cus_1" and plain.metadata["encore_customer_id"] == "c-1"
    assert "line_items" not in plain and "breakdown" not in plain.total_details

    full = await client.v1.checkout.sessions.retrieve_async(
        "cs_test_1", params={"expand": ["line_items", "total_details.breakdown", "customer"]}
    )
    assert full.customer.email == "Ann@Example.com"
    assert full.total_details.breakdown.discounts == []
    assert [i.quantity for i in full.line_items.data] == [2, 1, 1]
    assert stub.requests_to("/v1/checkout/sessions/cs_test_1")[-1].expand == [
        "line_items",
        "total_details.breakdown",
        "customer",
    ]

    listed = await client.v1.checkout.sessions.line_items.list_async(
        "cs_test_1", params={"expand": ["data.price.product"], "limit": 2}
    )
    assert listed.has_more
    first = listed.data[0]
    assert (first.amount_subtotal, first.price.unit_amount, first.description) == (3000, 1500, "T-shirt")
    assert first.price.product.metadata.to_dict() == {"sku": "TEE", "category": "shirts"}
    every = [item async for item in listed.auto_paging_iter()]
    assert [i.description for i in every] == ["T-shirt", "Mug", "Pin"]
    # Not expanded, the product is an id.
    bare = await client.v1.checkout.sessions.line_items.list_async("cs_test_1")
    assert bare.data[0].price.product == first.price.product.id

    # One call: the session, its first ten line items with their products, the discounts' breakdown.
    one = await client.v1.checkout.sessions.retrieve_async(
        "cs_test_1", params={"expand": ["line_items.data.price.product", "total_details.breakdown"]}
    )
    assert one.line_items.data[0].price.product.metadata["sku"] == "TEE" and not one.line_items.has_more

    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.checkout.sessions.retrieve_async("cs_unknown")
    assert missing.value.code == "resource_missing" and missing.value.http_status == 404


async def test_coupons_and_promotion_codes_are_recorded(stub: StripeStub) -> None:
    stub.add_customer("cus_9")
    client = stub.client()
    coupon = await client.v1.coupons.create_async(
        params={
            "amount_off": 500,
            "currency": "eur",
            "duration": "once",
            "max_redemptions": 1,
            "redeem_by": 1893456000,
        },
        options={"idempotency_key": "redemption-r1-coupon"},
    )
    code = await client.v1.promotion_codes.create_async(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "ENCORE-5OFF",
            "customer": "cus_9",
            "max_redemptions": 1,
            "restrictions": {"minimum_amount": 2000, "minimum_amount_currency": "eur"},
            "metadata": {"encore_redemption_id": "r1"},
        },
        options={"idempotency_key": "redemption-r1-code"},
    )
    assert (coupon.amount_off, coupon.currency, coupon.max_redemptions, coupon.percent_off) == (
        500,
        "eur",
        1,
        None,
    )
    assert code.active and code.code == "ENCORE-5OFF" and code.promotion.coupon == coupon.id
    assert code.restrictions.minimum_amount == 2000 and code.customer == "cus_9"

    coupon_request, code_request = stub.requests_to("/v1/(coupons|promotion_codes)", "POST")
    assert coupon_request.form == {
        "amount_off": "500",
        "currency": "eur",
        "duration": "once",
        "max_redemptions": "1",
        "redeem_by": "1893456000",
    }
    assert coupon_request.idempotency_key == "redemption-r1-coupon"
    assert coupon_request.headers["authorization"] == "Bearer sk_test_encore_stub"
    assert code_request.form["restrictions"] == {"minimum_amount": "2000", "minimum_amount_currency": "eur"}
    assert code_request.form["promotion"] == {"type": "coupon", "coupon": coupon.id}
    assert code_request.idempotency_key == "redemption-r1-code"

    # The same key again: the first answer, nothing created; other parameters under it: an error.
    again = await client.v1.coupons.create_async(
        params={
            "amount_off": 500,
            "currency": "eur",
            "duration": "once",
            "max_redemptions": 1,
            "redeem_by": 1893456000,
        },
        options={"idempotency_key": "redemption-r1-coupon"},
    )
    assert again.id == coupon.id and len(stub.of("coupon")) == 1
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.coupons.create_async(
            params={"percent_off": 10, "duration": "once"},
            options={"idempotency_key": "redemption-r1-coupon"},
        )
    # An active code is unique; the old `coupon=` form is not the API's any more.
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        await client.v1.promotion_codes.create_async(
            params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "encore-5off"}
        )
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter"):
        await client.v1.promotion_codes.create_async(params={"coupon": coupon.id, "code": "OTHER"})  # type: ignore[typeddict-unknown-key]

    deactivated = await client.v1.promotion_codes.update_async(code.id, params={"active": False})
    assert not deactivated.active and not stub.get(code.id)["active"]
    assert stub.requests_to(f"/v1/promotion_codes/{code.id}")[-1].form == {"active": "false"}
    customer = await client.v1.customers.retrieve_async("cus_9")
    assert customer.id == "cus_9"


async def test_stripe_errors_reach_the_sdk_as_its_exceptions(stub: StripeStub) -> None:
    client = stub.client()
    assert (await client.v1.balance.retrieve_async()).object == "balance"

    with pytest.raises(stripe.AuthenticationError) as refused:
        await stub.client(REFUSED_KEY).v1.balance.retrieve_async()
    assert refused.value.http_status == 401 and "Invalid API Key" in str(refused.value.user_message)

    stub.fail(400, path="/v1/coupons", message="Invalid currency: xyz", param="currency")
    with pytest.raises(stripe.InvalidRequestError) as bad:
        await client.v1.coupons.create_async(params={"amount_off": 1, "currency": "xyz", "duration": "once"})
    assert bad.value.param == "currency" and bad.value.http_status == 400
    stub.fail(429)
    with pytest.raises(stripe.RateLimitError):
        await client.v1.balance.retrieve_async()
    stub.fail(500)
    with pytest.raises(stripe.APIError) as down:
        await client.v1.balance.retrieve_async()
    assert down.value.http_status == 500
    stub.fail(0)  # the connection closed without an answer
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.balance.retrieve_async()
    with stub.down(), pytest.raises(stripe.APIConnectionError):
        await client.v1.balance.retrieve_async()
    assert (await client.v1.balance.retrieve_async()).object == "balance"  # back, on the same port
    assert [r.status for r in stub.requests] == [200, 401, 400, 429, 500, 0, 200]


async def test_the_sdk_retries_a_500_with_the_same_idempotency_key(stub: StripeStub) -> None:
    stub.fail(500, times=1, path="/v1/coupons")
    client = stub.client(max_network_retries=1)
    coupon = await client.v1.coupons.create_async(params={"percent_off": 10, "duration": "once"})
    first, retry = stub.requests_to("/v1/coupons")
    assert (first.status, retry.status) == (500, 200)
    assert first.idempotency_key and first.idempotency_key == retry.idempotency_key  # the SDK's own key
    assert [c["id"] for c in stub.of("coupon")] == [coupon.id] and coupon.percent_off == 10.0


def test_signed_events_are_what_construct_event_accepts() -> None:
    session = {"id": "cs_test_1", "object": "checkout.session", "payment_status": "paid"}
    payload = event("checkout.session.completed", session)
    assert payload["object"] == "event" and payload["livemode"] is False and payload["id"].startswith("evt_")
    body, header = signed_event(payload, WEBHOOK_SECRET)
    assert header.startswith("t=") and ",v1=" in header
    client = stripe.StripeClient("sk_test_x")

    received = client.construct_event(body, header, WEBHOOK_SECRET)
    assert received.type == "checkout.session.completed" and received.data.object.id == "cs_test_1"
    assert json.loads(body) == payload

    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(body, header, "whsec_another_program")
    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(body.replace(b"paid", b"unpaid"), header, WEBHOOK_SECRET)
    old_body, old_header = signed_event(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        client.construct_event(old_body, old_header, WEBHOOK_SECRET)
    # The pitfall: the SDK takes a timestamp from the future; the service has to refuse it itself.
    future_body, future_header = signed_event(payload, WEBHOOK_SECRET, timestamp=int(time.time()) + 3600)
    assert client.construct_event(future_body, future_header, WEBHOOK_SECRET).id == payload["id"]
    live = event("refund.created", {"id": "re_1", "object": "refund"}, livemode=True, id="evt_live")
    assert (live["id"], live["livemode"], live["data"]["object"]["id"]) == ("evt_live", True, "re_1")


async def test_the_aiohttp_client_works_too(stub: StripeStub) -> None:
    stub.add_session("cs_test_2", line_items=[line_item(100, sku="A")])
    http = stripe.AIOHTTPClient()
    try:
        session = await stub.client(http_client=http).v1.checkout.sessions.retrieve_async(
            "cs_test_2", params={"expand": ["line_items.data.price.product"]}
        )
        assert session.line_items.data[0].price.product.metadata["sku"] == "A"
    finally:
        await http.close_async()
