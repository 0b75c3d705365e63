"""Encore's codes as Stripe promotion codes, with real parts: the official SDK against the local Stripe stub,
real PostgreSQL, the worker's outbound queue (caught up) and sync under the test clock, journeys run as
the worker runs them. What a coupon can say becomes a one-time coupon and promotion code; what it cannot
stays Encore-only; Stripe's failures are retried without duplicates or given up with the points back;
closed codes are deactivated; `reward_issued` waits for Stripe."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.clock import FrozenClock
from service.outreach import jobs as outreach
from service.rewards import jobs as reward_jobs
from service.stripe import outbound, repository
from tests.conftest import fetch, in_app, make_program, order_body, verify_ledger
from tests.integration.test_messaging import setup_program
from tests.integration.test_rewards import earn, redeem, reward
from tests.integration.test_stripe import Flow, drain
from tests.support.stripe_stub import StripeStub, event


@pytest.fixture
def flow(
    client: AsyncTestClient[Litestar],
    stripe_stub: StripeStub,
    database_url: str,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Flow:
    # Stripe's times are real (the wall clock); the SDK's own retries wait 10 ms, not half a second.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe.HTTPClient, "MAX_DELAY", 0.02)
    clock.set(datetime.now().astimezone().replace(microsecond=0))
    return Flow(make_program(client), stripe_stub, client, database_url, clock)


FIVE_OFF = {
    "kind": "amount_off",
    "name": {"en": "EUR 5 off"},
    "cost_points": 50,
    "amount": {"amount": 500, "currency": "EUR"},
    "code_valid_days": 30,
}


async def issue(
    flow: Flow, customer: str = "ann", points: int = 100, spend: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """A reward (FIVE_OFF with `overrides`), points for `customer`, and the code they redeem (`spend`: the
    points a points_for_discount redemption spends)."""
    made = await reward(flow.api, **{**FIVE_OFF, **overrides})
    await earn(flow.api, points, customer)
    body = {} if spend is None else {"points": spend}
    redeemed = await redeem(flow.api, made["id"], customer, **body)
    assert redeemed.status_code == 201, redeemed.text
    result: dict[str, Any] = redeemed.json()
    return result


def outbox(flow: Flow, topic: str) -> list[dict[str, Any]]:
    return [
        db.json_value(r["payload"])
        for r in fetch(flow.client, "SELECT payload FROM outbox WHERE topic = $1 ORDER BY tx, seq", topic)
    ]


def code_row(flow: Flow, redemption_id: str) -> dict[str, Any]:
    [row] = fetch(flow.client, "SELECT * FROM stripe_code WHERE redemption_id = $1::uuid", redemption_id)
    return row


async def shown(flow: Flow, redemption_id: str) -> dict[str, Any]:
    response = await flow.client.get(f"/v1/redemptions/{redemption_id}", headers=flow.api.headers())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def available(flow: Flow, customer: str = "ann") -> int:
    return int((await flow.api.status(customer))["points"]["available"])


def stripe_writes(flow: Flow) -> list[str]:
    return [r.path for r in flow.stub.requests_to(r"/v1/(coupons|promotion_codes).*", "POST")]


def sync(flow: Flow) -> outbound.Synced:
    """What the worker's `stripe.codes` job does: the outbound queue (caught up), then one sync run."""
    drain(flow, outbound.CONSUMER, outbound.queue)
    result: outbound.Synced = in_app(
        flow.client, outbound.Syncer(flow.settings, flow.clock, "test-worker").run
    )
    return result


# --- what Stripe is asked for ----------------------------------------------------------------------


async def test_an_amount_off_code_becomes_a_one_time_coupon_and_a_promotion_code_for_its_customer(
    flow: Flow,
) -> None:
    await flow.connect()
    flow.stub.add_customer("cus_ann")
    put = await flow.client.put(
        "/v1/customers/ann", json={"stripe_customer_id": "cus_ann"}, headers=flow.api.headers()
    )
    assert put.status_code in (200, 201), put.text
    code = await issue(flow, min_order={"amount": 2000, "currency": "EUR"})
    rid = code["id"]

    synced = sync(flow)
    assert (synced.created, synced.retrying, synced.failed) == (1, 0, 0), synced
    [coupon] = flow.stub.of("coupon")
    expires = int(datetime.fromisoformat(code["expires_at"]).timestamp())
    assert coupon["amount_off"] == 500 and coupon["currency"] == "eur" and coupon["percent_off"] is None
    assert coupon["duration"] == "once" and coupon["max_redemptions"] == 1
    assert coupon["redeem_by"] == expires
    assert coupon["metadata"] == {"encore_redemption_id": rid}
    [promotion] = flow.stub.of("promotion_code")
    assert promotion["code"] == code["code"] and "-" in code["code"]
    assert promotion["promotion"] == {"type": "coupon", "coupon": coupon["id"]}
    assert promotion["max_redemptions"] == 1 and promotion["active"] is True
    assert promotion["customer"] == "cus_ann"
    assert promotion["expires_at"] == expires
    assert promotion["restrictions"]["minimum_amount"] == 2000
    assert promotion["restrictions"]["minimum_amount_currency"] == "eur"
    assert promotion["metadata"] == {"encore_redemption_id": rid}
    # Idempotency keys from the redemption id: a retry after a crash makes nothing twice.
    [coupon_call] = flow.stub.requests_to("/v1/coupons", "POST")
    [promotion_call] = flow.stub.requests_to("/v1/promotion_codes", "POST")
    assert coupon_call.idempotency_key == f"encore-{rid}-coupon-1"
    assert promotion_call.idempotency_key == f"encore-{rid}-promotion-1"
    assert promotion_call.form["promotion"] == {"type": "coupon", "coupon": coupon["id"]}

    row = code_row(flow, rid)
    assert row["status"] == "synced" and row["active"] and row["active_wanted"]
    assert (row["coupon_id"], row["promotion_code_id"]) == (coupon["id"], promotion["id"])
    [announced] = outbox(flow, "redemption.synced")
    assert announced["redemption_id"] == rid and announced["code"] == code["code"]
    assert announced["stripe"] == {
        "status": "synced",
        "promotion_code": promotion["id"],
        "coupon": coupon["id"],
        "code": promotion["code"],
    }
    # Done is done: another run asks Stripe nothing.
    again = sync(flow)
    assert again == outbound.Synced() and len(stripe_writes(flow)) == 2


async def test_a_customer_unknown_to_stripe_gets_an_unrestricted_code_without_a_minimum(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow, customer="ben")
    assert sync(flow).created == 1
    [promotion] = flow.stub.of("promotion_code")
    assert promotion["customer"] is None
    assert promotion["restrictions"]["minimum_amount"] is None
    [call] = flow.stub.requests_to("/v1/promotion_codes", "POST")
    assert "customer" not in call.form and "restrictions" not in call.form
    assert promotion["code"] == code["code"]


async def test_percent_and_points_for_discount_codes_become_their_coupons(flow: Flow) -> None:
    await flow.connect()
    await issue(flow, kind="percent_off", amount=None, percent=15, name={"en": "15 % off"})
    await issue(
        flow,
        customer="ben",
        points=500,
        spend=300,
        kind="points_for_discount",
        name={"en": "Points off"},
        cost_points=None,
        amount=None,
        points_step=100,
        step_amount={"amount": 100, "currency": "EUR"},
    )
    assert sync(flow).created == 2
    by_kind = {("percent" if c["percent_off"] else "amount"): c for c in flow.stub.of("coupon")}
    assert by_kind["percent"]["percent_off"] == 15.0
    assert by_kind["percent"]["amount_off"] is None and by_kind["percent"]["currency"] is None
    assert by_kind["amount"]["amount_off"] == 300 and by_kind["amount"]["currency"] == "eur"
    assert all(c["duration"] == "once" and c["max_redemptions"] == 1 for c in by_kind.values())
    assert len(flow.stub.of("promotion_code")) == 2


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"kind": "percent_off", "amount": None, "percent": 10, "cap": {"amount": 500, "currency": "EUR"}},
            "cap a percentage",
        ),
        ({"kind": "free_shipping", "amount": None}, "shipping"),
        ({"kind": "free_product", "amount": None, "sku": "TEE"}, "product"),
        ({"kind": "custom", "amount": None, "value": {"amount": 2000, "currency": "EUR"}}, "custom"),
    ],
    ids=["capped-percent", "free-shipping", "free-product", "custom"],
)
async def test_what_a_coupon_cannot_express_stays_encore_only_and_says_why(
    flow: Flow, overrides: dict[str, Any], reason: str
) -> None:
    await flow.connect()
    code = await issue(flow, **overrides)
    synced = sync(flow)
    assert (synced.encore_only, synced.created) == (1, 0), synced
    assert stripe_writes(flow) == [] and flow.stub.of("coupon") == []
    [announced] = outbox(flow, "redemption.synced")
    assert announced["redemption_id"] == code["id"]
    assert announced["stripe"]["status"] == "encore_only" and reason in announced["stripe"]["reason"]
    assert code_row(flow, code["id"])["status"] == "encore_only"
    assert (await shown(flow, code["id"]))["status"] == "issued"
    assert sync(flow) == outbound.Synced()


# --- Stripe failing --------------------------------------------------------------------------------


async def test_stripe_unreachable_is_retried_later_and_creates_the_code_once(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow)
    with flow.stub.down():
        synced = sync(flow)
    assert (synced.retrying, synced.created, synced.failed) == (1, 0, 0), synced
    row = code_row(flow, code["id"])
    assert row["status"] == "pending" and row["last_error"]
    assert sync(flow) == outbound.Synced(), "not due before its backoff"
    flow.clock.advance(timedelta(seconds=11))
    assert sync(flow).created == 1
    assert len(flow.stub.of("coupon")) == 1 and len(flow.stub.of("promotion_code")) == 1
    assert code_row(flow, code["id"])["last_error"] is None
    assert (await shown(flow, code["id"]))["status"] == "issued"


async def test_a_500_is_retried_by_the_sdk_with_the_same_key(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow)
    flow.stub.fail(500, times=1, path="^/v1/coupons$")
    assert sync(flow).created == 1
    calls = flow.stub.requests_to("/v1/coupons", "POST")
    assert [c.status for c in calls] == [500, 200]
    assert {c.idempotency_key for c in calls} == {f"encore-{code['id']}-coupon-1"}
    assert len(flow.stub.of("coupon")) == 1


async def test_500s_beyond_the_sdks_retries_and_a_429_wait_for_the_next_attempt(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow)
    flow.stub.fail(500, times=3, path="^/v1/coupons$")  # the SDK's first try and both its retries
    assert sync(flow).retrying == 1
    assert flow.stub.of("coupon") == []
    flow.clock.advance(timedelta(seconds=11))
    flow.stub.fail(429, times=1, path="^/v1/promotion_codes$")  # the SDK does not retry a 429
    assert sync(flow).retrying == 1
    assert "429" in code_row(flow, code["id"])["last_error"]
    flow.clock.advance(timedelta(seconds=21))
    assert sync(flow).created == 1
    # The coupon made on the second attempt is found, not made again, on the third (a key of its own
    # each attempt: Stripe would answer a key's first 500 again for a day).
    assert len(flow.stub.of("coupon")) == 1 and len(flow.stub.of("promotion_code")) == 1
    coupon_calls = flow.stub.requests_to("/v1/coupons", "POST")
    assert [c.status for c in coupon_calls] == [500, 500, 500, 200, 400]
    assert [c.idempotency_key for c in coupon_calls] == [
        f"encore-{code['id']}-coupon-{n}" for n in (1, 1, 1, 2, 3)
    ]
    assert [c.status for c in flow.stub.requests_to(f"/v1/coupons/encore-{code['id']}", "GET")] == [200]
    assert code_row(flow, code["id"])["coupon_id"] == flow.stub.of("coupon")[0]["id"]


async def test_a_permanent_refusal_cancels_the_code_and_gives_its_points_back(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow)
    assert await available(flow) == 50
    flow.stub.fail(400, times=None, path="^/v1/coupons$")
    synced = sync(flow)
    assert (synced.failed, synced.retrying, synced.created) == (1, 0, 0), synced
    assert len(flow.stub.requests_to("/v1/coupons", "POST")) == 1, "a 400 is not retried"
    assert flow.stub.of("promotion_code") == []
    after = await shown(flow, code["id"])
    assert after["status"] == "cancelled" and after["points_returned"] == 50
    assert await available(flow) == 100
    [failed] = outbox(flow, "redemption.stripe_failed")
    assert failed["redemption_id"] == code["id"] and "400" in failed["error"]
    assert code_row(flow, code["id"])["status"] == "failed"
    assert outbox(flow, "redemption.synced") == []
    flow.stub.clear_failures()
    assert sync(flow) == outbound.Synced()
    verify_ledger(flow.client)


# --- closing codes ---------------------------------------------------------------------------------


async def _synced(flow: Flow, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    await flow.connect()
    code = await issue(flow, **overrides)
    assert sync(flow).created == 1
    [promotion] = flow.stub.of("promotion_code")
    return code, promotion


def deactivations(flow: Flow, promotion_id: str) -> list[dict[str, Any]]:
    return [r.form for r in flow.stub.requests_to(f"/v1/promotion_codes/{promotion_id}", "POST")]


async def test_cancelling_a_synced_code_deactivates_its_promotion_code(flow: Flow) -> None:
    code, promotion = await _synced(flow)
    cancelled = await flow.client.post(
        f"/v1/redemptions/{code['id']}/cancel", json={}, headers=flow.api.headers()
    )
    assert cancelled.status_code == 200, cancelled.text
    assert sync(flow).deactivated == 1
    assert flow.stub.get(promotion["id"])["active"] is False
    assert deactivations(flow, promotion["id"]) == [{"active": "false"}]
    assert not code_row(flow, code["id"])["active"]
    assert sync(flow) == outbound.Synced(), "once"


async def test_an_expired_code_is_deactivated(flow: Flow) -> None:
    code, promotion = await _synced(flow, code_valid_days=1)
    flow.clock.advance(timedelta(days=1, minutes=1))
    assert in_app(flow.client, reward_jobs.expire_codes, flow.clock.now()).codes == 1
    assert sync(flow).deactivated == 1
    assert flow.stub.get(promotion["id"])["active"] is False
    assert (await shown(flow, code["id"]))["status"] == "expired"


async def test_a_code_used_on_an_api_order_is_deactivated_in_stripe(flow: Flow) -> None:
    code, promotion = await _synced(flow)
    order = await flow.client.post(
        "/v1/orders", json=order_body("o-1", "ann", codes=[code["code"]]), headers=flow.api.headers()
    )
    assert order.status_code == 201, order.text
    assert order.json()["codes"][0]["result"] == "applied"
    assert sync(flow).deactivated == 1
    assert flow.stub.get(promotion["id"])["active"] is False


async def test_a_code_cancelled_before_its_sync_never_reaches_stripe(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow)
    cancelled = await flow.client.post(
        f"/v1/redemptions/{code['id']}/cancel", json={}, headers=flow.api.headers()
    )
    assert cancelled.status_code == 200, cancelled.text
    synced = sync(flow)
    assert (synced.created, synced.deactivated) == (0, 0), synced
    assert stripe_writes(flow) == []
    assert outbox(flow, "redemption.synced") == []
    assert sync(flow) == outbound.Synced()


async def test_a_deactivation_long_after_the_sync_is_retried_not_given_up(flow: Flow) -> None:
    code, promotion = await _synced(flow)
    flow.clock.advance(timedelta(days=3))  # the code was synced days ago; now it is cancelled
    cancelled = await flow.client.post(
        f"/v1/redemptions/{code['id']}/cancel", json={}, headers=flow.api.headers()
    )
    assert cancelled.status_code == 200, cancelled.text
    flow.stub.fail(500, times=3, path="^/v1/promotion_codes/")
    assert sync(flow).retrying == 1
    assert flow.stub.get(promotion["id"])["active"] is True
    flow.clock.advance(timedelta(hours=1))
    assert sync(flow).deactivated == 1
    assert flow.stub.get(promotion["id"])["active"] is False


async def test_a_row_another_worker_holds_is_not_claimed_when_its_code_closes(flow: Flow) -> None:
    """A worker is creating the code in Stripe (its lease runs); the code is cancelled meanwhile. Another
    worker must not take the row over (it would mark it Encore-only and lose the promotion code the first
    one is making): the first finishes, then the promotion code is deactivated."""
    await flow.connect()
    code = await issue(flow)
    drain(flow, outbound.CONSUMER, outbound.queue)

    async def claim() -> list[dict[str, Any]]:
        async with db.transaction() as conn:
            return await repository.claim_codes(conn, flow.clock.now(), 10, "worker-a", timedelta(minutes=5))

    assert len(in_app(flow.client, claim)) == 1
    cancelled = await flow.client.post(
        f"/v1/redemptions/{code['id']}/cancel", json={}, headers=flow.api.headers()
    )
    assert cancelled.status_code == 200, cancelled.text
    taken = sync(flow)  # worker "test-worker": queue marks the row closed, the sync runs
    assert taken == outbound.Synced(), taken
    assert code_row(flow, code["id"])["claimed_by"] == "worker-a"


async def test_a_checkout_naming_the_code_only_in_its_breakdown_marks_it_used(flow: Flow) -> None:
    code, promotion = await _synced(flow)
    coupon = flow.stub.get(promotion["promotion"]["coupon"])
    session = await flow.checkout(
        metadata={"encore_customer_id": "ann"},
        discounts=[],
        total_details={
            "amount_discount": 500,
            "breakdown": {
                "discounts": [
                    {
                        "amount": 500,
                        "discount": {
                            "id": "di_1",
                            "object": "discount",
                            "coupon": coupon,
                            "promotion_code": promotion["id"],
                        },
                    }
                ],
                "taxes": [],
            },
        },
    )
    sent = copy.deepcopy(session)
    sent["total_details"].pop("breakdown", None)  # an event carries no expansion
    assert (await flow.send(event("checkout.session.completed", sent))).status_code == 200
    assert flow.process().processed == 1
    after = await shown(flow, code["id"])
    assert after["status"] == "used" and after["order_external_id"] == "cs_test_1", after
    assert sync(flow).deactivated == 1


# --- connection -------------------------------------------------------------------------------------


async def test_without_a_connection_nothing_is_queued(flow: Flow) -> None:
    code = await issue(flow)
    assert sync(flow) == outbound.Synced()
    assert fetch(flow.client, "SELECT * FROM stripe_code") == []
    assert flow.stub.requests == []
    assert (await shown(flow, code["id"]))["status"] == "issued"


async def test_a_disconnected_program_keeps_its_pending_codes_as_encore_only(flow: Flow) -> None:
    await flow.connect()
    code = await issue(flow)
    drain(flow, outbound.CONSUMER, outbound.queue)  # the worker queued it while connected
    gone = await flow.client.delete("/v1/stripe/connection", headers=flow.api.headers())
    assert gone.status_code in (200, 204), gone.text
    synced = sync(flow)
    assert (synced.encore_only, synced.failed) == (1, 0), synced
    assert (await shown(flow, code["id"]))["status"] == "issued"
    assert await available(flow) == 50
    [announced] = outbox(flow, "redemption.synced")
    assert announced["stripe"]["status"] == "encore_only" and "connect" in announced["stripe"]["reason"]
    assert outbox(flow, "redemption.stripe_failed") == []


# --- journeys ---------------------------------------------------------------------------------------


async def _journey_on(flow: Flow) -> None:
    await setup_program(flow.api)
    enabled = await flow.client.patch(
        "/v1/journeys/reward_issued", json={"enabled": True}, headers=flow.api.headers()
    )
    assert enabled.status_code == 200, enabled.text
    flow.clock.advance(timedelta(minutes=1))
    put = await flow.client.put(
        "/v1/customers/ann", json={"email": "ann@example.com", "name": "Ann"}, headers=flow.api.headers()
    )
    assert put.status_code in (200, 201), put.text


def run_journeys(flow: Flow) -> None:
    drain(flow, outreach.CONSUMER, outreach.enter_from_events)
    in_app(flow.client, outreach.advance, flow.clock.now())


def issued_messages(flow: Flow, redemption_id: str) -> list[dict[str, Any]]:
    """The `reward_issued` journey's messages about one redemption (queued or later: sending is not ours)."""
    return fetch(
        flow.client,
        "SELECT m.id, m.status, m.context FROM message m JOIN journey j ON j.id = m.journey_id "
        "WHERE j.key = 'reward_issued' AND m.trigger_key = $1",
        f"redemption:{redemption_id}",
    )


async def test_a_stripe_code_is_announced_once_and_only_after_its_sync(flow: Flow) -> None:
    await flow.connect()
    await _journey_on(flow)
    code = await issue(flow)
    run_journeys(flow)
    assert issued_messages(flow, code["id"]) == [], "not before Stripe has it"
    assert sync(flow).created == 1
    run_journeys(flow)
    assert len(issued_messages(flow, code["id"])) == 1
    flow.clock.advance(timedelta(minutes=5))
    sync(flow)
    run_journeys(flow)
    assert len(issued_messages(flow, code["id"])) == 1


async def test_an_encore_only_code_of_a_connected_program_is_announced_by_its_sync_once(flow: Flow) -> None:
    await flow.connect()
    await _journey_on(flow)
    code = await issue(flow, kind="free_shipping", amount=None, name={"en": "Free shipping"})
    run_journeys(flow)
    assert issued_messages(flow, code["id"]) == []
    assert sync(flow).encore_only == 1
    run_journeys(flow)
    run_journeys(flow)
    assert len(issued_messages(flow, code["id"])) == 1


async def test_without_a_connection_the_code_is_announced_at_once(flow: Flow) -> None:
    await _journey_on(flow)
    code = await issue(flow)
    run_journeys(flow)
    assert len(issued_messages(flow, code["id"])) == 1
    sync(flow)
    run_journeys(flow)
    assert len(issued_messages(flow, code["id"])) == 1


async def test_a_code_issued_before_the_program_connected_is_not_held_for_stripe(flow: Flow) -> None:
    """The Stripe consumer passed the code while the program was not connected (nothing queued); the
    journeys see it after the connection: they must not wait for a sync that will never come."""
    await _journey_on(flow)
    code = await issue(flow)
    drain(flow, outbound.CONSUMER, outbound.queue)
    flow.clock.advance(timedelta(seconds=1))
    await flow.connect()
    run_journeys(flow)
    assert len(issued_messages(flow, code["id"])) == 1
    assert sync(flow) == outbound.Synced() and stripe_writes(flow) == []
