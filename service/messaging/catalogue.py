"""The message types Encore sends: their category (consent rules) and the variables their templates see.

Transactional messages follow from something the customer did or owns (an order, their points, their
tier) and stop only at unsubscribe-all; marketing messages need marketing consent. Staff messages (an
alarm) are about a customer but go to the program's own people (the address is in the message's
context): no customer consent, quiet hours or caps apply to them, only the program's staff cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

Category = Literal["transactional", "marketing", "staff"]
LOCALES: tuple[str, ...] = ("en", "tr", "cy", "lv", "ms", "ru")
# Every message sees these (the layout parts greeting/signature are rendered first and passed in).
COMMON_VARIABLES: frozenset[str] = frozenset(
    {"customer", "program", "unsubscribe_url", "greeting", "signature", "locale", "marketing"}
)
HELPERS: frozenset[str] = frozenset({"money", "number", "date", "plural", "vocative"})


@dataclass(frozen=True, slots=True)
class MessageType:
    key: str
    category: Category
    description: str
    variables: frozenset[str]
    # Held back by quiet hours; not the thank-you for an order just placed (the customer is awake).
    quiet_hours: bool = True
    # About one order: without it (gone since) the message fails rather than go out half empty.
    needs_order: bool = False
    # Sends a code (a redemption): without one the message fails; once the code is no longer open
    # (`open_code`: used, cancelled or expired since) it is not sent.
    needs_code: bool = False
    open_code: bool = False

    @property
    def allowed_names(self) -> frozenset[str]:
        return self.variables | COMMON_VARIABLES | HELPERS


_ORDER = frozenset({"order"})
# A code Encore issued (a redemption): the code as shown, the reward (`name`, `description` in the
# message's locale) and the last day it can be used (`expires_on`, null: no end). The messages that can
# carry a reward have them too (null without a code: the journey step gave none).
_CODE = frozenset({"code", "reward", "expires_on"})
# What the points of an order or a credit mean today: `customer.points` can be spent now,
# `pending_points` (all of the customer's) wait for the return window, and this order's (or credit's)
# points can be spent from `points_available_on` (a date in the customer's time zone; null: already).
_PENDING = frozenset({"pending_points", "points_available_on"})
# A surprise gift (`gift`, from its gift.granted event): `rule_name`, `points` (null: none), `products`
# (the physical items: name, sku, `in_parcel`: in this order's parcel, else with the next order; not
# `items`, which a template would read as the dict's method), `note` (the personal note, already in
# the customer's language; null: none) and `codes` (each code, reward and expires_on as above; the
# first is also `code`/`reward`/`expires_on`). `order` is null for a gift without one (a birthday).
MESSAGE_TYPES: dict[str, MessageType] = {
    t.key: t
    for t in (
        MessageType(
            "order_thank_you",
            "transactional",
            "Thank-you right after an order",
            _ORDER | _PENDING,
            quiet_hours=False,
            needs_order=True,
        ),
        MessageType(
            "delivery_check_in",
            "transactional",
            '"How is it?" some days after the order',
            _ORDER,
            needs_order=True,
        ),
        MessageType(
            "review_request",
            "marketing",
            "Asks for a review of what was bought",
            _ORDER | {"review_url"},
            needs_order=True,
        ),
        MessageType(
            "points_earned",
            "transactional",
            "Points earned, when they can be spent, and the balance",
            frozenset({"points", "order"}) | _PENDING,
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
            frozenset({"offer", "reward_points", "orders_count"}) | _CODE,
        ),
        MessageType(
            "first_order_anniversary",
            "marketing",
            "Anniversary of the first order",
            frozenset({"years", "first_order_on", "orders_count", "reward_points"}) | _CODE,
        ),
        MessageType(
            "win_back",
            "marketing",
            "No order for a while (optionally with a reward)",
            frozenset({"days_since_last_order", "last_order_on", "reward_points"}) | _CODE,
        ),
        MessageType(
            "birthday",
            "marketing",
            "Birthday greeting (optionally with a reward)",
            frozenset({"reward_points"}) | _CODE,
        ),
        MessageType(
            "reward_issued",
            "transactional",
            "The code of a reward (redeemed for points, or given by a journey step)",
            _CODE,
            quiet_hours=False,
            needs_code=True,
        ),
        MessageType(
            "code_expiring",
            "transactional",
            "An unused code expires soon (7 days before)",
            _CODE | {"days"},
            needs_code=True,
            open_code=True,
        ),
        MessageType(
            "surprise",
            "marketing",
            "A surprise gift announced (points, a code, an item on its way, a personal note)",
            frozenset({"gift", "order"}) | _CODE,
        ),
        # `survey`: its question in the message's locale, `kind` (nps, csat), `scores` (each `score` with
        # its `url`: the answer page with that score chosen), `answer_url` (the page, no score chosen),
        # `follow_up` (true: "did we put it right?" after a case was closed). `order`: null without one.
        MessageType(
            "survey",
            "transactional",
            "A survey (NPS or CSAT): one link per score, answered on Encore's page",
            frozenset({"survey", "order"}),
        ),
        # After a promoter's answer: `ask` is review or referral, `score` the score they gave,
        # `review_url` (the messaging settings'), `referral_url` (the shop's page for now), `order` or null.
        MessageType(
            "promoter_ask",
            "marketing",
            "Thanks a promoter and asks for a review or a recommendation",
            frozenset({"ask", "score", "review_url", "referral_url", "order"}),
        ),
        # To the program's alert address: `feedback` (score, kind, category, survey, comment, dimensions
        # with label and score, order number or null, answered_at), the customer's `status` (tier, points,
        # pending_points, orders_count, open_cases) and `case_url` (null: no case). `customer` is the
        # customer who answered.
        MessageType(
            "feedback_alarm",
            "staff",
            "To staff: a score under the alarm threshold, with the comment and the customer's status",
            frozenset({"feedback", "status", "case_url"}),
            quiet_hours=False,
        ),
    )
}


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def sample_context(
    message_type: str, *, points: int = 3, now: datetime | None = None, pending_days: int = 14
) -> dict[str, Any]:
    """Plausible values for a preview or a save-time check; `points` drives every count (plural checks).
    Dates follow from `now` (local time; the preview passes the clock's) and agree with the counts: in N
    days is today + N. A count too large for the calendar (a year after 9999) moves the dates as far as
    the calendar goes and the count shown with them, so sample values never break a render."""
    moment = now or datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    today = moment.date()
    days_ahead = min(points, (date.max - today).days)
    days_back = min(points, (today - date.min).days)
    years_back = min(points, today.year - 1)
    order = {
        "number": "1001",
        "total": {"amount": 4990 * points, "currency": "EUR"},
        "placed_at": moment,
        "lines": [{"name": "Trail shoes", "quantity": points, "sku": "SHOE-1"}],
        "item_count": points,
        "points": points,
    }
    values: dict[str, Any] = {
        "order": order,
        "review_url": "https://shop.example/review/1001",
        "points": points,
        "pending_points": points,
        "points_available_on": today + timedelta(days=pending_days) if pending_days else None,
        "expires_on": today + timedelta(days=days_ahead),
        "days": days_ahead,
        "tier": {
            "key": "gold",
            "name": "Gold",
            "multiplier": 1.5,
            "free_shipping": True,
            "perks": ["Early access"],
        },
        "previous_tier": "Silver",
        "next_tier": "Silver",
        "downgrade_on": today + timedelta(days=30),
        "keep": {"metric": "spend", "remaining": {"amount": 4000, "currency": "EUR"}},
        "offer": "Our spring collection opens for you two days early.",
        "reward_points": points,
        "orders_count": points,
        "years": years_back,
        "first_order_on": _years_before(today, years_back),
        "days_since_last_order": days_back,
        "last_order_on": today - timedelta(days=days_back),
        "code": "SHOP-7KQ2-M9XD-4RTA-HW3C",
        "reward": {"name": "EUR 5 off", "description": "EUR 5 off your next order of EUR 25 or more."},
    }
    values["gift"] = {
        "rule_name": "Third order thank-you",
        "points": points,
        "products": [{"name": "Enamel mug", "sku": "MUG-1", "in_parcel": True}],
        # No name in it: a sample customer without one must not be named by the note either.
        "note": "Thank you for choosing the Trail shoes. With love, the whole team",
        "codes": [{"code": values["code"], "reward": values["reward"], "expires_on": values["expires_on"]}],
    }
    answer = "https://encore.example/v1/answer/sample"
    values["survey"] = {
        "kind": "nps",
        "question": "How likely are you to recommend us to a friend or colleague?",  # no shop name: previews give theirs
        "scores": [{"score": score, "url": f"{answer}?score={score}"} for score in range(11)],
        "answer_url": answer,
        "follow_up": False,
    }
    values["ask"] = "review"
    values["score"] = min(points, 10)
    values["referral_url"] = "https://shop.example"
    values["feedback"] = {
        "score": min(points, 10),
        "kind": "nps",
        "category": "detractor",
        "survey": "After delivery",
        "comment": "The parcel came two weeks late and nobody answered my emails.",
        "dimensions": [{"label": "Speed of answer", "score": 1}],
        "order_number": "1001",
        "answered_at": moment,
    }
    values["status"] = {
        "tier": "Gold",
        "points": points,
        "pending_points": points,
        "orders_count": points,
        "open_cases": points,
    }
    values["case_url"] = "https://encore.example/v1/cases/sample"
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
