"""The gift rules API: what triggers a surprise, what it gives, who may get it, what it may cost, and what
came of it (the gifts an order got, simulations, the measured effect)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from service.rewards.schemas import Locale, Money

GiftRuleStatus = Literal["draft", "active", "paused", "archived"]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Share = Annotated[Decimal, Meta(description='a decimal string from 0 to 1, e.g. "0.1"')]
Days = Annotated[int, Meta(ge=0, le=3650)]
TierKey = Annotated[str, Meta(min_length=1, max_length=64)]
Announce = Literal["message", "parcel"]
BudgetPeriod = Literal["day", "week", "month", "quarter", "year", "total"]


# --- triggers: one tagged struct each ---------------------------------------------------------------------


class NthOrder(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="nth_order"):
    """The customer's `n`th order (the 3rd); with `repeat`, every `n`th (the 10th, 20th, ...)."""

    n: Annotated[int, Meta(ge=1, le=100_000)]
    repeat: bool = False


class OrderOver(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="order_over"):
    """An order whose total is at least `amount` (orders in that currency)."""

    amount: Money


class FirstOrderAfterUpgrade(
    Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="first_order_after_upgrade"
):
    """The first order after the customer reached a higher tier."""


class ReturningCustomer(
    Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="returning_customer"
):
    """A customer's first order after at least `days_away` days without one."""

    days_away: Annotated[int, Meta(ge=1, le=3650)]


class Birthday(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="birthday"):
    """The customer's birthday (the program's date), decided by the daily sweep: announced by message."""


class FirstOrderAnniversary(
    Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="first_order_anniversary"
):
    """A year (or more) to the day since the first order, by the daily sweep: announced by message."""


class AfterRefund(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="refund"):
    """A refund recorded for the customer (a gesture after something went wrong): announced by message."""


class AfterComplaint(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="complaint"):
    """A `complaint` event recorded for the customer: announced by message."""


class Detractor(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="detractor"):
    """A detractor's feedback (NPS 0-6, CSAT 1-2), fired by the feedback feature: announced by message."""


class RandomShare(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="random_share"):
    """A share of all orders (0.02: about one in fifty), chosen by the program's keyed dice."""

    share: Share


Trigger = (
    NthOrder
    | OrderOver
    | FirstOrderAfterUpgrade
    | ReturningCustomer
    | Birthday
    | FirstOrderAnniversary
    | AfterRefund
    | AfterComplaint
    | Detractor
    | RandomShare
)
TRIGGER_KINDS: tuple[str, ...] = tuple(t.__struct_config__.tag for t in Trigger.__args__)  # type: ignore[attr-defined]


# --- gifts ----------------------------------------------------------------------------------------------


class PointsGift(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="points"):
    """Bonus points through the ledger, explained; cost: the points at the program's point value."""

    points: Annotated[int, Meta(ge=1, le=1_000_000)]


class RewardGift(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="reward"):
    """A catalogue reward as a code at no cost. Cost: the reward's value when it has a fixed one in the
    base currency, else `cost` (a percentage or a product is worth what it is worth at use)."""

    reward_id: UUID
    cost: Money | None = None


class FreeShippingGift(
    Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="free_shipping"
):
    """Free shipping on the next order: a code of a `free_shipping` reward; `cost`: what shipping costs you."""

    reward_id: UUID
    cost: Money


class ItemGift(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="item"):
    """A physical item for the warehouse: in this order's parcel, or (a gift without an order) on the
    customer's next order, with the pick note."""

    sku: Annotated[str, Meta(min_length=1, max_length=64)]
    name: Name
    pick_note: Annotated[str, Meta(max_length=500)] = ""
    cost: Money


class NoteGift(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="note"):
    """A personal note in the customer's language with their name and what they bought: the shipped text
    of each locale, or yours (Jinja: `customer.first_name`, `item.name`, `order.number`, `program.name`,
    `vocative(...)`)."""

    templates: Annotated[
        dict[Locale, Annotated[str, Meta(min_length=1, max_length=2000)]], Meta(max_length=6)
    ] = {}


Gift = PointsGift | RewardGift | FreeShippingGift | ItemGift | NoteGift


# --- the rule -------------------------------------------------------------------------------------------


class EligibilityIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """Who may get it. A gift announced by message needs the customer's marketing consent."""

    tiers: Annotated[list[TierKey], Meta(max_length=50)] = []  # empty: every tier and none
    min_orders: Annotated[int, Meta(ge=0, le=100_000)] = 0  # orders before this one
    no_refund_within_days: Days | None = None  # none within N days after one of their refunds


class BudgetIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """At most `amount` of gifts' cost per calendar `period` (the program's time zone; `total`: ever)."""

    amount: Money
    period: BudgetPeriod = "month"


class GiftRuleDefinition(Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything that decides a gift: a change makes a new version once the rule has been active (and
    a new hold-out: membership is per rule version)."""

    name: Name
    trigger: Trigger
    gifts: Annotated[list[Gift], Meta(min_length=1, max_length=5)]
    eligibility: EligibilityIn = msgspec.field(default_factory=EligibilityIn)
    probability: Share = Decimal(1)
    holdout: Share = Decimal("0.1")
    budget: BudgetIn | None = None
    announce: Announce = "parcel"
    priority: Annotated[int, Meta(ge=-1000, le=1000, description="higher is decided first")] = 0
    description: Annotated[str, Meta(max_length=2000)] = ""


class GiftRuleCreate(GiftRuleDefinition, kw_only=True, forbid_unknown_fields=True):
    status: Literal["draft", "active"] = "draft"


class GiftRulePatch(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    trigger: Trigger | UnsetType = UNSET
    gifts: Annotated[list[Gift], Meta(min_length=1, max_length=5)] | UnsetType = UNSET
    eligibility: EligibilityIn | UnsetType = UNSET
    probability: Share | UnsetType = UNSET
    holdout: Share | UnsetType = UNSET
    budget: BudgetIn | UnsetType | None = UNSET
    announce: Announce | UnsetType = UNSET
    priority: Annotated[int, Meta(ge=-1000, le=1000)] | UnsetType = UNSET
    description: Annotated[str, Meta(max_length=2000)] | UnsetType = UNSET
    status: GiftRuleStatus | UnsetType = UNSET


class BudgetUse(Struct, kw_only=True):
    period: str  # the current period's key: 2026-12, 2026-W49, 2026-Q4, total
    amount: Money
    used: Money
    left: Money


class GiftRuleProblems(Struct, kw_only=True):
    """Failures at run time (the order went through without that gift)."""

    count: int
    last_error: str | None
    last_at: datetime | None


class GiftRuleOut(GiftRuleDefinition, kw_only=True):
    id: UUID
    status: GiftRuleStatus
    version: int
    budget_use: BudgetUse | None
    problems: GiftRuleProblems
    created_at: datetime
    updated_at: datetime


class GiftRuleList(Struct, kw_only=True):
    items: list[GiftRuleOut]


class GiftRuleVersionOut(Struct, kw_only=True):
    version: int
    definition: GiftRuleDefinition
    created_at: datetime


class GiftRuleVersionList(Struct, kw_only=True):
    items: list[GiftRuleVersionOut]


class GiftKeyOut(Struct, kw_only=True):
    """The program's gift key: the dice are HMAC-SHA256(key, what is decided) read as a number in [0, 1)."""

    key: str
    how: str


# --- what an order (or a sweep) got ---------------------------------------------------------------------


class GivenOut(Struct, kw_only=True, omit_defaults=True):
    """One thing given: points; a code (reward, free_shipping); an item to pick; a note to put in."""

    kind: str
    points: int | None = None
    code: str | None = None
    redemption_id: UUID | None = None
    reward_name: dict[str, str] | None = None
    expires_at: datetime | None = None
    sku: str | None = None
    name: str | None = None
    pick_note: str | None = None
    text: str | None = None


class SurpriseOut(Struct, kw_only=True):
    """A gift for the shop to act on: put the items and the note into the parcel (`in_parcel`), or ship
    what a birthday gave (`from_earlier`: decided before this order)."""

    gift_id: UUID
    rule_id: UUID
    rule_version: int
    rule_name: str
    trigger: str
    announce: Announce
    given: list[GivenOut]
    pick_instructions: str | None  # the items and their notes, as a warehouse reads them
    from_earlier: bool = False


class SimulationIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """Play the rule (as it stands, active or not) over what happened in [from, to); writes nothing."""

    from_: Annotated[datetime, Meta(tz=True)] = msgspec.field(name="from")
    to: Annotated[datetime, Meta(tz=True)]


class SimulationOut(Struct, kw_only=True):
    rule_id: UUID
    rule_version: int
    from_: datetime = msgspec.field(name="from")
    to: datetime
    occasions: int  # orders, refunds, events and dates the trigger looked at
    triggered: int
    gifts: int
    held_out: int
    cost: Money
    skipped: dict[str, int]  # why a triggered occasion gave nothing: ineligible, chance, cooldown, budget
    by_period: list[dict[str, Any]]  # per budget period: gifts, cost


class GroupRate(Struct, kw_only=True):
    customers: int  # whose window has passed
    repeated: int
    rate: float | None


class RepeatWindow(Struct, kw_only=True):
    days: int
    recipients: GroupRate
    holdout: GroupRate
    difference: float | None  # recipients' rate minus the hold-out's
    ci95: list[float] | None  # the difference's 95 % confidence interval (Newcombe's hybrid score method)


class GiftStatsOut(Struct, kw_only=True):
    rule_id: UUID
    version: int | None  # None: every version
    granted: int
    held_out: int
    cost: Money
    cost_per_gift: Money | None
    budget_use: BudgetUse | None
    repeat: list[RepeatWindow]


ItemStatus = Literal["in_parcel", "waiting", "picked"]


class GiftOut(Struct, kw_only=True):
    """A decision that gave a surprise, or kept the customer in the hold-out (`outcome`)."""

    id: UUID
    rule_id: UUID
    rule_version: int
    rule_name: str
    customer_external_id: str
    trigger: str
    occasion: str
    outcome: Literal["granted", "held_out", "recovery"]  # recovery: given by an agent
    order_external_id: str | None  # the order it was decided on
    cost: Money
    given: list[GivenOut]
    item_status: ItemStatus | None  # a physical item: in that order's parcel, waiting for the next, picked
    picked_order_external_id: str | None  # the order whose parcel took a waiting item
    pick_instructions: str | None
    decided_at: datetime
    created_at: datetime


class GiftList(Struct, kw_only=True):
    items: list[GiftOut]
    next_cursor: str | None = None
