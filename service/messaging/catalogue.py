"""The message types Encore sends: their category (consent rules) and the variables their templates see.

Transactional messages follow from something the customer did or owns (an order, their points, their
tier) and stop only at unsubscribe-all; marketing messages need marketing consent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

Category = Literal["transactional", "marketing"]
LOCALES: tuple[str, ...] = ("en", "tr", "cy", "lv", "ms", "ru")
# Every message sees these (the layout parts greeting/signature are rendered first and passed in).
COMMON_VARIABLES: frozenset[str] = frozenset(
    {"customer", "program", "unsubscribe_url", "greeting", "signature", "locale", "marketing"}
)
HELPERS: frozenset[str] = frozenset({"money", "number", "date", "plural"})


@dataclass(frozen=True, slots=True)
class MessageType:
    key: str
    category: Category
    description: str
    variables: frozenset[str]
    # Held back by quiet hours; not the thank-you for an order just placed (the customer is awake).
    quiet_hours: bool = True

    @property
    def allowed_names(self) -> frozenset[str]:
        return self.variables | COMMON_VARIABLES | HELPERS


_ORDER = frozenset({"order"})
MESSAGE_TYPES: dict[str, MessageType] = {
    t.key: t
    for t in (
        MessageType(
            "order_thank_you", "transactional", "Thank-you right after an order", _ORDER, quiet_hours=False
        ),
        MessageType("delivery_check_in", "transactional", '"How is it?" some days after the order', _ORDER),
        MessageType(
            "review_request", "marketing", "Asks for a review of what was bought", _ORDER | {"review_url"}
        ),
        MessageType(
            "points_earned", "transactional", "Points earned and the balance", frozenset({"points", "order"})
        ),
        MessageType(
            "points_expiring",
            "transactional",
            "Points expire soon (30 and 7 days)",
            frozenset({"points", "expires_on", "days"}),
        ),
        MessageType(
            "tier_upgraded",
            "transactional",
            "Reached a higher VIP tier",
            frozenset({"tier", "previous_tier"}),
        ),
        MessageType(
            "tier_downgrade_warning",
            "transactional",
            "The tier will drop unless the customer qualifies again",
            frozenset({"tier", "next_tier", "downgrade_on", "keep"}),
        ),
        MessageType(
            "repeat_invitation",
            "marketing",
            "Invitation for returning customers (an event, early access, a gift)",
            frozenset({"offer", "reward_points", "orders_count"}),
        ),
        MessageType(
            "first_order_anniversary",
            "marketing",
            "Anniversary of the first order",
            frozenset({"years", "first_order_on", "orders_count", "reward_points"}),
        ),
        MessageType(
            "win_back",
            "marketing",
            "No order for a while (optionally with a reward)",
            frozenset({"days_since_last_order", "last_order_on", "reward_points"}),
        ),
        MessageType(
            "birthday",
            "marketing",
            "Birthday greeting (optionally with a reward)",
            frozenset({"reward_points"}),
        ),
    )
}


def sample_context(message_type: str, *, points: int = 3, now: datetime | None = None) -> dict[str, Any]:
    """Plausible values for a preview or a save-time check; `points` drives every count (plural checks)."""
    today = (now or datetime(2026, 3, 2)).date()
    order = {
        "number": "1001",
        "total": {"amount": 4990 * points, "currency": "EUR"},
        "placed_at": datetime(2026, 3, 2, 12, 0),
        "lines": [{"name": "Trail shoes", "quantity": points, "sku": "SHOE-1"}],
        "item_count": points,
        "points": points,
    }
    values: dict[str, Any] = {
        "order": order,
        "review_url": "https://shop.example/review/1001",
        "points": points,
        "expires_on": date(today.year + 1, 1, 31),
        "days": points,
        "tier": {
            "key": "gold",
            "name": "Gold",
            "multiplier": 1.5,
            "free_shipping": True,
            "perks": ["Early access"],
        },
        "previous_tier": "Silver",
        "next_tier": "Silver",
        "downgrade_on": date(today.year + 1, 3, 2),
        "keep": {"metric": "spend", "remaining": {"amount": 4000, "currency": "EUR"}},
        "offer": "Our spring collection opens for you two days early.",
        "reward_points": points,
        "orders_count": points,
        "years": points,
        "first_order_on": date(today.year - points, 3, 2),
        "days_since_last_order": points,
        "last_order_on": date(today.year - 1, 3, 2),
    }
    return {name: values[name] for name in MESSAGE_TYPES[message_type].variables}


def sample_customer(points: int = 3) -> dict[str, Any]:
    return {
        "first_name": "Ada",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "external_id": "sample",
        "tier": "Gold",
        "points": points,
    }
