"""A program with one of everything, and a valid request for every operation of the OpenAPI document.

The robustness walk and the tenant-isolation walk start from these requests. Both fail for an operation
that has no sample here, so every new endpoint is walked by being in the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from service.outreach import jobs as outreach
from tests.conftest import START, Api, idempotency, in_app, iso
from tests.support.stripe_stub import API_KEY as STRIPE_KEY
from tests.support.stripe_stub import WEBHOOK_SECRET as STRIPE_SECRET
from tests.support.stripe_stub import event as stripe_event
from tests.support.stripe_stub import fixture as stripe_fixture
from tests.support.stripe_stub import signed_event

WHEN = iso(START - timedelta(hours=1))
CUSTOMER = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "locale": "en",
    "birthday": "1990-05-17",
    "timezone": "Europe/Riga",
    "marketing_consent": True,
    "transactional_consent": True,
}
LINES = [
    {"sku": "MUG", "name": "Mug", "category": "Kitchen", "quantity": 2, "unit_amount": 2500},
    {"sku": "TEA", "name": "Tea", "category": "Food", "quantity": 1, "unit_amount": 4000},
]


def order(external_id: str, customer: str = "c-1") -> dict[str, Any]:
    return {
        "external_id": external_id,
        "customer": {"external_id": customer, **CUSTOMER},
        "currency": "EUR",
        "placed_at": WHEN,
        "lines": LINES,
        "total_amount": 8945,
        "discount_amount": 550,
        "shipping_amount": 495,
        "attributes": {"channel": "web", "gift": True, "score": 1.5, "note": None},
    }


TIER = {
    "key": "gold",
    "name": "Gold",
    "rank": 2,
    "qualification": {
        "metric": "spend",
        "threshold": {"amount": 50000, "currency": "EUR"},
        "window": "rolling_months",
        "months": 12,
    },
    "benefits": {"earn_multiplier": "1.5", "free_shipping": True, "perks": ["Early access"]},
    "retention": {"keep_until_end_of_next_window": True, "grace_days": 7, "warning_days": 30},
    "downgrade": "one_level",
}
RULE = {
    "name": "Kitchen double",
    "priority": 10,
    "stacking": "exclusive",
    "trigger": "order",
    "window": {
        "starts_at": "2026-01-01T00:00:00Z",
        "ends_at": "2027-01-01T00:00:00",
        "days_of_week": ["mon", "sun"],
        "hours": {"start": 8, "end": 20},
    },
    "audience": {"tiers": [], "customers": "all"},
    "conditions": {"all": [{"field": "line.category", "op": "eq", "value": "Kitchen"}, {"ref": "big"}]},
    "definitions": {
        "big": {"field": "order.total", "op": "gte", "value": {"amount": 1000, "currency": "EUR"}}
    },
    "effect": {"kind": "multiplier", "multiplier": "2", "scope": "lines"},
    "caps": {"per_order": 100, "per_customer_month": 500},
    "budget_points": 10000,
    "description": "Twice the points on kitchen things",
}
JOURNEY = {
    "key": "welcome",
    "name": "Welcome back",
    "trigger": {"kind": "order_placed"},
    "steps": [
        {
            "delay": {"days": 1, "hours": 2},
            "message_type": "repeat_invitation",
            "reward_points": 10,
            "offer": "10% off",
        }
    ],
    "exit_on": ["ordered_again"],
    "enabled": False,
}
TEMPLATE = {
    "subject": "Happy birthday, {{ customer.first_name or 'friend' }}",
    "text": "{{ greeting }}\n\nHappy birthday!\n\n{{ signature }}",
    "html": "<p>{{ greeting }}</p><p>Happy birthday!</p>",
}
REWARD = {
    "kind": "amount_off",
    "name": {"en": "EUR 5 off", "ru": "5 EUR скидка"},
    "description": {"en": "Five euros off your next order"},
    "cost_points": 50,
    "amount": {"amount": 500, "currency": "EUR"},
    "min_order": {"amount": 1000, "currency": "EUR"},
    "stock": 100,
    "limit": {"count": 5, "period": "month"},
    "code_valid_days": 30,
    "starts_at": "2026-01-01T00:00:00Z",
    "ends_at": "2027-01-01T00:00:00+02:00",
    "image_url": "https://shop.example/five.png",
}
MESSAGING = {
    "from_email": "hello@shop.example",
    "from_name": "Demo Shop",
    "reply_to": "help@shop.example",
    "default_locale": "en",
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    "marketing_cap": 3,
    "marketing_cap_days": 7,
    "marketing_min_gap_hours": 16,
    "shop_url": "https://shop.example",
    "review_url": "https://shop.example/review",
}


SURVEY = {"key": "nps", "name": "After an order", "kind": "nps", "delay_days": 5, "ask_promoters": "review"}
RECOVERY_SETTINGS = {
    "monthly_budget": {"amount": 100000, "currency": "EUR"},
    "agent_monthly_budget": {"amount": 20000, "currency": "EUR"},
    "tier_month_values": {"gold": {"amount": 500, "currency": "EUR"}},
}


@dataclass
class Seeded:
    """The ids of the seeded program's things, by path parameter."""

    path: dict[str, str] = field(default_factory=dict)
    customer: str = "c-1"
    order: str = "o-1"


async def _ok(response: Any) -> Any:
    assert response.status_code < 300, (response.request.url, response.text)
    return response.json() if response.content else None


async def seed(api: Api, clock: FrozenClock) -> Seeded:
    """One of everything, through the API (a message through the journey sweep)."""
    c, h = api.client, api.headers()
    await _ok(await c.put("/v1/messaging/settings", json=MESSAGING, headers=h))
    await _ok(await c.patch("/v1/journeys/post_purchase", json={"enabled": True}, headers=h))
    clock.advance(timedelta(seconds=1))  # orders from now on enter the journey
    await _ok(await c.put("/v1/customers/c-1", json=CUSTOMER, headers=h))
    await _ok(
        await c.post("/v1/orders", json=order("o-1"), headers=api.headers(**{"Idempotency-Key": "seed-o-1"}))
    )
    in_app(c, outreach.enter_from_events, clock.now())  # the thank-you, before a refund ends the journey
    in_app(c, outreach.advance, clock.now())
    refund = {"external_id": "r-1", "lines": [{"sku": "MUG", "quantity": 1}]}
    await _ok(await c.post("/v1/orders/o-1/refunds", json=refund, headers=h))
    rule = await _ok(await c.post("/v1/rules", json=RULE, headers={**h, **idempotency()}))
    await _ok(await c.post("/v1/tiers", json=TIER, headers={**h, **idempotency()}))
    await _ok(await c.post("/v1/journeys", json=JOURNEY, headers={**h, **idempotency()}))
    template = await _ok(
        await c.post(
            "/v1/templates",
            json={**TEMPLATE, "message_type": "birthday", "locale": "en"},
            headers={**h, **idempotency()},
        )
    )
    endpoint = await _ok(
        await c.post(
            "/v1/webhook-endpoints",
            json={"url": "https://hooks.example.com/encore", "event_types": ["order.*"]},
            headers={**h, **idempotency()},
        )
    )
    delivery = await _ok(await c.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=h))
    await _ok(
        await c.post(
            "/v1/suppressions",
            json={"email": "bounce@example.com", "reason": "hard_bounce"},
            headers={**h, **idempotency()},
        )
    )
    key = await _ok(
        await c.post("/v1/api-keys", json={"name": "robot", "scope": "read"}, headers={**h, **idempotency()})
    )
    await _ok(
        await c.post(
            "/v1/customers/c-1/adjustments",
            json={"points": 500, "reason": "seed"},
            headers={**h, **idempotency()},
        )
    )
    reward = await _ok(await c.post("/v1/rewards", json=REWARD, headers={**h, **idempotency()}))
    redemption = await _ok(
        await c.post(
            "/v1/customers/c-1/redemptions", json={"reward_id": reward["id"]}, headers={**h, **idempotency()}
        )
    )
    gift_rule = await _ok(
        await c.post("/v1/gift-rules", json=gift_rule_body(reward["id"]), headers={**h, **idempotency()})
    )
    stripe_connection = {"api_key": STRIPE_KEY, "webhook_secret": STRIPE_SECRET}
    await _ok(await c.put("/v1/stripe/connection", json=stripe_connection, headers=h))
    body, signature = signed_event(
        stripe_event("customer.created", stripe_fixture("customer")), STRIPE_SECRET
    )
    received = await _ok(
        await c.post(
            f"/v1/stripe/webhooks/{api.program_id}",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
    )
    await _ok(await c.put("/v1/recovery/settings", json=RECOVERY_SETTINGS, headers=h))
    case = await _ok(
        await c.post(
            "/v1/cases",
            json={"customer": "c-1", "summary": "parcel late", "order": "o-1"},
            headers={**h, **idempotency()},
        )
    )
    await _ok(await c.post("/v1/surveys", json=SURVEY, headers={**h, **idempotency()}))
    feedback = await _ok(
        await c.post(
            "/v1/feedback",
            json={"customer": "c-1", "survey": "nps", "score": 3, "comment": "late", "order": "o-1"},
            headers={**h, **idempotency()},
        )
    )
    messages = await _ok(await c.get("/v1/messages?customer=c-1", headers=h))
    assert messages["items"], "the thank-you should be queued"
    return Seeded(
        path={
            "rule_id": rule["id"],
            "template_id": template["id"],
            "endpoint_id": endpoint["id"],
            "delivery_id": str(delivery["id"]),
            "message_id": str(messages["items"][0]["id"]),
            "key_id": key["id"],
            "email": "bounce@example.com",
            "token": "not-a-token",
            "reward_id": reward["id"],
            "redemption_id": redemption["id"],
            "code": redemption["code"],
            "program_id": api.program_id,
            "event_id": received["id"],
            "gift_rule_id": gift_rule["id"],
            "case_id": case["id"],
            "feedback_id": feedback["id"],
        }
    )


def gift_rule_body(reward_id: str) -> dict[str, Any]:
    """A gift rule with one of every gift (the reward given as a code at no cost)."""
    return {
        "name": "Third order thank-you",
        "trigger": {"kind": "nth_order", "n": 3, "repeat": False},
        "gifts": [
            {"kind": "points", "points": 200},
            {"kind": "reward", "reward_id": reward_id},
            {
                "kind": "item",
                "sku": "MUG-1",
                "name": "Enamel mug",
                "pick_note": "wrap it",
                "cost": {"amount": 400, "currency": "EUR"},
            },
            {"kind": "note", "templates": {"en": "Dear {{ customer.first_name }}, enjoy {{ item.name }}!"}},
        ],
        "eligibility": {"tiers": ["gold"], "min_orders": 2, "no_refund_within_days": 30},
        "probability": "0.5",
        "holdout": "0.1",
        "budget": {"amount": {"amount": 100000, "currency": "EUR"}, "period": "month"},
        "announce": "parcel",
        "priority": 5,
        "description": "a small thank-you",
        "status": "active",
    }


def path_values(path: str, seeded: Seeded) -> dict[str, str]:
    """Values for the path parameters of `path`: the seeded program's own things."""
    values = dict(seeded.path)
    values["external_id"] = seeded.order if path.startswith("/v1/orders/") else seeded.customer
    values["key"] = (
        "welcome"
        if path.startswith("/v1/journeys/")
        else "nps"
        if path.startswith("/v1/surveys/")
        else "gold"
    )
    return values


# A valid body and query for every operation: (method, path) -> (body or None, query).
REQUESTS: dict[tuple[str, str], tuple[Any, dict[str, str]]] = {
    ("GET", "/healthz"): (None, {}),
    ("GET", "/readyz"): (None, {}),
    ("GET", "/metrics"): (None, {}),
    ("GET", "/v1/api-keys"): (None, {}),
    ("POST", "/v1/api-keys"): ({"name": "robot 2", "scope": "server"}, {}),
    ("DELETE", "/v1/api-keys/{key_id}"): (None, {}),
    ("GET", "/v1/customers/{external_id}"): (None, {}),
    ("PUT", "/v1/customers/{external_id}"): (CUSTOMER, {}),
    ("POST", "/v1/customers/{external_id}/adjustments"): (
        {"points": 5, "reason": "sorry for the wait", "actor": "agent 7"},
        {},
    ),
    ("GET", "/v1/customers/{external_id}/ledger"): (None, {"limit": "10"}),
    ("GET", "/v1/customers/{external_id}/tier"): (None, {}),
    ("POST", "/v1/customers/{external_id}/tier"): (
        {"tier": "gold", "reason": "a VIP", "until": "2027-01-01T00:00:00Z", "actor": "agent 7"},
        {},
    ),
    ("GET", "/v1/customers/{external_id}/tier-history"): (None, {"limit": "10"}),
    ("POST", "/v1/events"): (
        {
            "type": "review_written",
            "customer": {"external_id": "c-1", **CUSTOMER},
            "properties": {"stars": 5, "text": "lovely", "tags": ["mug", {"colour": "blue"}]},
            "occurred_at": WHEN,
        },
        {},
    ),
    ("GET", "/v1/journeys"): (None, {}),
    ("POST", "/v1/journeys"): ({**JOURNEY, "key": "welcome-2"}, {}),
    ("DELETE", "/v1/journeys/{key}"): (None, {}),
    ("GET", "/v1/journeys/{key}"): (None, {}),
    ("PATCH", "/v1/journeys/{key}"): ({"enabled": True}, {}),
    ("PUT", "/v1/journeys/{key}"): (JOURNEY, {}),
    ("GET", "/v1/message-types"): (None, {}),
    ("GET", "/v1/messages"): (None, {"customer": "c-1", "status": "queued", "limit": "10"}),
    ("GET", "/v1/messages/{message_id}"): (None, {}),
    ("GET", "/v1/messaging/settings"): (None, {}),
    ("PUT", "/v1/messaging/settings"): (MESSAGING, {}),
    ("POST", "/v1/orders"): (order("o-2"), {}),
    ("POST", "/v1/orders/quote"): (order("o-3"), {}),
    ("GET", "/v1/orders/{external_id}"): (None, {}),
    ("POST", "/v1/orders/{external_id}/refunds"): ({"external_id": "r-2", "amount": 500}, {}),
    ("GET", "/v1/program"): (None, {}),
    ("PATCH", "/v1/program"): (
        {
            "name": "Demo Shop",
            "earn_rates": {"EUR": "1", "USD": "0.9"},
            "pending_days": 14,
            "points_expire_after_days": 365,
            "point_value": {"amount": 1, "points": 100},
            "timezone": "Europe/Riga",
            "event_types": ["store_visit"],
        },
        {},
    ),
    ("GET", "/v1/rules"): (None, {"status": "draft"}),
    ("POST", "/v1/rules"): (RULE, {}),
    ("DELETE", "/v1/rules/{rule_id}"): (None, {}),
    ("GET", "/v1/rules/{rule_id}"): (None, {}),
    ("PATCH", "/v1/rules/{rule_id}"): (
        {"description": "changed", "priority": 11, "effect": {"kind": "rate", "rates": {"EUR": "3"}}},
        {},
    ),
    ("POST", "/v1/rules/{rule_id}/simulate"): (
        {"from": "2026-02-01T00:00:00Z", "to": "2026-03-03T00:00:00Z", "mode": "add", "top": 5},
        {},
    ),
    ("GET", "/v1/rules/{rule_id}/versions"): (None, {}),
    ("GET", "/v1/suppressions"): (None, {}),
    ("POST", "/v1/suppressions"): (
        {"email": "spam@example.com", "reason": "complaint", "detail": "said so"},
        {},
    ),
    ("DELETE", "/v1/suppressions/{email}"): (None, {}),
    ("GET", "/v1/system/jobs"): (None, {}),
    ("GET", "/v1/templates"): (None, {}),
    ("POST", "/v1/templates"): ({**TEMPLATE, "message_type": "win_back", "locale": "cy"}, {}),
    ("POST", "/v1/templates/preview"): (
        {"message_type": "points_expiring", "locale": "ru", "count": 5, "customer": "c-1", "parts": TEMPLATE},
        {},
    ),
    ("DELETE", "/v1/templates/{template_id}"): (None, {}),
    ("GET", "/v1/templates/{template_id}"): (None, {}),
    ("PUT", "/v1/templates/{template_id}"): (TEMPLATE, {}),
    ("POST", "/v1/templates/{template_id}/preview"): ({"customer": "c-1", "count": 3}, {}),
    ("GET", "/v1/templates/{template_id}/versions"): (None, {}),
    ("GET", "/v1/tiers"): (None, {}),
    ("POST", "/v1/tiers"): (
        {
            **TIER,
            "key": "silver",
            "name": "Silver",
            "rank": 1,
            "qualification": {**TIER["qualification"], "threshold": {"amount": 15000, "currency": "EUR"}},
        },
        {},
    ),
    ("DELETE", "/v1/tiers/{key}"): (None, {"move_to": "none"}),
    ("GET", "/v1/tiers/{key}"): (None, {}),
    ("PATCH", "/v1/tiers/{key}"): ({"name": "Gold+", "benefits": TIER["benefits"]}, {}),
    ("GET", "/v1/unsubscribe/{token}"): (None, {}),
    ("POST", "/v1/unsubscribe/{token}"): (None, {}),
    ("GET", "/v1/webhook-endpoints"): (None, {}),
    ("POST", "/v1/webhook-endpoints"): (
        {
            "url": "https://hooks.example.com/two",
            "event_types": ["points.*", "order.created"],
            "description": "CRM",
            "enabled": True,
        },
        {},
    ),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): (None, {}),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): (None, {}),
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): ({"description": "CRM, moved", "enabled": True}, {}),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): (None, {"limit": "10", "status": "pending"}),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"): (None, {}),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): ({"overlap_seconds": 60}, {}),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/test"): (None, {}),
    ("GET", "/v1/rewards"): (None, {"status": "active"}),
    ("POST", "/v1/rewards"): (REWARD, {}),
    ("GET", "/v1/rewards/{reward_id}"): (None, {}),
    ("PUT", "/v1/rewards/{reward_id}"): ({**REWARD, "cost_points": 60}, {}),
    ("PATCH", "/v1/rewards/{reward_id}"): ({"status": "paused", "stock": 10}, {}),
    ("DELETE", "/v1/rewards/{reward_id}"): (None, {}),
    ("GET", "/v1/rewards/{reward_id}/versions"): (None, {}),
    ("GET", "/v1/customers/{external_id}/rewards"): (None, {"locale": "ru"}),
    ("POST", "/v1/customers/{external_id}/redemptions"): (
        {"reward_id": "00000000-0000-4000-8000-000000000000"},
        {},
    ),
    ("GET", "/v1/redemptions"): (None, {"customer": "c-1", "status": "issued", "limit": "10"}),
    ("GET", "/v1/redemptions/{redemption_id}"): (None, {}),
    ("POST", "/v1/redemptions/{redemption_id}/cancel"): ({"reason": "changed my mind"}, {}),
    ("POST", "/v1/codes/{code}/validate"): (order("cart"), {}),
    ("POST", "/v1/codes/{code}/use"): ({"order_external_id": "o-1"}, {}),
    ("PUT", "/v1/stripe/connection"): (
        {
            "api_key": STRIPE_KEY,
            "webhook_secret": STRIPE_SECRET,
            "create_orders": False,
            "sku_metadata_key": "sku",
        },
        {},
    ),
    ("GET", "/v1/stripe/connection"): (None, {}),
    ("DELETE", "/v1/stripe/connection"): (None, {}),
    ("GET", "/v1/stripe/events"): (None, {"status": "ignored", "type": "customer.created", "limit": "10"}),
    ("GET", "/v1/stripe/events/{event_id}"): (None, {}),
    ("POST", "/v1/stripe/events/{event_id}/retry"): (None, {}),
    ("GET", "/v1/gift-rules"): (None, {"status": "active"}),
    ("POST", "/v1/gift-rules"): (
        {
            "name": "Birthday cupcake",
            "trigger": {"kind": "birthday"},
            "gifts": [
                {"kind": "item", "sku": "CAKE", "name": "Cupcake", "cost": {"amount": 250, "currency": "EUR"}}
            ],
            "holdout": "0",
            "status": "draft",
        },
        {},
    ),
    ("GET", "/v1/gift-rules/{gift_rule_id}"): (None, {}),
    ("PATCH", "/v1/gift-rules/{gift_rule_id}"): ({"probability": "0.25", "description": "changed"}, {}),
    ("DELETE", "/v1/gift-rules/{gift_rule_id}"): (None, {}),
    ("GET", "/v1/gift-rules/{gift_rule_id}/versions"): (None, {}),
    ("POST", "/v1/gift-rules/{gift_rule_id}/simulate"): (
        {"from": "2026-02-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
        {},
    ),
    ("GET", "/v1/gift-rules/{gift_rule_id}/stats"): (None, {"version": "1"}),
    ("GET", "/v1/gift-key"): (None, {}),
    ("GET", "/v1/gifts"): (
        None,
        {"customer": "c-1", "order": "o-1", "outcome": "granted", "item_status": "waiting", "limit": "10"},
    ),
    ("POST", "/v1/customers/{external_id}/recovery"): (
        {"reason": "parcel lost", "action": {"kind": "points", "points": 50}, "order": "o-1"},
        {},
    ),
    ("GET", "/v1/recovery/budget"): (None, {"month": "2026-03"}),
    ("GET", "/v1/recovery/settings"): (None, {}),
    ("PUT", "/v1/recovery/settings"): (RECOVERY_SETTINGS, {}),
    ("POST", "/v1/cases"): (
        {"customer": "c-1", "summary": "parcel late", "order": "o-1", "note": "called the courier"},
        {},
    ),
    ("GET", "/v1/cases"): (None, {"status": "open", "agent": "none", "customer": "c-1", "limit": "10"}),
    ("GET", "/v1/cases/{case_id}"): (None, {}),
    ("POST", "/v1/cases/{case_id}/notes"): ({"text": "called back"}, {}),
    ("POST", "/v1/cases/{case_id}/close"): ({"note": "shipping refunded"}, {}),
    ("POST", "/v1/surveys"): (
        {
            "key": "service",
            "name": "Our service",
            "kind": "csat",
            "questions": {"en": "How did {shop} do?"},
            "dimensions": [{"key": "speed"}, {"key": "accuracy", "labels": {"en": "Got it right"}}],
            "send_after": "delivery",
            "delay_days": 2,
            "alarm_below": 3,
            "ask_promoters": "review",
            "follow_up": True,
        },
        {},
    ),
    ("GET", "/v1/surveys"): (None, {"status": "active"}),
    ("GET", "/v1/surveys/{key}"): (None, {}),
    ("PATCH", "/v1/surveys/{key}"): ({"name": "After an order, v2", "alarm_below": 6}, {}),
    ("POST", "/v1/feedback"): (
        {
            "customer": "c-1",
            "survey": "nps",
            "score": 9,
            "comment": "lovely",
            "order": "o-1",
            "channel": "web",
        },
        {},
    ),
    ("GET", "/v1/feedback"): (
        None,
        {"customer": "c-1", "survey": "nps", "category": "detractor", "alarm": "true", "limit": "10"},
    ),
    ("GET", "/v1/feedback/{feedback_id}"): (None, {}),
    ("GET", "/v1/reports/nps"): (
        None,
        {"from": "2026-02-01", "to": "2026-03-31", "period": "week", "segment": "tier", "kind": "nps"},
    ),
    ("GET", "/v1/answer/{token}"): (None, {"score": "3"}),
    ("POST", "/v1/answer/{token}"): (None, {}),
    # Without a signature: every walked variant is refused (400) and stores nothing.
    ("POST", "/v1/stripe/webhooks/{program_id}"): ({"id": "evt_1", "type": "customer.created"}, {}),
}
