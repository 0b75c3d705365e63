"""From stored facts to a template's variables: the customer as a person (first name, tier, points), the
order with what was in it, the tier's benefits, the points and dates of the trigger (dates in the
customer's own time zone). Pure: the send sweep loads the rows for a whole batch, then calls this."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.messaging.schemas import MessagingSettings
from service.rewards.domain import localized


def first_name(name: str | None) -> str | None:
    if not name or not name.strip():
        return None
    return name.strip().split()[0]


# The Latvian alphabet (no q, w, x, y): a name spelled otherwise is foreign and keeps its form.
_LATVIAN_LETTERS = frozenset("aābcčdeēfgģhiījkķlļmnņoprsštuūvzž")
_LATVIAN_VOWELS = frozenset("aāeēiīouū")


def latvian_vocative(name: str) -> str:
    """A Latvian given name as it is addressed ("Sveiki, Jāni!"): -is -> -i (Jānis -> Jāni), -us -> -u
    (Ingus -> Ingu), -s after a consonant and -š dropped (Andrejs -> Andrej, Ainārs -> Ainār, Mārtiņš ->
    Mārtiņ). Feminine -a / -e and every other ending stay, and so do -as / -es / -os (no Latvian given
    name ends so: Lukas, Agnes are foreign) and names not spelled in the Latvian alphabet. Only the last
    letter can go, so the capitalisation is the customer's own."""
    name = unicodedata.normalize("NFC", name)
    lower = name.lower()
    if len(lower) != len(name) or len(lower) < 3 or not set(lower) <= _LATVIAN_LETTERS:
        return name
    last, before = lower[-1], lower[-2]
    if last == "š" or (last == "s" and (before in "iu" or before not in _LATVIAN_VOWELS)):
        return name[:-1]
    return name


def customer_vars(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "first_name": first_name(row.get("name")),
        "name": row.get("name"),
        "email": row.get("email"),
        "external_id": row["external_id"],
        "tier": row.get("tier_name"),
        "points": int(row.get("points") or 0),  # available: what can be spent today
    }


def order_vars(order: dict[str, Any]) -> dict[str, Any]:
    lines = [
        {"name": line.get("name") or line["sku"], "sku": line["sku"], "quantity": int(line["quantity"])}
        for line in order.get("lines") or []
    ]
    return {
        "number": order["external_id"],
        "total": {"amount": int(order["total_amount"]), "currency": order["currency"]},
        "placed_at": order["placed_at"],
        "lines": lines,
        "item_count": sum(line["quantity"] for line in lines),
        "points": int(order.get("points_earned") or 0),
    }


def _moment(value: str | datetime) -> datetime:
    """A time from a row, or from an event's JSON payload (ISO 8601)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _local_date(value: str | datetime | None, zone: ZoneInfo) -> date | None:
    return None if value is None else _moment(value).astimezone(zone).date()


def available_on(value: str | datetime | None, zone: ZoneInfo, now: datetime) -> date | None:
    """The local date points pending until `value` can be spent; None when they already can."""
    return _local_date(value, zone) if value is not None and _moment(value) > now else None


def tier_vars(ref: dict[str, Any] | None, definition: dict[str, Any] | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    benefits = (definition or {}).get("benefits") or {}
    return {
        "key": ref.get("key"),
        "name": ref.get("name") or (definition or {}).get("name"),
        "multiplier": float(benefits.get("earn_multiplier") or 1),
        "free_shipping": bool(benefits.get("free_shipping")),
        "perks": list(benefits.get("perks") or []),
    }


# The gifts of a gift.granted event that are codes (a redemption of cost 0 each).
_CODE_GIFTS = ("reward", "free_shipping")


def _gift_code_source(gift: dict[str, Any]) -> dict[str, Any]:
    """A code gift of a gift.granted event in the shape of a `redemption.*` event's code."""
    return {
        "redemption_id": gift.get("redemption_id"),
        "code": gift.get("code"),
        "reward": {"name": gift.get("reward_name")},
        "expires_at": gift.get("expires_at"),
    }


def _code_gifts(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in event.get("gifts") or () if isinstance(g, dict) and g.get("kind") in _CODE_GIFTS]


def code_source(context: dict[str, Any]) -> dict[str, Any] | None:
    """The code a message sends: the one its journey step attached (`redemption`), else the one its
    trigger was about (a `redemption.*` event, or a gift.granted event's first code gift). Each carries
    `redemption_id`, `code`, `reward`, `expires_at`."""
    attached = context.get("redemption")
    if attached:
        return dict(attached)
    event = context.get("event") or {}
    if event.get("redemption_id"):
        return dict(event)
    codes = _code_gifts(event)
    return _gift_code_source(codes[0]) if codes else None


def code_vars(
    source: dict[str, Any] | None,
    redemption: dict[str, Any] | None,
    locale: str | None,
    zone: ZoneInfo,
) -> dict[str, Any]:
    """`code`, `reward` and `expires_on` of a code; `redemption` is its row as loaded at send time (the
    reward's name and description per locale), `source` what the trigger or the step recorded."""
    source = source or {}
    row = redemption or {}
    reward = source.get("reward") or {}
    code = row.get("code") or source.get("code")
    if not code:
        return {"code": None, "reward": None, "expires_on": None}
    expires_at = row["expires_at"] if "expires_at" in row else source.get("expires_at")
    return {
        "code": code,
        "reward": {
            "name": localized(row.get("name") or reward.get("name"), locale),
            "description": localized(row.get("description") or reward.get("description"), locale),
        },
        "expires_on": _local_date(expires_at, zone),
    }


def gift_vars(
    event: dict[str, Any], first_code: dict[str, Any], locale: str | None, zone: ZoneInfo
) -> dict[str, Any]:
    """`gift` of a surprise message, from its gift.granted event; `first_code` is the message's `code`,
    `reward` and `expires_on` (as loaded at send time), which stand for the first code gift."""
    gifts = [g for g in event.get("gifts") or () if isinstance(g, dict)]
    points = sum(int(g.get("points") or 0) for g in gifts if g.get("kind") == "points")
    codes = [
        code_vars(_gift_code_source(g), None, locale, zone) for g in gifts if g.get("kind") in _CODE_GIFTS
    ]
    if codes and first_code.get("code") == codes[0]["code"]:  # not a code a journey step gave instead
        codes[0] = dict(first_code)
    note = next((str(g["text"]) for g in gifts if g.get("kind") == "note" and g.get("text")), None)
    return {
        "rule_name": event.get("rule_name"),
        "points": points or None,
        "products": [  # not "items": a template's gift.items would be the dict's method
            {
                "name": g.get("name") or g.get("sku"),
                "sku": g.get("sku"),
                "in_parcel": bool(g.get("in_parcel")),
            }
            for g in gifts
            if g.get("kind") == "item"
        ],
        "note": note,
        "codes": [c for c in codes if c["code"]],
    }


def years_between(start: date, end: date) -> int:
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def message_vars(
    message_type: str,
    context: dict[str, Any],
    customer: dict[str, Any],
    order: dict[str, Any] | None,
    tier_definitions: dict[str, dict[str, Any]],
    settings: MessagingSettings,
    zone: ZoneInfo,
    now: datetime,
    *,
    locale: str | None = None,
    redemption: dict[str, Any] | None = None,
    answer_url: str | None = None,
) -> dict[str, Any]:
    """The variables of one message type (catalogue.MESSAGE_TYPES[...].variables). `locale` is the
    template's (texts given per locale, such as a reward's name, are taken in it); `redemption` the row
    of the code the message sends, if it sends one; `answer_url` a survey's signed answer page."""
    event: dict[str, Any] = context.get("event") or {}
    today = now.astimezone(zone).date()
    first_order = _local_date(customer.get("first_order_at"), zone)
    last_order = _local_date(customer.get("last_order_at"), zone)
    reward = context.get("reward_points")
    orders_count = int(customer.get("orders_count") or 0)
    if message_type in ("order_thank_you", "delivery_check_in", "review_request", "points_earned"):
        # No order (a preview for a real customer): None, the caller decides (catalogue `needs_order`).
        values: dict[str, Any] = {"order": order_vars(order) if order else None}
        if message_type == "review_request":
            values["review_url"] = settings.review_url
        if message_type == "points_earned":
            values["points"] = int(event.get("points") or 0)
        if message_type in ("order_thank_you", "points_earned"):
            # Points earned say when they mature; an order's points mature with its pending lots.
            pending_until = (
                event.get("available_at")
                if message_type == "points_earned"
                else (order or {}).get("points_available_at")
            )
            values["pending_points"] = int(customer.get("pending_points") or 0)
            values["points_available_on"] = available_on(pending_until, zone, now)
        return values
    if message_type == "points_expiring":
        expires_on = _local_date(event.get("expires_at"), zone) or today
        return {
            "points": int(event.get("points") or 0),
            "expires_on": expires_on,
            "days": max((expires_on - today).days, 0),
        }
    if message_type == "tier_upgraded":
        to, was = event.get("to") or {}, event.get("from")
        return {
            "tier": tier_vars(to, tier_definitions.get(to.get("key", ""))),
            "previous_tier": was.get("name") if was else None,
        }
    if message_type == "tier_downgrade_warning":
        tier = event.get("tier") or {}
        keep = event.get("keep")
        keep_vars = None
        if keep:
            remaining: Any = int(keep.get("remaining") or 0)
            if keep.get("metric") == "spend":
                remaining = {"amount": remaining, "currency": keep.get("currency")}
            keep_vars = {"metric": keep.get("metric"), "remaining": remaining}
        return {
            "tier": tier_vars(tier, tier_definitions.get(tier.get("key", ""))),
            "next_tier": (event.get("next_tier") or {}).get("name"),
            "downgrade_on": _local_date(event.get("downgrade_at"), zone) or today,
            "keep": keep_vars,
        }
    # The marketing messages that can carry a reward: points, or a code their step gave.
    gift = code_vars(code_source(context), redemption, locale, zone)
    if message_type == "repeat_invitation":
        return {"offer": context.get("offer"), "reward_points": reward, "orders_count": orders_count, **gift}
    if message_type == "first_order_anniversary":
        start = first_order or today
        return {
            "years": max(years_between(start, today), 1),
            "first_order_on": start,
            "orders_count": orders_count,
            "reward_points": reward,
            **gift,
        }
    if message_type == "win_back":
        last = last_order or today
        return {
            "days_since_last_order": (today - last).days,
            "last_order_on": last,
            "reward_points": reward,
            **gift,
        }
    if message_type == "birthday":
        return {"reward_points": reward, **gift}
    if message_type == "surprise":
        # No order: a gift whose trigger had none (a birthday), or one gone since.
        return {
            "gift": gift_vars(event, gift, locale, zone),
            "order": order_vars(order) if order else None,
            **gift,
        }
    if message_type in ("reward_issued", "code_expiring"):
        values = gift
        if message_type == "code_expiring":
            values["expires_on"] = expires_on = values["expires_on"] or today
            values["days"] = max((expires_on - today).days, 0)
        return values
    if message_type == "survey":
        return {
            "survey": {
                **survey_vars(context.get("survey") or {}, locale, customer, answer_url),
                "follow_up": bool(context.get("follow_up_case_id")),
            },
            "order": order_vars(order) if order else None,
        }
    if message_type == "promoter_ask":
        return {
            "ask": event.get("promoter_ask") or "review",
            "score": event.get("score"),
            "review_url": settings.review_url,
            "referral_url": settings.shop_url,  # the customer's own referral link, once referrals land
            "order": order_vars(order) if order else None,
        }
    if message_type == "feedback_alarm":
        feedback = dict(context.get("feedback") or {})
        if feedback.get("answered_at"):
            feedback["answered_at"] = _moment(feedback["answered_at"]).astimezone(zone)
        return {
            "feedback": feedback,
            "status": context.get("status") or {},
            "case_url": context.get("case_url"),
        }
    raise ValueError(f"unknown message type {message_type!r}")


def survey_vars(
    survey: dict[str, Any], locale: str | None, customer: dict[str, Any], answer_url: str | None
) -> dict[str, Any]:
    """A survey message's question (the survey's own text in the message's locale, `{shop}` the
    program's name) and one answer link per score of its scale."""
    questions: dict[str, str] = survey.get("questions") or {}
    question = questions.get(locale or "en") or questions.get("en") or ""
    base = answer_url or ""
    return {
        "kind": survey.get("kind"),
        "question": question.replace("{shop}", str(customer.get("program_name") or "")),
        "scores": [
            {"score": score, "url": f"{base}?score={score}"}
            for score in range(int(survey.get("low", 0)), int(survey.get("high", 10)) + 1)
        ],
        "answer_url": base,
    }
