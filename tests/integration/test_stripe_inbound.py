"""The inbound side of the Stripe integration with real parts: signed events posted to the app's webhook,
the official SDK fetching sessions and line items from the local Stripe stub, the worker's Processor run
inside the app's loop, the database read back to see what was written (and what was not)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core.clock import FrozenClock
from service.stripe import inbound
from tests.conftest import fetch, idempotency, in_app, make_program
from tests.integration.test_stripe import Flow
from tests.support.cli import encore
from tests.support.stripe_stub import API_KEY, WEBHOOK_SECRET, StripeStub, event, fixture, line_item

PROBLEM = "application/problem+json"
TAXED = {"amount_tax": 600}  # 20 % on 3000: amount_total 3600, the order's total 3000


@pytest.fixture
def flow(
    client: AsyncTestClient[Litestar], stripe_stub: StripeStub, database_url: str, clock: FrozenClock
) -> Flow:
    """As test_stripe's: the test clock at the wall clock (Stripe's times are real), a connected-to-be program."""
    clock.set(datetime.now(UTC).replace(microsecond=0))
    return Flow(make_program(client), stripe_stub, client, database_url, clock)


# --- helpers -------------------------------------------------------------------------------------


def refund(
    session: dict[str, Any], amount: int, id: str, status: str = "succeeded", currency: str = "eur"
) -> dict[str, Any]:
    return fixture(
        "refund",
        id=id,
        amount=amount,
        currency=currency,
        status=status,
        payment_intent=session["payment_intent"],
        charge="ch_of_" + session["id"],
    )


def charge(
    session: dict[str, Any], amount_refunded: int, refunds: list[dict[str, Any]] | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "ch_of_" + session["id"],
        "amount": session["amount_total"],
        "amount_captured": session["amount_total"],
        "amount_refunded": amount_refunded,
        "currency": "eur",
        "payment_intent": session["payment_intent"],
        "refunded": amount_refunded >= session["amount_total"],
    }
    obj = fixture("charge", **fields)
    if refunds is None:
        obj.pop("refunds", None)
    else:
        obj["refunds"] = {"object": "list", "data": refunds, "has_more": False, "url": "/v1/refunds"}
    return obj


def dispute(session: dict[str, Any], status: str, id: str = "dp_1") -> dict[str, Any]:
    return fixture(
        "dispute",
        id=id,
        amount=session["amount_total"],
        currency="eur",
        status=status,
        payment_intent=session["payment_intent"],
        charge="ch_of_" + session["id"],
    )


async def order_of(flow: Flow, external_id: str = "cs_test_1") -> dict[str, Any]:
    response = await flow.client.get(f"/v1/orders/{external_id}", headers=flow.api.headers())
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def no_order(flow: Flow, external_id: str = "cs_test_1") -> None:
    response = await flow.client.get(f"/v1/orders/{external_id}", headers=flow.api.headers())
    assert response.status_code == 404, response.text


async def delivered(flow: Flow, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = await flow.send(payload, **kw)
    assert response.status_code == 200, response.text
    received: dict[str, Any] = response.json()
    return received


async def by_stripe_id(flow: Flow) -> dict[str, dict[str, Any]]:
    return {e["stripe_id"]: e for e in await flow.events()}


def stored(client: AsyncTestClient[Litestar]) -> int:
    return int(fetch(client, "SELECT count(*) AS n FROM stripe_event")[0]["n"])


def balance(status: dict[str, Any]) -> int:
    points = status["points"]
    return int(points["pending"]) + int(points["available"])


async def paid(flow: Flow, session_id: str = "cs_test_1", **fields: Any) -> dict[str, Any]:
    """A paid checkout (with tax unless told), delivered and processed into an order."""
    fields.setdefault("total_details", TAXED)
    session = await flow.checkout(session_id, **fields)
    await delivered(flow, event("checkout.session.completed", session))
    counts = flow.process()
    assert counts.processed == 1, await flow.events()
    return session


# --- async payments ------------------------------------------------------------------------------


async def test_an_unpaid_checkout_waits_for_its_async_payment(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout(payment_status="unpaid")
    completed = event("checkout.session.completed", session)
    await delivered(flow, completed)
    assert flow.process().ignored == 1
    await no_order(flow)
    shown = (await by_stripe_id(flow))[completed["id"]]
    assert shown["status"] == "ignored" and "async_payment_succeeded" in shown["outcome"]
    flow.stub.update("cs_test_1", payment_status="paid")
    succeeded = event("checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"})
    await delivered(flow, succeeded)
    assert flow.process().processed == 1
    order = await order_of(flow)
    assert order["total_amount"] == 3000 and order["points_earned"] > 0
    assert (await by_stripe_id(flow))[succeeded["id"]]["status"] == "processed"


@pytest.mark.parametrize("kind", ["checkout.session.async_payment_failed", "checkout.session.expired"])
async def test_failed_or_expired_checkouts_earn_nothing(flow: Flow, kind: str) -> None:
    await flow.connect()
    session = await flow.checkout(
        payment_status="unpaid", status="expired" if "expired" in kind else "complete"
    )
    received = await delivered(flow, event(kind, session))
    assert received["status"] == "ignored"
    assert flow.process().claimed == 0
    await no_order(flow)
    [shown] = await flow.events()
    assert shown["status"] == "ignored" and kind in shown["outcome"]
    assert fetch(flow.client, "SELECT count(*) AS n FROM points_entry")[0]["n"] == 0


# --- refunds ---------------------------------------------------------------------------------------


async def test_partial_refunds_of_a_taxed_checkout_add_up_to_the_order(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    assert session["amount_total"] == 3600
    order = await order_of(flow)
    earned = order["points_earned"]
    assert order["total_amount"] == 3000 and earned > 0
    # 1000 of 3600 charged is 833.33 of the order's 3000
    await delivered(flow, event("refund.created", refund(session, 1000, "re_a")))
    flow.process()
    order = await order_of(flow)
    assert order["refunded_amount"] == 1000 * 3000 // 3600
    assert 0 < order["points_reversed"] < earned
    await delivered(flow, event("refund.created", refund(session, 1000, "re_b")))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 2000 * 3000 // 3600
    await delivered(flow, event("refund.created", refund(session, 1600, "re_c")))
    flow.process()
    order = await order_of(flow)
    assert order["refunded_amount"] == 3000 and order["points_reversed"] == earned
    assert order["status"] == "refunded", order
    shares = fetch(flow.client, "SELECT refund_id, order_amount FROM stripe_refund ORDER BY refund_id")
    assert [r["order_amount"] for r in shares] == [833, 833, 1334]
    assert {e["status"] for e in await flow.events()} == {"processed"}


async def test_half_refunds_give_half_the_order_back(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    await delivered(flow, event("refund.created", refund(session, 1800, "re_half")))
    flow.process()
    order = await order_of(flow)
    assert order["refunded_amount"] == 1500
    await delivered(flow, event("refund.updated", refund(session, 1800, "re_other_half")))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 3000


async def test_refund_created_then_updated_reverses_once(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    created = event("refund.created", refund(session, 1800, "re_1"))
    updated = event("refund.updated", refund(session, 1800, "re_1"), previous_attributes={"metadata": {}})
    await delivered(flow, created)
    flow.process()
    await delivered(flow, updated)
    flow.process()
    order = await order_of(flow)
    assert order["refunded_amount"] == 1500
    shown = await by_stripe_id(flow)
    assert shown[created["id"]]["status"] == "processed"
    assert shown[updated["id"]]["status"] == "ignored" and "already" in shown[updated["id"]]["outcome"]
    assert fetch(flow.client, "SELECT count(*) AS n FROM refund")[0]["n"] == 1


@pytest.mark.parametrize("status", ["pending", "requires_action", "failed", "canceled"])
async def test_refunds_that_did_not_succeed_reverse_nothing(flow: Flow, status: str) -> None:
    await flow.connect()
    session = await paid(flow)
    sent = event("refund.created", refund(session, 3600, "re_no", status=status))
    await delivered(flow, sent)
    assert flow.process().ignored == 1
    order = await order_of(flow)
    assert order["refunded_amount"] == 0 and order["points_reversed"] == 0
    assert status in (await by_stripe_id(flow))[sent["id"]]["outcome"]
    assert fetch(flow.client, "SELECT count(*) AS n FROM stripe_refund")[0]["n"] == 0


async def test_a_pending_refund_that_later_succeeds_is_reversed_then(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    await delivered(flow, event("refund.created", refund(session, 1800, "re_p", status="pending")))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 0
    await delivered(flow, event("refund.updated", refund(session, 1800, "re_p")))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 1500


async def test_charge_refunded_of_an_old_api_version_with_its_refunds_listed(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    first = refund(session, 1200, "re_old_1")
    await delivered(flow, event("charge.refunded", charge(session, 1200, [first]), api_version="2023-10-16"))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 1000
    # Stripe lists every refund of the charge each time: the first is not reversed again
    second = refund(session, 2400, "re_old_2")
    again = event("charge.refunded", charge(session, 3600, [second, first]), api_version="2023-10-16")
    await delivered(flow, again)
    flow.process()
    order = await order_of(flow)
    assert order["refunded_amount"] == 3000 and order["status"] == "refunded"
    assert fetch(flow.client, "SELECT count(*) AS n FROM refund")[0]["n"] == 2
    assert (await by_stripe_id(flow))[again["id"]]["status"] == "processed"


@pytest.mark.parametrize("listed", [None, []], ids=["no refunds", "an empty list"])
async def test_charge_refunded_of_an_old_api_version_without_the_list(
    flow: Flow, listed: list[Any] | None
) -> None:
    await flow.connect()
    session = await paid(flow)
    first = event("charge.refunded", charge(session, 1800, listed), api_version="2023-10-16")
    await delivered(flow, first)
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 1500
    # the same event again under another id (Stripe resends): nothing new refunded
    same = event("charge.refunded", charge(session, 1800, listed), api_version="2023-10-16")
    await delivered(flow, same)
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 1500
    assert (await by_stripe_id(flow))[same["id"]]["status"] == "ignored"
    rest = event("charge.refunded", charge(session, 3600, listed), api_version="2023-10-16")
    await delivered(flow, rest)
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 3000


async def test_charge_refunded_of_a_new_api_version_is_ignored(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    sent = event("charge.refunded", charge(session, 3600, [refund(session, 3600, "re_new")]))
    assert sent["api_version"] >= "2024-10-28"
    await delivered(flow, sent)
    assert flow.process().ignored == 1
    assert (await order_of(flow))["refunded_amount"] == 0
    assert "refund.created" in (await by_stripe_id(flow))[sent["id"]]["outcome"]


async def test_a_refund_larger_than_the_order_refunds_the_rest(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    await delivered(flow, event("refund.created", refund(session, 1800, "re_1")))
    flow.process()
    big = event("refund.created", refund(session, 99_999, "re_big"))
    await delivered(flow, big)
    flow.process()
    order = await order_of(flow)
    assert order["refunded_amount"] == 3000 and order["status"] == "refunded"
    shown = (await by_stripe_id(flow))[big["id"]]
    assert shown["status"] == "processed" and "re_big" in shown["outcome"], shown
    [row] = fetch(flow.client, "SELECT amount, order_amount FROM stripe_refund WHERE refund_id = 're_big'")
    assert row == {"amount": 99_999, "order_amount": 1500}
    # and one more after everything was given back: recorded, nothing left to reverse
    late = event("refund.created", refund(session, 100, "re_late"))
    await delivered(flow, late)
    flow.process()
    shown = (await by_stripe_id(flow))[late["id"]]
    assert shown["status"] == "ignored" and "nothing left" in shown["outcome"], shown
    assert (await order_of(flow))["refunded_amount"] == 3000


async def test_a_refund_in_another_currency_fails_with_the_reason(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    sent = event("refund.created", refund(session, 100, "re_usd", currency="usd"))
    await delivered(flow, sent)
    assert flow.process().failed == 1
    shown = (await by_stripe_id(flow))[sent["id"]]
    assert "USD" in shown["last_error"] and "EUR" in shown["last_error"]
    assert (await order_of(flow))["refunded_amount"] == 0


async def test_an_event_that_breaks_processing_is_retried_then_failed_not_raised(flow: Flow) -> None:
    """What no branch expects (here a refund whose amount is no number) is retried with backoff and then
    failed with its message; the worker's run goes on."""
    await flow.connect()
    session = await paid(flow)
    odd = refund(session, 100, "re_odd")
    odd["amount"] = "lots"
    sent = event("refund.created", odd)
    await delivered(flow, sent)
    fine = event("refund.created", refund(session, 1800, "re_fine"))
    await delivered(flow, fine)
    counts = flow.process()
    assert (counts.waiting, counts.processed) == (1, 1), counts
    shown = await by_stripe_id(flow)
    assert shown[sent["id"]]["status"] == "waiting" and "ValueError" in shown[sent["id"]]["last_error"]
    assert (await order_of(flow))["refunded_amount"] == 1500
    for _ in range(inbound.MAX_ATTEMPTS):
        flow.clock.advance(timedelta(hours=2))
        flow.process()
    shown = await by_stripe_id(flow)
    assert shown[sent["id"]]["status"] == "failed" and "gave up" in shown[sent["id"]]["last_error"]


# --- disputes --------------------------------------------------------------------------------------


async def test_a_lost_dispute_reverses_what_is_left(flow: Flow) -> None:
    await flow.connect()
    session = await paid(flow)
    earned = (await order_of(flow))["points_earned"]
    await delivered(flow, event("refund.created", refund(session, 1200, "re_part")))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 1000
    lost = event("charge.dispute.closed", dispute(session, "lost"))
    await delivered(flow, lost)
    assert flow.process().processed == 1, await flow.events()
    order = await order_of(flow)
    assert order["refunded_amount"] == 3000 and order["points_reversed"] == earned
    assert "lost dispute" in (await by_stripe_id(flow))[lost["id"]]["outcome"]
    [row] = fetch(flow.client, "SELECT amount, order_amount FROM stripe_refund WHERE refund_id = 'dp_1'")
    assert row == {"amount": 2400, "order_amount": 2000}
    # the same dispute closed again (another event): not reversed twice
    again = event("charge.dispute.closed", dispute(session, "lost"))
    await delivered(flow, again)
    assert flow.process().ignored == 1


@pytest.mark.parametrize("status", ["won", "warning_closed"])
async def test_a_dispute_not_lost_is_ignored(flow: Flow, status: str) -> None:
    await flow.connect()
    session = await paid(flow)
    sent = event("charge.dispute.closed", dispute(session, status))
    await delivered(flow, sent)
    assert flow.process().ignored == 1
    assert (await order_of(flow))["refunded_amount"] == 0
    assert status in (await by_stripe_id(flow))[sent["id"]]["outcome"]


# --- modes -----------------------------------------------------------------------------------------


async def test_a_test_mode_event_on_a_live_connection_is_ignored(flow: Flow) -> None:
    connected = await flow.connect(api_key="sk_live_encore_stub_live_key")
    assert connected["mode"] == "live"
    session = await flow.checkout()
    received = await delivered(flow, event("checkout.session.completed", session, livemode=False))
    assert received["status"] == "ignored"
    assert flow.process().claimed == 0
    await no_order(flow)
    [shown] = await flow.events()
    assert shown["status"] == "ignored" and "test-mode event on a live-mode connection" in shown["outcome"]
    assert not flow.stub.requests_to(r"/v1/checkout/sessions/.*")
    # a live event is acted on
    live = event("checkout.session.completed", {**session, "livemode": True}, livemode=True)
    await delivered(flow, live)
    assert flow.process().processed == 1
    assert (await order_of(flow))["total_amount"] == 3000


async def test_a_live_event_on_a_test_connection_is_ignored(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    received = await delivered(flow, event("checkout.session.completed", session, livemode=True))
    assert received["status"] == "ignored"
    await no_order(flow)


# --- Stripe down -----------------------------------------------------------------------------------


async def _waits_then_recovers(flow: Flow) -> dict[str, Any]:
    [shown] = await flow.events()
    assert shown["status"] == "waiting" and shown["last_error"], shown
    await no_order(flow)
    assert flow.process().claimed == 0  # not due yet
    flow.clock.advance(timedelta(minutes=5))
    assert flow.process().processed == 1, await flow.events()
    [shown] = await flow.events()
    assert shown["status"] == "processed" and shown["last_error"] is None, shown
    assert (await order_of(flow))["total_amount"] == 3000
    return shown


async def test_stripe_unreachable_while_fetching_waits_then_processes(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    await delivered(flow, event("checkout.session.completed", session))
    with flow.stub.down():
        assert flow.process().waiting == 1
    [shown] = await flow.events()
    assert "Stripe" in shown["last_error"]
    await _waits_then_recovers(flow)


async def test_stripe_500s_on_line_items_wait_then_process(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    await delivered(flow, event("checkout.session.completed", session))
    # the SDK retries a 500 twice itself: three in a row come back to the worker
    flow.stub.fail(500, times=3, path=r"/line_items$")
    assert flow.process().waiting == 1
    [shown] = await flow.events()
    assert "500" in shown["last_error"], shown
    await _waits_then_recovers(flow)
    assert len(flow.stub.requests_to(r"/v1/checkout/sessions/cs_test_1/line_items")) == 4


async def test_one_500_is_retried_by_the_sdk_at_once(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    await delivered(flow, event("checkout.session.completed", session))
    flow.stub.fail(500, times=1, path=r"/line_items$")
    assert flow.process().processed == 1
    requests = flow.stub.requests_to(r"/v1/checkout/sessions/cs_test_1/line_items")
    assert [r.status for r in requests] == [500, 200]


async def test_rate_limited_waits_then_processes(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    await delivered(flow, event("checkout.session.completed", session))
    flow.stub.fail(429, times=1)
    assert flow.process().waiting == 1
    [shown] = await flow.events()
    assert "429" in shown["last_error"], shown
    await _waits_then_recovers(flow)


async def test_an_unknown_session_fails_then_a_retry_processes_it(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    flow.stub.forget("cs_test_1")  # Stripe does not know the session (a 404 is the same every time)
    sent = event("checkout.session.completed", session)
    await delivered(flow, sent)
    assert flow.process().failed == 1
    [shown] = await flow.events()
    assert shown["status"] == "failed" and "404" in shown["last_error"] and "cs_test_1" in shown["last_error"]
    connection = (await flow.client.get("/v1/stripe/connection", headers=flow.api.headers())).json()
    assert connection["events_failed"] == 1 and "404" in connection["last_error"]
    flow.clock.advance(timedelta(hours=2))
    assert flow.process().claimed == 0  # failed stays failed
    await flow.checkout()  # Stripe has it now
    retried = await flow.client.post(f"/v1/stripe/events/{shown['id']}/retry", headers=flow.api.headers())
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "received"
    assert flow.process().processed == 1
    assert (await order_of(flow))["total_amount"] == 3000
    again = await flow.client.post(f"/v1/stripe/events/{shown['id']}/retry", headers=flow.api.headers())
    assert again.status_code == 409 and again.headers["content-type"].startswith(PROBLEM)
    assert again.json()["field"] == "path:event_id"
    unknown = await flow.client.post(f"/v1/stripe/events/{uuid.uuid4()}/retry", headers=flow.api.headers())
    assert unknown.status_code == 404


async def test_retrying_an_event_still_queued_answers_it_as_it_is(flow: Flow) -> None:
    await flow.connect()
    received = await delivered(flow, event("checkout.session.completed", await flow.checkout()))
    retried = await flow.client.post(f"/v1/stripe/events/{received['id']}/retry", headers=flow.api.headers())
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "received"
    assert flow.process().processed == 1
    assert (await order_of(flow))["total_amount"] == 3000


# --- bad input ---------------------------------------------------------------------------------------


async def _post(flow: Flow, body: bytes, header: str | None, program: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return await flow.client.post(
        f"/v1/stripe/webhooks/{program or flow.api.program_id}", content=body, headers=headers
    )


def _sign(body: bytes | str, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    text = body.decode() if isinstance(body, bytes) else body
    return str(
        stripe.WebhookSignature.generate_signature_header(
            text, secret, timestamp=int(time.time()) if at is None else at
        )
    )


def _refused(response: Any, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    if field is not None:
        assert problem.get("field") == field, problem
    return problem


SIGNATURE = "header:Stripe-Signature"


async def test_bad_webhooks_are_refused_and_store_nothing(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    good = json.dumps(event("checkout.session.completed", session)).encode()
    now = int(time.time())
    cases: list[tuple[str, bytes, str | None, str | None, int, str | None]] = [
        ("missing header", good, None, None, 400, SIGNATURE),
        ("empty header", good, "", None, 400, SIGNATURE),
        ("bad signature", good, f"t={now},v1={'0' * 64}", None, 400, SIGNATURE),
        ("no timestamp", good, f"v1={'0' * 64}", None, 400, SIGNATURE),
        ("tampered body", good.replace(b"3000", b"9000"), _sign(good), None, 400, SIGNATURE),
        ("stale", good, _sign(good, at=now - 301 - 5), None, 400, SIGNATURE),
        ("future", good, _sign(good, at=now + 301 + 5), None, 400, SIGNATURE),
        ("other secret", good, _sign(good, "whsec_another_programs_secret"), None, 400, SIGNATURE),
        ("unknown program", good, _sign(good), str(uuid.uuid4()), 404, "path:program_id"),
        ("no uuid", good, _sign(good), "not-a-uuid", 422, "path:program_id"),
    ]
    for name, body, header, program, status, field in cases:
        response = await _post(flow, body, header, program)
        problem = _refused(response, status, field)
        assert stored(flow.client) == 0, (name, problem)
    assert await flow.events() == []


async def test_an_event_signed_with_another_programs_secret_is_refused(flow: Flow) -> None:
    await flow.connect()
    other = make_program(flow.client, "Other shop")
    connected = await flow.client.put(
        "/v1/stripe/connection",
        json={"api_key": API_KEY, "webhook_secret": "whsec_the_other_programs_secret"},
        headers=other.headers(),
    )
    assert connected.status_code == 200, connected.text
    body = json.dumps(event("checkout.session.completed", await flow.checkout())).encode()
    header = _sign(body, "whsec_the_other_programs_secret")
    _refused(await _post(flow, body, header), 400, SIGNATURE)
    assert stored(flow.client) == 0
    # the same bytes are the other program's event
    assert (await _post(flow, body, header, other.program_id)).status_code == 200
    assert fetch(flow.client, "SELECT program_id::text AS p FROM stripe_event") == [{"p": other.program_id}]


async def test_the_stale_and_future_problems_say_which(flow: Flow) -> None:
    await flow.connect()
    body = json.dumps(event("checkout.session.completed", await flow.checkout())).encode()
    stale = _refused(await _post(flow, body, _sign(body, at=int(time.time()) - 400)), 400, SIGNATURE)
    future = _refused(await _post(flow, body, _sign(body, at=int(time.time()) + 400)), 400, SIGNATURE)
    assert "tolerance" in stale["detail"].lower() or "old" in stale["detail"].lower(), stale
    assert "future" in future["detail"], future
    # within the tolerance either way: accepted
    ahead = await _post(flow, body, _sign(body, at=int(time.time()) + 200))
    assert ahead.status_code == 200, ahead.text
    assert stored(flow.client) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2, 3]", None),
        (b'{"hello": "world"}', "id"),
        (b'{"id": "evt_1", "type": "checkout.session.completed"}', "data"),
        (b'{"id": 7, "type": "x", "data": {"object": {}}}', "id"),
        (b'{"id": "nope_1", "type": "x", "data": {"object": {}}}', "id"),
        (b'{"id": "evt_1", "type": "", "data": {"object": {}}}', "type"),
        (b'{"id": "evt_1", "type": "x", "data": {"object": []}}', "data.object"),
        (b'{"id": "evt_1", "type": "x", "created": -5, "data": {"object": {}}}', "created"),
        (b'{"id": "evt_1", "type": "x", "livemode": "false", "data": {"object": {}}}', "livemode"),
    ],
)
async def test_a_signed_body_that_is_no_event_is_refused(flow: Flow, body: bytes, field: str | None) -> None:
    await flow.connect()
    response = await _post(flow, body, _sign(body))
    assert 400 <= response.status_code < 500, response.text
    _refused(response, response.status_code, field)
    assert stored(flow.client) == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_nul\\u0000", "type": "checkout.session.completed", "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"name": "a\\u0000b"}}}',
        b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"a\\u0000": 1}}}',
        b'{"id": "evt_1", "type": "x", "data": {"object": {}}, "extra": ["\\u0000"]}',
    ],
)
async def test_nul_escapes_in_a_signed_body_are_refused(flow: Flow, body: bytes) -> None:
    await flow.connect()
    response = await _post(flow, body, _sign(body))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert stored(flow.client) == 0


async def test_an_event_for_a_program_without_a_connection_is_404(flow: Flow) -> None:
    body = json.dumps(event("checkout.session.completed", await flow.checkout())).encode()
    _refused(await _post(flow, body, _sign(body)), 404, "path:program_id")
    assert stored(flow.client) == 0


# --- currencies ------------------------------------------------------------------------------------


async def test_a_checkout_in_a_currency_the_program_does_not_earn_in(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout(line_items=[line_item(1500, 2, sku="TEE", currency="usd")], currency="usd")
    sent = event("checkout.session.completed", session)
    await delivered(flow, sent)
    counts = flow.process()
    assert counts.claimed == 1 and counts.failed == 0 and counts.waiting == 0, await flow.events()
    shown = (await by_stripe_id(flow))[sent["id"]]
    assert shown["status"] in ("processed", "ignored"), shown
    assert "USD" in shown["outcome"] and "no points" in shown["outcome"].lower(), shown
    order = await order_of(flow)
    assert order["currency"] == "USD" and order["points_earned"] == 0, order


# --- line items ----------------------------------------------------------------------------------


async def test_line_items_of_one_product_become_one_line_and_no_metadata_is_the_product_id(
    flow: Flow,
) -> None:
    await flow.connect()
    items = [
        line_item(1000, 2, name="Mug", product_id="prod_mug"),
        line_item(1500, 1, name="Mug", product_id="prod_mug"),
        line_item(700, 1, name="Cap", sku="CAP-1", category="hats"),
    ]
    await paid(flow, line_items=items, total_details={"amount_shipping": 500, "amount_discount": 200})
    order = await order_of(flow)
    lines = {line["sku"]: line for line in order["lines"]}
    assert set(lines) == {"prod_mug", "CAP-1"}, order["lines"]
    mug = lines["prod_mug"]
    assert mug["quantity"] * mug["unit_amount"] == 3500 and mug["quantity"] == 1  # 3500 / 3 is not whole
    assert lines["CAP-1"]["category"] == "hats"
    assert order["shipping_amount"] == 500 and order["discount_amount"] == 200
    assert order["total_amount"] == 3500 + 700 - 200 + 500


# --- customers -------------------------------------------------------------------------------------


async def _customer_of(flow: Flow, session_id: str = "cs_test_1") -> str:
    return str((await order_of(flow, session_id))["customer_external_id"])


async def test_encore_customer_id_on_the_session_names_the_customer(flow: Flow) -> None:
    await flow.connect()
    cus = flow.stub.add_customer("cus_meta", email="ann@example.com")
    await paid(flow, metadata={"encore_customer_id": "shop-ann"}, customer=cus["id"])
    assert await _customer_of(flow) == "shop-ann"
    status = await flow.api.status("shop-ann")
    assert status["customer"]["stripe_customer_id"] == "cus_meta"


async def test_encore_customer_id_on_the_stripe_customer_names_the_customer(flow: Flow) -> None:
    await flow.connect()
    flow.stub.add_customer(
        "cus_with_meta", email="bob@example.com", metadata={"encore_customer_id": "shop-bob"}
    )
    await paid(flow, customer="cus_with_meta", customer_details={"email": "bob@example.com", "name": "Bob"})
    assert await _customer_of(flow) == "shop-bob"


async def test_the_customer_holding_the_stripe_customer_id(flow: Flow) -> None:
    await flow.connect()
    put = await flow.client.put(
        "/v1/customers/shop-cleo", json={"stripe_customer_id": "cus_cleo"}, headers=flow.api.headers()
    )
    assert put.status_code in (200, 201), put.text
    flow.stub.add_customer("cus_cleo", email="someone-else@example.com")
    await paid(flow, customer="cus_cleo", customer_details={"email": "someone-else@example.com"})
    assert await _customer_of(flow) == "shop-cleo"
    taken = await flow.client.put(
        "/v1/customers/shop-dan", json={"stripe_customer_id": "cus_cleo"}, headers=flow.api.headers()
    )
    _refused(taken, 409, "stripe_customer_id")


async def test_the_customer_with_that_email_in_any_case(flow: Flow) -> None:
    await flow.connect()
    put = await flow.client.put(
        "/v1/customers/shop-eve", json={"email": "eve@example.com"}, headers=flow.api.headers()
    )
    assert put.status_code in (200, 201), put.text
    flow.stub.add_customer("cus_eve", email="EVE@Example.COM")
    await paid(flow, customer="cus_eve", customer_details={"email": "EVE@Example.COM", "name": "Eve"})
    assert await _customer_of(flow) == "shop-eve"
    # the customer took the Stripe customer id: the next checkout finds her by it
    assert (await flow.api.status("shop-eve"))["customer"]["stripe_customer_id"] == "cus_eve"
    await paid(flow, "cs_test_2", customer="cus_eve", customer_details={"email": "new-address@example.com"})
    assert await _customer_of(flow, "cs_test_2") == "shop-eve"


async def test_a_new_customer_by_the_stripe_customer_id_then_an_api_order_finds_them(flow: Flow) -> None:
    await flow.connect()
    flow.stub.add_customer("cus_new", email="fay@example.com")
    await paid(flow, customer="cus_new", customer_details={"email": "fay@example.com", "name": "Fay"})
    assert await _customer_of(flow) == "cus_new"
    status = await flow.api.status("cus_new")
    assert (
        status["customer"]["stripe_customer_id"] == "cus_new"
        and status["customer"]["email"] == "fay@example.com"
    )
    posted = await flow.api.order("shop-order-1", "cus_new", key=uuid.uuid4().hex)
    assert posted.status_code == 201, posted.text
    assert len(fetch(flow.client, "SELECT id FROM customer")) == 1
    # a guest checkout with the same e-mail finds her too
    await paid(flow, "cs_test_2", customer_details={"email": "FAY@example.com"})
    assert await _customer_of(flow, "cs_test_2") == "cus_new"


async def test_a_guest_becomes_email_address_and_is_found_again(flow: Flow) -> None:
    await flow.connect()
    await paid(flow, customer_details={"email": "Gus@Example.com", "name": "Gus"})
    assert await _customer_of(flow) == "email:gus@example.com"
    await paid(flow, "cs_test_2", customer_details={"email": "gus@example.com"})
    assert await _customer_of(flow, "cs_test_2") == "email:gus@example.com"
    posted = await flow.api.order("shop-order-1", "email:gus@example.com", key=uuid.uuid4().hex)
    assert posted.status_code == 201, posted.text
    assert len(fetch(flow.client, "SELECT id FROM customer")) == 1


async def test_a_checkout_naming_no_customer_fails_with_the_reason(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout(customer_details=None, customer_email=None)
    await delivered(flow, event("checkout.session.completed", session))
    assert flow.process().failed == 1
    [shown] = await flow.events()
    assert "names no customer" in shown["last_error"]
    await no_order(flow)


# --- create_orders off -------------------------------------------------------------------------------


def _shop_order(session_id: str) -> dict[str, Any]:
    return {
        "external_id": session_id,
        "customer": {"external_id": "shop-hal"},
        "currency": "EUR",
        "placed_at": "2026-01-01T00:00:00Z",
        "lines": [{"sku": "TEE", "quantity": 2, "unit_amount": 1500}],
        "discount_amount": 0,
        "shipping_amount": 0,
        "total_amount": 3000,
    }


async def _post_shop_order(flow: Flow, session_id: str = "cs_test_1") -> dict[str, Any]:
    flow.clock.advance(timedelta(seconds=1))
    body = _shop_order(session_id)
    body["placed_at"] = flow.clock.now().isoformat()
    posted = await flow.client.post("/v1/orders", json=body, headers=flow.api.headers(**idempotency()))
    assert posted.status_code == 201, posted.text
    order: dict[str, Any] = posted.json()["order"]
    return order


async def test_create_orders_off_records_no_order_but_refunds_reach_the_shops_order(flow: Flow) -> None:
    await flow.connect(create_orders=False)
    session = await flow.checkout(total_details=TAXED)
    sent = event("checkout.session.completed", session)
    await delivered(flow, sent)
    assert flow.process().processed == 1
    await no_order(flow)
    assert "create_orders is off" in (await by_stripe_id(flow))[sent["id"]]["outcome"]
    # a refund before the shop posted its order waits for it
    await delivered(flow, event("refund.created", refund(session, 1800, "re_1")))
    assert flow.process().waiting == 1
    await _post_shop_order(flow)
    flow.clock.advance(timedelta(minutes=5))
    assert flow.process().processed == 1, await flow.events()
    order = await order_of(flow)
    assert order["customer_external_id"] == "shop-hal"
    assert order["refunded_amount"] == 1500 and order["points_reversed"] > 0


async def test_the_shop_posting_first_is_not_recorded_twice(flow: Flow) -> None:
    await flow.connect()
    posted = await _post_shop_order(flow)
    session = await flow.checkout(total_details=TAXED)
    sent = event("checkout.session.completed", session)
    await delivered(flow, sent)
    assert flow.process().processed == 1
    shown = (await by_stripe_id(flow))[sent["id"]]
    assert "not recorded twice" in shown["outcome"], shown
    order = await order_of(flow)
    assert order["customer_external_id"] == "shop-hal" and order["points_earned"] == posted["points_earned"]
    assert fetch(flow.client, "SELECT count(*) AS n FROM orders")[0]["n"] == 1
    # and a Stripe refund reaches the shop's order
    await delivered(flow, event("refund.created", refund(session, 3600, "re_all")))
    flow.process()
    assert (await order_of(flow))["refunded_amount"] == 3000


# --- concurrency -----------------------------------------------------------------------------------


async def test_two_processors_at_once_apply_every_event_once(flow: Flow) -> None:
    await flow.connect()
    sessions = []
    for i in range(6):
        session = await flow.checkout(
            f"cs_test_{i}", total_details=TAXED, customer_details={"email": f"p{i}@example.com"}
        )
        sessions.append(session)
        await delivered(flow, event("checkout.session.completed", session))
    first = sessions[0]
    # the same refund reported twice, and two partial refunds of another order, all at once
    await delivered(flow, event("refund.created", refund(first, 1800, "re_same")))
    await delivered(flow, event("refund.updated", refund(first, 1800, "re_same")))
    await delivered(flow, event("refund.created", refund(sessions[1], 1000, "re_x")))
    await delivered(flow, event("refund.created", refund(sessions[1], 2600, "re_y")))

    async def both() -> list[inbound.Counts]:
        a = inbound.Processor(flow.settings, flow.clock, "worker-a")
        b = inbound.Processor(flow.settings, flow.clock, "worker-b")
        return list(await asyncio.gather(a.run(), b.run()))

    for _ in range(4):
        in_app(flow.client, both)
        flow.clock.advance(timedelta(minutes=5))
    events = await flow.events(limit=200)
    assert all(e["status"] in ("processed", "ignored") for e in events), events
    assert fetch(flow.client, "SELECT count(*) AS n FROM orders")[0]["n"] == 6
    assert (await order_of(flow, "cs_test_0"))["refunded_amount"] == 1500
    assert (await order_of(flow, "cs_test_1"))["refunded_amount"] == 3000
    assert fetch(flow.client, "SELECT count(*) AS n FROM refund")[0]["n"] == 3
    rows = fetch(flow.client, "SELECT count(*) AS n FROM points_entry WHERE points < 0")
    assert rows[0]["n"] == 3


async def test_a_worker_whose_lease_ran_out_leaves_the_event_to_the_next(flow: Flow) -> None:
    """Worker A is slow (Stripe holds its request) past its lease; B claims the event and records it; A's
    late result is rolled back and A's run goes on (it does not raise)."""
    await flow.connect()
    session = await flow.checkout(total_details=TAXED)
    await delivered(flow, event("checkout.session.completed", session))
    lease = timedelta(seconds=flow.settings.stripe_lease_seconds + 1)

    async def race() -> tuple[inbound.Counts, inbound.Counts]:
        a = inbound.Processor(flow.settings, flow.clock, "worker-a")
        b = inbound.Processor(flow.settings, flow.clock, "worker-b")
        with flow.stub.held(r"/line_items$") as (arrived, release):
            slow = asyncio.create_task(a.run())
            assert await asyncio.to_thread(arrived.wait, 10)
            flow.clock.advance(lease)
            took_over = await b.run()
            release.set()
            return await slow, took_over

    a, b = in_app(flow.client, race)
    assert (b.claimed, b.processed) == (1, 1), b
    assert (a.claimed, a.lost, a.processed) == (1, 1, 0), a
    [shown] = await flow.events()
    assert shown["status"] == "processed" and shown["attempts"] == 2
    assert fetch(flow.client, "SELECT count(*) AS n FROM orders")[0]["n"] == 1
    assert fetch(flow.client, "SELECT count(*) AS n FROM points_entry")[0]["n"] == 1


# --- the CLI -----------------------------------------------------------------------------------------


async def test_encore_stripe_replay_processes_a_saved_event_once(
    flow: Flow, database_url: str, tmp_path: Path
) -> None:
    await flow.connect()
    session = await flow.checkout(total_details=TAXED)
    saved = tmp_path / "event.json"
    payload = event("checkout.session.completed", session)
    saved.write_text(json.dumps(payload))
    env = {"ENCORE_STRIPE_API_BASE": flow.stub.url, "ENCORE_LOG_LEVEL": "WARNING"}
    first = encore(database_url, "stripe", "replay", str(saved), "--program", flow.api.program_id, **env)
    assert first.returncode == 0, first.stderr
    assert "processed" in first.stdout and payload["id"] in first.stdout, first.stdout
    order = await order_of(flow)
    assert order["total_amount"] == 3000 and order["points_earned"] > 0
    second = encore(database_url, "stripe", "replay", str(saved), "--program", flow.api.program_id, **env)
    assert second.returncode == 0, second.stderr
    assert "not processed again" in second.stdout, second.stdout
    assert len(flow.stub.requests_to(r"/v1/checkout/sessions/cs_test_1/line_items")) == 1
    [shown] = await flow.events()
    assert shown["source"] == "replay" and shown["status"] == "processed"
