"""Surprise gifts without I/O: whether an occasion triggers a rule, who may get it, the keyed dice, the
hold-out, the cooldown, budget periods, costs and the effect's confidence interval.

The dice are HMAC-SHA256 under the program's gift key over what is decided (the rule, its version and
the order, or the customer for the hold-out), read as an integer in [0, 2^64): reproducible by anyone
with the key, never the clock or a random generator. A share p passes when the roll is below p × 2^64,
exactly (decimal shares, integer comparison).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

ORDER_TRIGGERS = frozenset(
    {"nth_order", "order_over", "first_order_after_upgrade", "returning_customer", "random_share"}
)
# Triggers without an order of their own: no parcel to put the surprise in, so it is announced by message
# (and an item waits for the customer's next order).
SWEEP_TRIGGERS = frozenset({"birthday", "first_order_anniversary"})
EVENT_TRIGGERS = frozenset({"refund", "complaint", "detractor"})
ROLL_SPACE = 1 << 64

Outcome = Literal["granted", "held_out", "recovery"]  # recovery: given by an agent, no dice


@dataclass(frozen=True, slots=True)
class Rule:
    """A gift rule version as the decisions use it (compiled from its stored definition)."""

    id: UUID
    version: int
    name: str
    priority: int
    trigger: str
    n: int = 0  # nth_order
    repeat: bool = False  # nth_order
    min_total: tuple[int, str] | None = None  # order_over: (amount, currency)
    days_away: int = 0  # returning_customer
    share: Decimal = Decimal(1)  # random_share
    tiers: frozenset[str] = frozenset()
    min_orders: int = 0
    no_refund_within_days: int | None = None
    probability: Decimal = Decimal(1)
    holdout: Decimal = Decimal("0.1")
    budget: tuple[int, str] | None = None  # (amount in base minor units, period)
    announce: str = "parcel"
    cost: int = 0  # what one gift costs, in base minor units
    created_at: datetime | None = None

    @property
    def by_message(self) -> bool:
        return self.announce == "message" or self.trigger not in ORDER_TRIGGERS


@dataclass(frozen=True, slots=True)
class Occasion:
    """Something that may trigger a gift, with the customer as they were before it.

    `key` names the occasion for the dice and the record (an order: `order:<its external id>`; a
    birthday: `birthday:<year>`; a refund: `refund:<id>`). `order_count` counts the customer's orders
    before it; `last_order_at` is their latest one before it."""

    trigger: str  # "order", or one of SWEEP_TRIGGERS / EVENT_TRIGGERS
    key: str
    at: datetime
    order_count: int = 0
    last_order_at: datetime | None = None
    total: tuple[int, str] | None = None  # an order's (total amount, currency)
    tier: str | None = None
    upgraded_at: datetime | None = None  # the customer's latest tier upgrade
    marketing_consent: bool = False
    label: str | None = (
        None  # the occasion in words, for the ledger and the event ("refund r-1 of order 1042")
    )


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome | None  # None: nothing (see `reason`)
    reason: str  # why nothing: not triggered, ineligible: ..., chance, cooldown; or the outcome
    occasion: str | None = None  # the record's key: one gift per rule, customer and occasion


# --- the dice ------------------------------------------------------------------------------------------


def roll(key: bytes, *parts: object) -> int:
    """A uniform integer in [0, 2^64) from the key and what is decided."""
    message = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")


def passes(rolled: int, share: Decimal) -> bool:
    """Whether a roll falls in the first `share` of the space: share 0 never, share 1 always."""
    return rolled < math.floor(share * ROLL_SPACE)


def in_holdout(key: bytes, rule: Rule, customer: str) -> bool:
    """The customer's group for this rule version: the same every time they are eligible, whatever the
    order (a person is never a recipient on Monday and a control on Tuesday)."""
    return passes(roll(key, "holdout", rule.id, rule.version, customer), rule.holdout)


def by_chance(key: bytes, rule: Rule, customer: str, occasion_key: str) -> bool:
    """The rule's probability for this customer's occasion: the same order always gets the same answer,
    and each customer's birthday of a year is a roll of its own (their occasions share a key)."""
    return passes(roll(key, "chance", rule.id, rule.version, customer, occasion_key), rule.probability)


# --- triggers and eligibility -------------------------------------------------------------------------


def triggered(key: bytes, rule: Rule, occasion: Occasion) -> str | None:
    """The record key of the occasion if it triggers the rule, else None. Keys that name what triggered
    (the 3rd order, the upgrade, the return) rather than the order keep one gift per such moment even
    when two orders of a customer are decided at once."""
    kind = rule.trigger
    if kind not in ORDER_TRIGGERS:
        return occasion.key if occasion.trigger == kind else None
    if occasion.trigger != "order":
        return None
    if kind == "nth_order":
        count = occasion.order_count + 1
        hit = count % rule.n == 0 if rule.repeat else count == rule.n
        return f"orders:{count}" if hit else None
    if kind == "order_over":
        assert rule.min_total is not None
        total = occasion.total
        ok = total is not None and total[1] == rule.min_total[1] and total[0] >= rule.min_total[0]
        return occasion.key if ok else None
    if kind == "first_order_after_upgrade":
        up, last = occasion.upgraded_at, occasion.last_order_at
        # The order that caused the upgrade is stamped at its instant (<=): the next order is the first after.
        ok = up is not None and up <= occasion.at and (last is None or last <= up)
        return f"upgrade:{up.isoformat()}" if ok and up is not None else None
    if kind == "returning_customer":
        last = occasion.last_order_at
        ok = last is not None and occasion.at - last >= timedelta(days=rule.days_away)
        return f"return:{last.isoformat()}" if ok and last is not None else None
    # random_share
    return (
        occasion.key if passes(roll(key, "share", rule.id, rule.version, occasion.key), rule.share) else None
    )


def ineligible(rule: Rule, occasion: Occasion, last_refund_at: datetime | None) -> str | None:
    """Why the customer may not get this gift (None: they may). `last_refund_at` is read only for rules
    that ask (`needs_refund_date`)."""
    if rule.tiers and occasion.tier not in rule.tiers:
        return "ineligible: tier"
    if occasion.order_count < rule.min_orders:
        return "ineligible: orders"
    if rule.by_message and not occasion.marketing_consent:
        return "ineligible: consent"  # announced by a marketing message the customer did not consent to
    days = rule.no_refund_within_days
    if (
        days is not None
        and last_refund_at is not None
        and occasion.at - last_refund_at < timedelta(days=days)
    ):
        return "ineligible: recent refund"
    return None


def needs_refund_date(rule: Rule) -> bool:
    return rule.no_refund_within_days is not None


def cooling_down(last_gift_at: datetime | None, at: datetime, cooldown_days: int) -> bool:
    """Whether another surprise (or hold-out) of any rule is within the cooldown of `at`."""
    if last_gift_at is None or cooldown_days <= 0:
        return False
    return abs(at - last_gift_at) < timedelta(days=cooldown_days)


def decide(
    key: bytes,
    rule: Rule,
    occasion: Occasion,
    customer: str,
    *,
    last_gift_at: datetime | None,
    cooldown_days: int,
    last_refund_at: datetime | None = None,
    last_given_at: datetime | None = None,
    now: datetime | None = None,
) -> Decision:
    """Everything but the budget (the caller spends it under a lock), in order: the trigger, eligibility,
    the rule's probability, the cooldown, then the hold-out group of an eligible customer.

    The cooldown holds around the occasion (`last_gift_at`: the decision nearest to it) and around `now`
    (`last_given_at`: the latest given), so an order recorded late, placed long ago, does not bring a
    second surprise beside one given today."""
    occasion_key = triggered(key, rule, occasion)
    if occasion_key is None:
        return Decision(None, "not triggered")
    refused = ineligible(rule, occasion, last_refund_at)
    if refused is not None:
        return Decision(None, refused, occasion_key)
    if not by_chance(key, rule, customer, occasion.key):
        return Decision(None, "chance", occasion_key)
    recently = now is not None and cooling_down(last_given_at, now, cooldown_days)
    if recently or cooling_down(last_gift_at, occasion.at, cooldown_days):
        return Decision(None, "cooldown", occasion_key)
    if in_holdout(key, rule, customer):
        return Decision("held_out", "held_out", occasion_key)
    return Decision("granted", "granted", occasion_key)


def may_trigger(rule: Rule, occasion: Occasion) -> bool:
    """A cheap first look (no dice): can this occasion trigger the rule at all?"""
    if rule.trigger in ORDER_TRIGGERS:
        return occasion.trigger == "order"
    return occasion.trigger == rule.trigger


def ordered(rules: Sequence[Rule]) -> list[Rule]:
    """Higher priority first; of one priority, the older rule."""
    return sorted(rules, key=lambda r: (-r.priority, r.created_at or datetime.min, str(r.id)))


# --- budgets and costs -------------------------------------------------------------------------------


def budget_period(period: str, at: datetime, zone: ZoneInfo) -> str:
    """The key of the calendar period `at` falls in (program time zone): 2026-12-01, 2026-W49, 2026-12,
    2026-Q4, 2026, total."""
    local: date = at.astimezone(zone).date()
    if period == "day":
        return local.isoformat()
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    if period == "quarter":
        return f"{local.year:04d}-Q{(local.month - 1) // 3 + 1}"
    if period == "year":
        return f"{local.year:04d}"
    return "total"


def points_cost(points: int, value_amount: int, value_points: int, *, up: bool = False) -> int:
    """Points at the program's point value (value_amount minor units per value_points), half up; `up`: to
    the next minor unit (a budget that pays for points never pays 0 for some, so small grants add up)."""
    rounding = ROUND_CEILING if up else ROUND_HALF_UP
    return int((Decimal(points) * value_amount / value_points).quantize(Decimal(1), rounding=rounding))


@dataclass(slots=True)
class Budget:
    """A rule's budget as spent so far per period (the simulation's, or a test's model of the table)."""

    limit: int
    used: dict[str, int] = field(default_factory=dict)

    def spend(self, period: str, cost: int, *, room: int = 0) -> bool:
        """Spend `cost` if it, and `room` more, fit (a hold-out spends nothing but needs a gift's room)."""
        spent = self.used.get(period, 0)
        if spent + cost + room > self.limit:
            return False
        self.used[period] = spent + cost
        return True


# --- the effect ------------------------------------------------------------------------------------------

Z95 = 1.959963984540054


def rate(repeated: int, customers: int) -> float | None:
    return repeated / customers if customers else None


def wilson(repeated: int, customers: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (sound at 0 and 1 and for small groups)."""
    p, n, z2 = repeated / customers, customers, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_ci(
    recipients: tuple[int, int], holdout: tuple[int, int]
) -> tuple[float | None, tuple[float, float] | None]:
    """(repeated, customers) of each group -> the difference of their rates (recipients minus hold-out)
    and its 95 % confidence interval by Newcombe's hybrid score method (from each group's Wilson
    interval: unlike the plain normal approximation it has width when a rate is 0 or 1, so a tiny group
    never looks certain). None without both groups."""
    (k1, n1), (k2, n2) = recipients, holdout
    if not n1 or not n2:
        return None, None
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return difference, (low, high)


def pick_instructions(items: Sequence[tuple[str, str, str]], note: str | None) -> str | None:
    """What the warehouse reads: one line per item (sku, name, pick note), then the note to put in."""
    lines = [f"Pick 1 × {sku} ({name})" + (f": {pick}" if pick else "") for sku, name, pick in items]
    if note:
        lines.append("Put the personal note in the parcel.")
    return "\n".join(lines) or None
