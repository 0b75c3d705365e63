"""Pure decisions of the Stripe integration: what a key is, what an event asks for, how a Checkout
Session becomes an order, how a Stripe refund maps onto that order's money, and what coupon a reward's
code becomes. No I/O: Stripe's objects come in as plain dicts (as JSON gives them)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

TOLERANCE_SECONDS = 300  # a signature older or newer than this is refused (Stripe's default tolerance)
KEY_PATTERN = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,240}$")
WEBHOOK_SECRET_PATTERN = re.compile(r"^whsec_[A-Za-z0-9_+/=]{8,240}$")
# Events a connection acts on; every other type is recorded and ignored.
CHECKOUT_PAID = "checkout.session.completed"
CHECKOUT_ASYNC_PAID = "checkout.session.async_payment_succeeded"
REFUND_TYPES = ("refund.created", "refund.updated")
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CLOSED = "charge.dispute.closed"
HANDLED = (CHECKOUT_PAID, CHECKOUT_ASYNC_PAID, *REFUND_TYPES, CHARGE_REFUNDED, DISPUTE_CLOSED)
# How long a refund (or dispute) waits for the checkout of its payment before it is marked failed (it can
# be retried by hand after that); attempts back off up to an hour apart.
WAIT_FOR_ORDER = timedelta(days=3)
MAX_BACKOFF_SECONDS = 3600
# Outbound calls that fail for a passing reason are retried for this long, then given up as permanent.
SYNC_GIVE_UP = timedelta(days=1)


# --- keys and signatures ---------------------------------------------------------------------------


def key_facts(key: str) -> tuple[Literal["secret", "restricted"], Literal["test", "live"]] | None:
    """A Stripe API key's kind and mode by its prefix (`sk_test_`, `rk_live_`, ...), None if it is none."""
    m = KEY_PATTERN.fullmatch(key)
    if m is None:
        return None
    kind: Literal["secret", "restricted"] = "secret" if m.group(1) == "sk" else "restricted"
    mode: Literal["test", "live"] = "test" if m.group(2) == "test" else "live"
    return kind, mode


def signature_timestamp(header: str) -> int | None:
    """The `t=` of a `Stripe-Signature` header, read as the SDK reads it (the first item named exactly
    `t`); None if there is none, or more than one (the SDK would check another than this one), or it is
    not a plain number."""
    found = [part.split("=", 2) for part in header.split(",")]
    stamps = [item[1] for item in found if item[0] == "t" and len(item) > 1]
    if len(stamps) != 1 or len([item for item in found if item[0].strip() == "t"]) != 1:
        return None
    value = stamps[0]
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else None


def timestamp_problem(timestamp: int | None, now: float) -> str | None:
    """Stripe's SDK refuses an old signature but accepts one from the future; both are refused here
    (`now`: Unix seconds)."""
    if timestamp is None:
        return "the Stripe-Signature header has no timestamp (t=)"
    if timestamp > now + TOLERANCE_SECONDS:
        return f"the signature's timestamp is more than {TOLERANCE_SECONDS} s in the future"
    return None


# --- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Act:
    """What to do with an event: `record` an order, `refund`, `reverse` (a lost dispute), or `ignore`
    with the reason (kept as the event's outcome)."""

    kind: Literal["record", "refund", "reverse", "ignore"]
    why: str = ""


def act_on(event_type: str, obj: Mapping[str, Any], *, connection_live: bool, event_live: bool) -> Act:
    if event_live != connection_live:
        return Act(
            "ignore",
            f"a {'live' if event_live else 'test'}-mode event on a {'live' if connection_live else 'test'}"
            "-mode connection",
        )
    if event_type == CHECKOUT_PAID:
        status = obj.get("payment_status")
        if status in ("paid", "no_payment_required"):
            return Act("record")
        if status == "unpaid":
            return Act("ignore", "not paid yet: checkout.session.async_payment_succeeded will record it")
        return Act("ignore", f"payment_status {status!r} earns nothing")
    if event_type == CHECKOUT_ASYNC_PAID:
        return Act("record")
    if event_type in REFUND_TYPES:
        status = obj.get("status")
        if status == "succeeded":
            return Act("refund")
        if status in ("pending", "requires_action"):
            return Act("ignore", f"refund {status}: reversed once Stripe reports it succeeded")
        return Act("ignore", f"a {status} refund reverses nothing")
    if event_type == CHARGE_REFUNDED:
        return Act("refund")
    if event_type == DISPUTE_CLOSED:
        if obj.get("status") == "lost":
            return Act("reverse")
        return Act("ignore", f"dispute closed as {obj.get('status')!r}: nothing to reverse")
    return Act("ignore", f"Encore does not act on {event_type}")


def backoff_seconds(attempts: int) -> int:
    """Seconds before attempt `attempts + 1`: 10 s, 20 s, 40 s, ... at most an hour."""
    return int(min(MAX_BACKOFF_SECONDS, 10 * 2 ** min(max(attempts - 1, 0), 20)))


# --- checkouts -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutLine:
    sku: str
    quantity: int
    unit_amount: int
    name: str | None
    category: str | None


@dataclass(frozen=True, slots=True)
class Checkout:
    """A paid Checkout Session as an order: amounts in minor units of `currency` (upper case). Tax is not
    counted: the total is lines − discount + shipping, what points are earned on."""

    session_id: str
    placed_at: datetime
    currency: str
    lines: tuple[CheckoutLine, ...]
    discount_amount: int
    shipping_amount: int
    total_amount: int
    charged_amount: int  # what Stripe charged (amount_total, tax included): refunds are measured on it
    payment_intent: str | None
    customer_hint: str | None  # `encore_customer_id` metadata: the shop's own customer id
    stripe_customer: str | None
    email: str | None
    name: str | None
    promotion_codes: tuple[str, ...]  # ids of the promotion codes its discounts used


def _id(value: Any) -> str | None:
    """An expandable field: the id, whether Stripe sent the id or the object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] or None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _line_parts(
    item: Mapping[str, Any], sku_key: str, category_key: str
) -> tuple[str, int, int, str | None, str | None]:
    """A line item's sku, quantity, subtotal (before discounts), name and category."""
    price = item.get("price") or {}
    product = price.get("product") if isinstance(price, Mapping) else None
    metadata = (product.get("metadata") if isinstance(product, Mapping) else None) or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    product_id = _id(product) or _id(price) or str(item.get("id"))
    sku = _text(metadata.get(sku_key), 64) or product_id
    category = _text(metadata.get(category_key), 64)
    name = _text(product.get("name") if isinstance(product, Mapping) else None, 200) or _text(
        item.get("description"), 200
    )
    return sku, max(_int(item.get("quantity")), 1), _int(item.get("amount_subtotal")), name, category


def _divide(sku: str, quantity: int, subtotal: int, name: str | None, category: str | None) -> CheckoutLine:
    """`quantity` units of `subtotal`; a subtotal the quantity does not divide is one unit of the whole."""
    if subtotal % quantity:
        return CheckoutLine(sku, 1, subtotal, name, category)
    return CheckoutLine(sku, quantity, subtotal // quantity, name, category)


def checkout_line(item: Mapping[str, Any], sku_key: str, category_key: str) -> CheckoutLine:
    """A line item (its price's product expanded): the sku from the product's metadata (else the product's
    id), the category likewise (else none); the unit amount from the line's subtotal, before discounts. A
    subtotal its quantity does not divide (tiered or decimal prices) is one unit of the whole."""
    return _divide(*_line_parts(item, sku_key, category_key))


def merge_lines(lines: Sequence[CheckoutLine]) -> tuple[CheckoutLine, ...]:
    """One line per sku (an order lists a sku once), in the order the skus first come: two prices of one
    product become one line of their summed quantities, at their average unit amount when it is whole,
    else one unit of their sum — the same whatever order the lines come in."""
    groups: dict[str, list[CheckoutLine]] = {}
    for line in lines:
        groups.setdefault(line.sku, []).append(line)
    merged = []
    for sku, group in groups.items():
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        quantity = sum(line.quantity for line in group)
        amount = sum(line.quantity * line.unit_amount for line in group)
        merged.append(_divide(sku, quantity, amount, first.name, first.category))
    return tuple(merged)


def checkout_lines(
    items: Sequence[Mapping[str, Any]], sku_key: str, category_key: str
) -> tuple[CheckoutLine, ...]:
    """The order's lines of a session's line items: items of one sku summed (quantities and subtotals)
    before their unit amount is worked out, so no quantity is lost to an indivisible part."""
    groups: dict[str, tuple[str, int, int, str | None, str | None]] = {}
    for item in items:
        sku, quantity, subtotal, name, category = _line_parts(item, sku_key, category_key)
        seen = groups.get(sku)
        if seen is None:
            groups[sku] = (sku, quantity, subtotal, name, category)
        else:
            groups[sku] = (sku, seen[1] + quantity, seen[2] + subtotal, seen[3], seen[4])
    return tuple(_divide(*parts) for parts in groups.values())


def promotion_codes(session: Mapping[str, Any]) -> tuple[str, ...]:
    """The promotion codes a session's discounts used: `discounts` and, expanded,
    `total_details.breakdown.discounts` (either may be the one Stripe fills)."""
    found: list[str] = []
    for discount in session.get("discounts") or []:
        if isinstance(discount, Mapping):
            found.append(_id(discount.get("promotion_code")) or "")
    breakdown = (session.get("total_details") or {}).get("breakdown") or {}
    for entry in breakdown.get("discounts") or []:
        discount = entry.get("discount") if isinstance(entry, Mapping) else None
        if isinstance(discount, Mapping):
            found.append(_id(discount.get("promotion_code")) or "")
    return tuple(dict.fromkeys(code for code in found if code))


def checkout(
    session: Mapping[str, Any], items: Sequence[Mapping[str, Any]], sku_key: str, category_key: str
) -> Checkout:
    details = session.get("total_details") or {}
    lines = checkout_lines(items, sku_key, category_key)
    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    discount = min(_int(details.get("amount_discount")), subtotal)
    shipping = _int(details.get("amount_shipping"))
    customer_details = session.get("customer_details") or {}
    customer = session.get("customer")
    metadata = session.get("metadata") or {}
    customer_metadata = (customer.get("metadata") if isinstance(customer, Mapping) else None) or {}
    email = _text(customer_details.get("email"), 320) or _text(session.get("customer_email"), 320)
    if email is None and isinstance(customer, Mapping):
        email = _text(customer.get("email"), 320)
    return Checkout(
        session_id=str(session["id"]),
        placed_at=datetime.fromtimestamp(_int(session.get("created")), UTC),
        currency=str(session.get("currency") or "").upper(),
        lines=lines,
        discount_amount=discount,
        shipping_amount=shipping,
        total_amount=subtotal - discount + shipping,
        charged_amount=_int(session.get("amount_total")),
        payment_intent=_id(session.get("payment_intent")),
        customer_hint=_text(metadata.get("encore_customer_id"), 128)
        or _text(customer_metadata.get("encore_customer_id"), 128),
        stripe_customer=_id(customer),
        email=email,
        name=_text(customer_details.get("name"), 200),
        promotion_codes=promotion_codes(session),
    )


def new_customer_id(stripe_customer: str | None, email: str | None) -> str | None:
    """The external id of a customer a checkout creates: the Stripe customer id, else `email:<address>`
    for a guest (the address in lower case: the same guest again finds the same customer)."""
    if stripe_customer:
        return stripe_customer
    if email:
        return f"email:{email.lower()}"[:128]
    return None


# --- refunds ---------------------------------------------------------------------------------------


def order_refund_amount(
    refund_amount: int, refunded_before: int, charged: int, order_total: int, order_refunded: int
) -> int:
    """The order's money a Stripe refund gives back. Stripe refunds what it charged (tax included); the
    order counts lines − discount + shipping: a refund is the same share of the order as of the charge,
    measured cumulatively so that partial refunds add up exactly to the whole. Never more than what the
    order has left (a refund larger than the charge refunds the rest)."""
    left = max(order_total - order_refunded, 0)
    if charged <= 0:
        return min(refund_amount, left)
    after = min(refunded_before + refund_amount, charged)
    target = after * order_total // charged if after < charged else order_total
    return max(min(target - min(refunded_before * order_total // charged, order_total), left), 0)


# --- outbound coupons ------------------------------------------------------------------------------

# Every code of a connected program passes here: `amount_off`, `percent_off` and `points_for_discount` may
# become Stripe coupons; the others stay Encore-only, and the sync's `redemption.synced` says why.


def coupon_for(discount: Mapping[str, Any], expires_at: datetime | None) -> dict[str, Any] | str:
    """The Stripe coupon a code's discount becomes (the parameters of POST /v1/coupons), or why it stays
    an Encore-only code: coupons do not touch shipping rates, cap a percentage, give a product or hold a
    declared value."""
    kind = discount.get("kind")
    params: dict[str, Any] = {"duration": "once", "max_redemptions": 1}
    if kind == "points_for_discount" and discount.get("max_share_percent") is not None:
        return "Stripe coupons cannot limit a discount to a share of the order"
    if kind in ("amount_off", "points_for_discount"):
        amount = discount.get("amount") or {}
        if not amount.get("amount"):
            return "a discount of no amount"
        params["amount_off"] = int(amount["amount"])
        params["currency"] = str(amount["currency"]).lower()
    elif kind == "percent_off":
        if discount.get("cap"):
            return "Stripe coupons cannot cap a percentage discount"
        params["percent_off"] = str(discount["percent"])
    else:
        reasons = {
            "free_shipping": "Stripe coupons do not touch shipping rates",
            "free_product": "Stripe coupons cannot give a product",
            "custom": "a custom reward has no discount Stripe can apply",
        }
        return reasons.get(str(kind), f"a {kind} reward has no Stripe coupon")
    if expires_at is not None:
        params["redeem_by"] = int(expires_at.timestamp())
    return params


def promotion_code_for(
    code: str,
    coupon_id: str,
    redemption_id: str,
    discount: Mapping[str, Any],
    expires_at: datetime | None,
    stripe_customer: str | None,
) -> dict[str, Any]:
    """The parameters of POST /v1/promotion_codes for a code: Encore's code itself, once, restricted to
    the Stripe customer when known and to the reward's minimum order."""
    params: dict[str, Any] = {
        "promotion": {"type": "coupon", "coupon": coupon_id},
        "code": code,  # as shown (API 2026: letters, digits and dashes; matched regardless of case)
        "max_redemptions": 1,
        "metadata": {"encore_redemption_id": redemption_id},
    }
    if stripe_customer:
        params["customer"] = stripe_customer
    if expires_at is not None:
        params["expires_at"] = int(expires_at.timestamp())
    minimum = discount.get("min_order")
    if minimum and minimum.get("amount"):
        params["restrictions"] = {
            "minimum_amount": int(minimum["amount"]),
            "minimum_amount_currency": str(minimum["currency"]).lower(),
        }
    return params
