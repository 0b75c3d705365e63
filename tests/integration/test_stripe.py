"""The Stripe integration end to end with real parts: the official SDK against the local Stripe stub
(Stripe's own fixtures), events signed as Stripe signs them, the worker's processing and code sync run
inside the app's event loop under the test clock (set to the wall clock: Stripe's times are real)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.clock import FrozenClock
from service.core.secrets import SecretBox, new_key
from service.outbox import consumers
from service.stripe import inbound, outbound
from tests.conftest import ENCRYPTION_KEY, ROOT, Api, fetch, idempotency, in_app, make_program, settings_for
from tests.integration.test_rewards import earn
from tests.support.cli import encore
from tests.support.stripe_local import load_sessions as serve_sessions
from tests.support.stripe_stub import (
    API_KEY,
    REFUSED_KEY,
    WEBHOOK_SECRET,
    StripeStub,
    event,
    fixture,
    line_item,
    signed_event,
)


class Flow:
    """A connected program, the stub, and the worker's two Stripe stages."""

    def __init__(
        self,
        api: Api,
        stub: StripeStub,
        client: AsyncTestClient[Litestar],
        database_url: str,
        clock: FrozenClock,
    ) -> None:
        self.api, self.stub, self.client, self.clock = api, stub, client, clock
        self.settings = settings_for(database_url, stripe_api_base=stub.url)

    async def connect(self, **body: Any) -> dict[str, Any]:
        response = await self.client.put(
            "/v1/stripe/connection",
            json={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, **body},
            headers=self.api.headers(),
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def send(self, payload: dict[str, Any], secret: str = WEBHOOK_SECRET, **kw: Any) -> Any:
        body, header = signed_event(payload, secret, **kw)
        return await self.client.post(
            f"/v1/stripe/webhooks/{self.api.program_id}",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )

    def process(self) -> inbound.Counts:
        return in_app(self.client, inbound.Processor(self.settings, self.clock, "test-worker").run)

    def sync(self) -> outbound.Synced:
        drain(self, outbound.CONSUMER, outbound.queue)
        return in_app(self.client, outbound.Syncer(self.settings, self.clock, "test-worker").run)

    async def events(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/stripe/events", params=params, headers=self.api.headers())
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def checkout(self, session_id: str = "cs_test_1", **fields: Any) -> dict[str, Any]:
        fields.setdefault("line_items", [line_item(1500, 2, sku="TEE", category="shirts")])
        fields.setdefault("customer", None)
        fields.setdefault("customer_details", {"email": "Ann@Example.com", "name": "Ann"})
        return self.stub.add_session(session_id, **fields)


def drain(flow: Flow, consumer: consumers.Consumer, step: Callable[[datetime], Awaitable[Any]]) -> None:
    """Run an outbox consumer's step until it has passed every event: one pass may stop short of a
    transaction that committed a moment ago (the outbox's horizon counts a transaction it cannot place,
    such as another database's on this shared server, as in progress); the worker simply runs again."""

    async def run() -> None:
        for _ in range(300):
            await step(flow.clock.now())
            async with db.connection() as conn:
                left = await conn.fetchval(
                    f"SELECT count(*) FROM outbox o WHERE {consumers.waiting(consumer)}"
                )
            if not left:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the {consumer.name} consumer did not catch up")

    in_app(flow.client, run)


@pytest.fixture
def flow(
    client: AsyncTestClient[Litestar], stripe_stub: StripeStub, database_url: str, clock: FrozenClock
) -> Flow:
    clock.set(datetime.now(UTC).replace(microsecond=0))
    return Flow(make_program(client), stripe_stub, client, database_url, clock)


async def test_a_paid_checkout_earns_points_once(flow: Flow) -> None:
    connected = await flow.connect()
    assert connected["mode"] == "test" and connected["key_last4"] == API_KEY[-4:]
    assert "api_key" not in json.dumps(connected) or API_KEY not in json.dumps(connected)
    session = await flow.checkout()
    payload = event("checkout.session.completed", session)
    first = await flow.send(payload)
    assert first.status_code == 200, first.text
    assert (await flow.send(payload)).json()["duplicate"] is True
    counts = flow.process()
    assert counts.processed == 1, await flow.events()
    order = (await flow.client.get("/v1/orders/cs_test_1", headers=flow.api.headers())).json()
    assert order["total_amount"] == 3000 and order["lines"][0]["sku"] == "TEE"
    assert order["customer_external_id"] == "email:ann@example.com"
    status = await flow.api.status("email:ann@example.com")
    assert status["points"]["pending"] + status["points"]["available"] > 0
    assert flow.process().claimed == 0  # nothing left to do
    [shown] = await flow.events()
    assert shown["status"] == "processed" and "recorded" in shown["outcome"]


async def test_a_refund_before_its_checkout_waits_then_reverses(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    refund = fixture(
        "refund",
        id="re_1",
        amount=1500,
        currency="eur",
        status="succeeded",
        payment_intent=session["payment_intent"],
        charge="ch_1",
    )
    assert (await flow.send(event("refund.created", refund))).status_code == 200
    flow.process()
    [waiting] = await flow.events(status="waiting")
    assert "waiting" in waiting["outcome"]
    await flow.send(event("checkout.session.completed", session))
    flow.process()
    flow.clock.advance(timedelta(seconds=60))
    flow.process()
    events = await flow.events()
    assert {e["status"] for e in events} == {"processed"}, events
    order = (await flow.client.get("/v1/orders/cs_test_1", headers=flow.api.headers())).json()
    assert order["refunded_amount"] == 1500 and order["points_reversed"] > 0


async def test_a_bad_signature_stores_nothing(flow: Flow) -> None:
    await flow.connect()
    session = await flow.checkout()
    response = await flow.send(event("checkout.session.completed", session), secret="whsec_another_program")
    assert response.status_code == 400 and response.json()["field"] == "header:Stripe-Signature"
    assert await flow.events() == []


async def test_a_refused_key_is_422(flow: Flow) -> None:
    response = await flow.client.put(
        "/v1/stripe/connection",
        json={"api_key": REFUSED_KEY, "webhook_secret": WEBHOOK_SECRET},
        headers=flow.api.headers(),
    )
    assert response.status_code == 422 and response.json()["field"] == "api_key", response.text


async def _synced_code(flow: Flow, customer: str = "ann") -> tuple[dict[str, Any], dict[str, Any]]:
    """An amount_off code redeemed by `customer` and made a Stripe promotion code: (redemption, promotion)."""
    await flow.connect()
    reward = await flow.client.post(
        "/v1/rewards",
        json={
            "kind": "amount_off",
            "name": {"en": "5 off"},
            "cost_points": 50,
            "amount": {"amount": 500, "currency": "EUR"},
        },
        headers=flow.api.headers(**idempotency()),
    )
    assert reward.status_code == 201, reward.text
    await earn(flow.api, 100, customer)
    redeemed = await flow.client.post(
        f"/v1/customers/{customer}/redemptions",
        json={"reward_id": reward.json()["id"]},
        headers=flow.api.headers(**idempotency()),
    )
    assert redeemed.status_code == 201, redeemed.text
    synced = flow.sync()
    assert synced.created == 1, synced
    [promotion] = flow.stub.of("promotion_code")
    assert promotion["code"] == redeemed.json()["code"]
    return redeemed.json(), promotion


async def test_an_amount_off_code_becomes_a_promotion_code_and_its_use_is_seen(flow: Flow) -> None:
    redeemed, promotion = await _synced_code(flow)
    session = await flow.checkout(
        metadata={"encore_customer_id": "ann"},
        discounts=[{"coupon": None, "promotion_code": promotion["id"]}],
        total_details={"amount_discount": 500},
    )
    await flow.send(event("checkout.session.completed", session))
    flow.process()
    shown = (await flow.client.get(f"/v1/redemptions/{redeemed['id']}", headers=flow.api.headers())).json()
    assert shown["status"] == "used" and shown["order_external_id"] == "cs_test_1", shown


async def test_a_code_stripe_applied_for_someone_else_is_spent_all_the_same(flow: Flow) -> None:
    """Ann's code (she has no Stripe customer: the promotion code is not restricted) typed by a guest:
    Stripe gave the discount, so the code is used in Encore too, never usable a second time."""
    redeemed, promotion = await _synced_code(flow)
    session = await flow.checkout(
        customer_details={"email": "friend@example.com", "name": "Friend"},
        discounts=[{"coupon": None, "promotion_code": promotion["id"]}],
        total_details={"amount_discount": 500},
    )
    await flow.send(event("checkout.session.completed", session))
    flow.process()
    shown = (await flow.client.get(f"/v1/redemptions/{redeemed['id']}", headers=flow.api.headers())).json()
    assert shown["status"] == "used" and shown["order_external_id"] == "cs_test_1", shown
    [processed] = await flow.events()
    assert "applied by Stripe" in processed["outcome"], processed
    again = await flow.client.post(f"/v1/codes/{redeemed['code']}/use", json={}, headers=flow.api.headers())
    assert again.status_code == 409, again.text


async def test_a_signature_header_that_is_not_ascii_is_400(flow: Flow) -> None:
    """The SDK's constant-time comparison raises on non-ASCII text: refused before it, as a bad signature."""
    await flow.connect()
    for value in ("é".encode(), b"\xff\xfe"):
        response = await flow.client.post(
            f"/v1/stripe/webhooks/{flow.api.program_id}",
            content=b'{"id": "evt_1", "type": "customer.created"}',
            headers=[
                (b"Stripe-Signature", f"t={int(time.time())},v1=".encode() + value),
                (b"Content-Type", b"application/json"),
            ],
        )
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "header:Stripe-Signature"
    assert await flow.events() == []


async def test_a_body_that_is_not_utf8_is_400(flow: Flow) -> None:
    await flow.connect()
    body = b'{"id": "evt_1", "type": "' + bytes([0xFF]) + b'"}'
    _, header = signed_event({}, WEBHOOK_SECRET)
    response = await flow.client.post(
        f"/v1/stripe/webhooks/{flow.api.program_id}",
        content=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert await flow.events() == []


async def test_the_readme_walk_through_earns_then_refunds(flow: Flow) -> None:
    """docs/stripe/ as the README's "Stripe in five minutes" uses it, through the stand-in's own loader."""
    serve_sessions(flow.stub, ROOT / "docs" / "stripe" / "sessions.json")
    await flow.client.put(
        "/v1/stripe/connection",
        json={"api_key": "sk_test_local_demo_key", "webhook_secret": "whsec_local_demo_secret"},
        headers=flow.api.headers(),
    )
    for name in ("checkout.session.completed", "refund.created"):
        body = (ROOT / "docs" / "stripe" / f"{name}.json").read_bytes()
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), "whsec_local_demo_secret", timestamp=int(time.time())
        )
        sent = await flow.client.post(
            f"/v1/stripe/webhooks/{flow.api.program_id}",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        assert sent.status_code == 200, sent.text
        flow.process()
    status = await flow.api.status("email:ada@example.com")
    assert status["points"]["available"] + status["points"]["pending"] == 90 - 24
    order = (await flow.client.get("/v1/orders/cs_test_demo_1001", headers=flow.api.headers())).json()
    assert (order["total_amount"], order["points_earned"]) == (9495, 90)
    assert (order["refunded_amount"], order["points_reversed"]) == (2500, 24)
    assert {e["status"] for e in await flow.events()} == {"processed"}


async def test_the_keys_are_sealed_at_rest_and_never_shown(flow: Flow) -> None:
    shown = await flow.connect()
    assert API_KEY not in json.dumps(shown) and WEBHOOK_SECRET not in json.dumps(shown)
    again = (await flow.client.get("/v1/stripe/connection", headers=flow.api.headers())).json()
    assert again["webhook_secret_last4"] == WEBHOOK_SECRET[-4:] and again["connected"]
    [row] = fetch(flow.client, "SELECT secret_key, webhook_secret FROM stripe_connection")
    assert row["secret_key"].startswith("fernet:") and row["webhook_secret"].startswith("fernet:")
    assert API_KEY not in row["secret_key"] and WEBHOOK_SECRET not in row["webhook_secret"]
    gone = await flow.client.delete("/v1/stripe/connection", headers=flow.api.headers())
    assert gone.status_code == 204
    assert (await flow.client.get("/v1/stripe/connection", headers=flow.api.headers())).json()[
        "connected"
    ] is False
    assert (await flow.client.delete("/v1/stripe/connection", headers=flow.api.headers())).status_code == 404


async def test_encore_secrets_rotate_reseals_the_stripe_keys(flow: Flow, database_url: str) -> None:
    await flow.connect()
    new = new_key()
    result = encore(database_url, "secrets", "rotate", ENCORE_ENCRYPTION_KEYS=f"{new},{ENCRYPTION_KEY}")
    assert result.returncode == 0, result.stderr
    assert "stripe connections: 2 of 2" in result.stdout
    [row] = fetch(flow.client, "SELECT secret_key, webhook_secret FROM stripe_connection")
    only_new = SecretBox([new])
    assert (only_new.open(row["secret_key"]), only_new.open(row["webhook_secret"])) == (
        API_KEY,
        WEBHOOK_SECRET,
    )
