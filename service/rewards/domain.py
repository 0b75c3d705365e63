"""Pure reward decisions, no I/O: codes, what a definition may say, whether a customer may redeem, what a
code takes off a cart, and when a limit's period starts."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from service.core.money import format_money

# Crockford's base 32: digits and upper-case letters without I, L, O and U (no look-alikes, no words).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_BITS = 80  # 16 characters of 5 bits
GROUP = 4
MAX_CODE_LENGTH = 64
MAX_VALUE = 1_000_000_000_000  # the most money a code is worth, in minor units (as an order's amounts)


def new_code(prefix: str | None, random_bits: Callable[[int], int] = secrets.randbits) -> str:
    """A fresh code: 80 random bits as 16 Crockford characters in groups of 4 joined by `-`, after the
    program's prefix if it has one (SHOP-7KQ2-M9XD-4HTN-PB3W). Valid as a Stripe promotion code as it is
    (letters, digits and dashes)."""
    value = random_bits(CODE_BITS)
    chars = [ALPHABET[(value >> (5 * i)) & 31] for i in range(CODE_BITS // 5)]
    groups = ["".join(chars[i : i + GROUP]) for i in range(0, len(chars), GROUP)]
    return "-".join(([prefix] if prefix else []) + groups)


def code_key(text: str) -> str | None:
    """What a code is looked up by: upper case, without dashes and spaces (a customer types it either way);
    None when it cannot be any code Encore issued (wrong characters or length): an unknown code."""
    # ASCII first: upper-casing other letters makes ASCII ones ("ß" -> "SS", "ſ" -> "S"), which would
    # let a look-alike match a real code.
    if len(text) > MAX_CODE_LENGTH or not text.isascii():
        return None
    key = "".join(ch for ch in text.upper() if ch not in "- ")
    if not key or not key.isalnum():
        return None
    return key


# --- definitions -------------------------------------------------------------------------------------

KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "amount_off": ("amount",),
    "percent_off": ("percent",),
    "free_shipping": (),
    "free_product": ("sku",),
    "points_for_discount": ("points_step", "step_amount"),
    "custom": ("value",),
}
# Fields that mean something only for some kinds: given for another kind they are a mistake.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "amount": ("amount_off",),
    "percent": ("percent_off",),
    "cap": ("percent_off",),
    "sku": ("free_product",),
    "points_step": ("points_for_discount",),
    "step_amount": ("points_for_discount",),
    "min_points": ("points_for_discount",),
    "max_points": ("points_for_discount",),
    "max_share_percent": ("points_for_discount",),
    "value": ("custom",),
}


def definition_problems(
    d: Mapping[str, Any], currencies: frozenset[str], tiers: frozenset[str]
) -> list[tuple[str, str]]:
    """(field, problem) pairs a definition has beyond its schema; `currencies` the program uses, `tiers`
    the keys of its tiers."""
    found: list[tuple[str, str]] = []
    kind = d["kind"]
    for name in KIND_FIELDS[kind]:
        if d.get(name) is None:
            found.append((name, f"a {kind} reward needs `{name}`"))
    for name, kinds in ONLY_FOR.items():
        if d.get(name) is not None and kind not in kinds:
            found.append((name, f"`{name}` is for {' or '.join(kinds)} rewards, not {kind}"))
    if kind == "points_for_discount":
        if d.get("cost_points") is not None:
            found.append(
                (
                    "cost_points",
                    "a points_for_discount reward costs what the customer spends on it: "
                    "set `points_step`, `min_points` and `max_points` instead",
                )
            )
        step = d.get("points_step")
        for bound in ("min_points", "max_points"):
            value = d.get(bound)
            if step and value is not None and value % step:
                found.append((bound, f"`{bound}` is a multiple of points_step ({step})"))
        low, high = d.get("min_points"), d.get("max_points")
        if low is not None and high is not None and low > high:
            found.append(("max_points", "max_points is at least min_points"))
    elif d.get("cost_points") is None:
        found.append(("cost_points", "a reward costs points (at least 1)"))
    for name in ("amount", "cap", "min_order", "step_amount", "value"):
        money = d.get(name)
        if money is not None and money["currency"] not in currencies:
            found.append(
                (
                    f"{name}.currency",
                    f"{money['currency']} is not a currency of this program "
                    f"({', '.join(sorted(currencies))})",
                )
            )
        if money is not None and name in ("amount", "step_amount") and money["amount"] <= 0:
            found.append((f"{name}.amount", f"`{name}` gives something off: more than 0"))
    money_currencies = {d[n]["currency"] for n in ("amount", "cap", "min_order", "step_amount") if d.get(n)}
    if len(money_currencies) > 1:
        found.append(("min_order.currency", "a reward's amounts are in one currency"))
    if d.get("min_tier") is not None and d["min_tier"] not in tiers:
        found.append(("min_tier", f"the program has no tier {d['min_tier']!r}"))
    starts, ends = d.get("starts_at"), d.get("ends_at")
    if starts is not None and ends is not None and ends <= starts:
        found.append(("ends_at", "ends_at is after starts_at"))
    return found


def reward_currency(d: Mapping[str, Any]) -> str | None:
    """The currency of the reward's money (None: it has none, e.g. a percentage without cap)."""
    for name in ("amount", "step_amount", "value", "cap", "min_order"):
        if d.get(name):
            return str(d[name]["currency"])
    return None


def localized(texts: Mapping[str, str] | str | None, locale: str | None) -> str | None:
    """A text given per locale ({"en": ..., "lv": ...}) in `locale`'s language, else in English, else in
    any (empty texts skipped); a plain string is the text in every locale."""
    if texts is None or isinstance(texts, str):
        return texts or None
    language = (locale or "en").split("-", 1)[0].lower()
    for key in (language, "en"):
        if texts.get(key):
            return str(texts[key])
    return next((str(text) for text in texts.values() if text), None)


def headline(d: Mapping[str, Any]) -> str:
    """The reward in words, as the ledger explains a redemption: 'EUR 5.00 off', '10% off'."""
    name = localized(d["name"], "en")
    return name or d["kind"].replace("_", " ")


# --- redeeming ---------------------------------------------------------------------------------------

Refusal = Literal["reward-inactive", "tier-too-low", "customer-in-debt", "out-of-stock", "limit-reached"]


@dataclass(frozen=True, slots=True)
class Standing:
    """What a redemption decision looks at, of the reward and the customer, at `now`."""

    status: str
    starts_at: datetime | None
    ends_at: datetime | None
    stock_left: int | None
    min_tier_rank: int | None  # the rank the reward asks for (None: any customer)
    min_tier_name: str | None
    customer_tier_rank: int | None  # the rank of the customer's tier (None: no tier)
    debt: int
    limit_count: int | None
    used_in_period: int  # this customer's redemptions of it in the limit's period, cancelled aside


def refusal(s: Standing, now: datetime) -> tuple[Refusal, str] | None:
    """Why the customer may not redeem the reward now (points aside), or None."""
    if (
        s.status != "active"
        or (s.starts_at is not None and now < s.starts_at)
        or (s.ends_at is not None and now >= s.ends_at)
    ):
        return "reward-inactive", "this reward cannot be redeemed now"
    if s.min_tier_rank is not None and (
        s.customer_tier_rank is None or s.customer_tier_rank < s.min_tier_rank
    ):
        return "tier-too-low", f"this reward is for {s.min_tier_name} and above"
    if s.debt > 0:
        return "customer-in-debt", f"the customer owes {s.debt} points from an earlier refund"
    if s.stock_left is not None and s.stock_left <= 0:
        return "out-of-stock", "this reward is out of stock"
    if s.limit_count is not None and s.used_in_period >= s.limit_count:
        return "limit-reached", f"at most {s.limit_count} of this reward per customer in its period"
    return None


# How the customer's view names a refusal (a storefront shows states, not problem types).
CATALOGUE_STATES: dict[Refusal, str] = {
    "reward-inactive": "reward_inactive",
    "tier-too-low": "tier_locked",
    "customer-in-debt": "customer_in_debt",
    "out-of-stock": "out_of_stock",
    "limit-reached": "limit_reached",
}


def catalogue_state(s: Standing, now: datetime, available: int, cost: int) -> tuple[str, str | None, int]:
    """What a customer sees of a reward: its state, a note in words and the points missing (0 unless
    `points_missing`)."""
    refused = refusal(s, now)
    if refused is not None:
        slug, detail = refused
        return CATALOGUE_STATES[slug], f"{s.min_tier_name} and above" if slug == "tier-too-low" else detail, 0
    if available < cost:
        missing = cost - available
        return "points_missing", f"{missing} more point{'s' if missing != 1 else ''}", missing
    return "available", None, 0


def period_start(period: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """Where the limit's calendar period began (in the program's zone), None for `ever`."""
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
    elif period == "week":  # ISO weeks: from Monday
        start = midnight - timedelta(days=local.weekday())
    elif period == "month":
        start = midnight.replace(day=1)
    elif period == "year":
        start = midnight.replace(month=1, day=1)
    else:
        return None
    # Re-attach the zone at the local midnight (a DST change during the period moves the offset).
    return start.replace(tzinfo=None).replace(tzinfo=zone)


class VariablePoints(ValueError):
    """A points_for_discount redemption off its step or bounds; `str` says why."""


def least_cost(d: Mapping[str, Any]) -> int:
    """The fewest points a redemption of the reward spends: its cost, or a variable reward's minimum (one
    step unless it says more)."""
    if d["kind"] == "points_for_discount":
        return int(d.get("min_points") or d["points_step"])
    return int(d["cost_points"])


def variable_cost(d: Mapping[str, Any], points: int | None) -> int:
    """The points a points_for_discount redemption spends: `points` as asked (a multiple of the step
    within the bounds). Raises VariablePoints."""
    step = int(d["points_step"])
    low = least_cost(d)
    high = d.get("max_points")
    if points is None:
        raise VariablePoints(f"say how many points to spend: a multiple of {step} from {low}")
    if points % step:
        raise VariablePoints(f"{points} points is not a multiple of this reward's step of {step}")
    if points < low:
        raise VariablePoints(f"at least {low} points for this reward")
    if high is not None and points > int(high):
        raise VariablePoints(f"at most {high} points for this reward")
    if points // step * int(d["step_amount"]["amount"]) > MAX_VALUE:
        raise VariablePoints(
            f"{points} points would be worth more than a code can be (at most {MAX_VALUE} minor units)"
        )
    return points


def most_points_now(d: Mapping[str, Any], available: int) -> int | None:
    """A points_for_discount reward: the most the customer can spend on it now (None: not even the minimum)."""
    step = int(d["points_step"])
    low = least_cost(d)
    high = d.get("max_points")
    top = available if high is None else min(available, int(high))
    top -= top % step
    return top if top >= low else None


def issue_value(d: Mapping[str, Any], points: int) -> tuple[int, str] | None:
    """The money value fixed at issue (amount, currency): amount_off, points_for_discount (points / step ×
    step amount) and custom (its declared value); None for the kinds valued at use."""
    kind = d["kind"]
    if kind == "amount_off":
        return int(d["amount"]["amount"]), str(d["amount"]["currency"])
    if kind == "points_for_discount":
        return points // int(d["points_step"]) * int(d["step_amount"]["amount"]), str(
            d["step_amount"]["currency"]
        )
    if kind == "custom":
        return int(d["value"]["amount"]), str(d["value"]["currency"])
    return None


def discount_snapshot(d: Mapping[str, Any], points: int) -> dict[str, Any]:
    """What the code gives, frozen at issue (a later version of the reward does not change a code)."""
    snapshot: dict[str, Any] = {"kind": d["kind"], "name": dict(d["name"])}
    for name in ("percent", "cap", "min_order", "sku", "max_share_percent"):
        if d.get(name) is not None:
            snapshot[name] = d[name]
    if d["kind"] == "free_product":
        snapshot["quantity"] = d.get("quantity", 1)
    value = issue_value(d, points)
    if value is not None and d["kind"] in ("amount_off", "points_for_discount"):
        snapshot["amount"] = {"amount": value[0], "currency": value[1]}
    if d["kind"] == "custom":
        snapshot["value"] = d["value"]
    return snapshot


def redeemed_explanation(d: Mapping[str, Any], points: int) -> str:
    name = headline(d)
    if points == 0:
        return f"Given '{name}' at no cost"
    return f"Redeemed '{name}' for {points} point{'s' if points != 1 else ''}"


# --- codes at checkout -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    quantity: int
    unit_amount: int


@dataclass(frozen=True, slots=True)
class CartFacts:
    customer_external_id: str
    currency: str
    lines: Sequence[CartLine]
    shipping_amount: int

    @property
    def subtotal(self) -> int:
        return sum(line.quantity * line.unit_amount for line in self.lines)


@dataclass(frozen=True, slots=True)
class Applied:
    amount: int  # money off this cart, in its currency
    free_shipping: bool = False
    free_sku: str | None = None
    free_quantity: int = 0


CodeRefusal = Literal["code-used", "code-expired", "code-cancelled", "code-not-applicable"]


@dataclass(frozen=True, slots=True)
class NotApplied:
    reason: CodeRefusal
    detail: str


def code_state(status: str, expires_at: datetime | None, now: datetime) -> NotApplied | None:
    """Whether the code can still be used at all (before looking at the cart)."""
    if status == "used":
        return NotApplied("code-used", "this code has been used")
    if status == "cancelled":
        return NotApplied("code-cancelled", "this code was cancelled")
    if status == "expired" or (expires_at is not None and expires_at <= now):
        return NotApplied("code-expired", "this code has expired")
    return None


def check(
    status: str,
    expires_at: datetime | None,
    discount: Mapping[str, Any],
    owner: str,
    cart: CartFacts,
    now: datetime,
) -> Applied | NotApplied:
    """Whether a code can be used at all, then what it takes off this cart (`apply`)."""
    return code_state(status, expires_at, now) or apply(discount, owner, cart)


def apply(discount: Mapping[str, Any], owner_external_id: str, cart: CartFacts) -> Applied | NotApplied:
    """What an issued code takes off this cart, or why it does not apply (another customer's code, other
    currency, minimum not met, the free product not in the cart)."""
    if cart.customer_external_id != owner_external_id:
        return NotApplied("code-not-applicable", "this code belongs to another customer")
    kind = discount["kind"]
    currency = _currency_of(discount)
    if currency is not None and currency != cart.currency:
        return NotApplied(
            "code-not-applicable", f"this code is for orders in {currency}, not {cart.currency}"
        )
    subtotal = cart.subtotal
    minimum = discount.get("min_order")
    if minimum is not None and subtotal < minimum["amount"]:
        return NotApplied(
            "code-not-applicable",
            f"this code needs an order of at least {format_money(minimum['amount'], minimum['currency'])}",
        )
    if kind == "amount_off":
        return Applied(min(int(discount["amount"]["amount"]), subtotal))
    if kind == "points_for_discount":
        amount = min(int(discount["amount"]["amount"]), subtotal)
        share = discount.get("max_share_percent")
        if share is not None:
            amount = min(amount, subtotal * int(share) // 100)
        return Applied(amount)
    if kind == "percent_off":
        amount = subtotal * int(discount["percent"]) // 100
        cap = discount.get("cap")
        return Applied(amount if cap is None else min(amount, int(cap["amount"])))
    if kind == "free_shipping":
        return Applied(cart.shipping_amount, free_shipping=True)
    if kind == "free_product":
        sku, quantity = str(discount["sku"]), int(discount.get("quantity", 1))
        line = next((line for line in cart.lines if line.sku == sku), None)
        if line is None:
            return NotApplied("code-not-applicable", f"this code gives {sku} free: it is not in the order")
        free = min(quantity, line.quantity)
        return Applied(free * line.unit_amount, free_sku=sku, free_quantity=free)
    return Applied(0)  # custom: the shop fulfils it; nothing off the order


def _currency_of(discount: Mapping[str, Any]) -> str | None:
    for name in ("amount", "cap", "min_order"):
        if discount.get(name):
            return str(discount[name]["currency"])
    return None
