from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import Currency, EventType, ExternalId, Happened
from service.customers.schemas import CustomerProfile
from service.ledger.schemas import LedgerEntryOut

RuleStatus = Literal["draft", "active", "paused", "archived"]
Scope = Literal["order", "lines"]
DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CapPoints = Annotated[int, Meta(ge=1, le=1_000_000_000)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Priority = Annotated[int, Meta(ge=-1000, le=1000, description="higher plays first")]


class Hours(Struct, kw_only=True, forbid_unknown_fields=True):
    """Local hours [start, end); start 22, end 6 runs past midnight."""

    start: Annotated[int, Meta(ge=0, le=23)]
    end: Annotated[int, Meta(ge=1, le=24)]


class WindowIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """When the rule applies. A time without an offset is read in the program's time zone."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None
    days_of_week: Annotated[list[DayName], Meta(max_length=7)] = []
    hours: Hours | None = None


class AudienceIn(Struct, kw_only=True, forbid_unknown_fields=True):
    tiers: Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=50)] = []
    customers: Literal["all", "new", "returning"] = "all"


class BaseRateEffect(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="base_rate"):
    """The program's earn rate (points per unit of each currency): what the default rule gives."""

    scope: Scope = "lines"


class RateEffect(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="rate"):
    rates: dict[Currency, Decimal]  # points per major unit, e.g. {"EUR": "3"}
    scope: Scope = "lines"


class MultiplierEffect(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="multiplier"):
    multiplier: Decimal  # × the program's base rate; more than 0, at most 100
    scope: Scope = "lines"


class FixedEffect(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="fixed"):
    points: Annotated[int, Meta(ge=1, le=1_000_000)]
    scope: Scope = "order"


class PercentBonusEffect(
    Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="percent_bonus"
):
    percent: Decimal  # of the points the other rules gave the matching lines; more than 0, at most 1000
    scope: Scope = "lines"


Effect = BaseRateEffect | RateEffect | MultiplierEffect | FixedEffect | PercentBonusEffect


class CapsIn(Struct, kw_only=True, forbid_unknown_fields=True):
    per_order: CapPoints | None = None
    per_customer_day: CapPoints | None = None
    per_customer_month: CapPoints | None = None
    per_customer_year: CapPoints | None = None
    per_customer_lifetime: CapPoints | None = None


class RuleDefinition(Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything that decides what a rule awards: a change makes a new version once the rule has run."""

    name: Name
    effect: Effect
    trigger: Annotated[str, Meta(min_length=1, max_length=64, description="`order` or an event type")] = (
        "order"
    )
    priority: Priority = 100
    stacking: Literal["stack", "exclusive"] = "stack"
    window: WindowIn = msgspec.field(default_factory=WindowIn)
    audience: AudienceIn = msgspec.field(default_factory=AudienceIn)
    conditions: dict[str, Any] | None = None
    definitions: Annotated[
        dict[Annotated[str, Meta(min_length=1, max_length=64)], Any], Meta(max_length=50)
    ] = {}
    caps: CapsIn = msgspec.field(default_factory=CapsIn)
    budget_points: CapPoints | None = None
    description: Annotated[str, Meta(max_length=2000)] = ""


class RuleCreate(RuleDefinition, kw_only=True, forbid_unknown_fields=True):
    status: Literal["draft", "active"] = "draft"


class RulePatch(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    effect: Effect | UnsetType = UNSET
    trigger: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    stacking: Literal["stack", "exclusive"] | UnsetType = UNSET
    window: WindowIn | UnsetType = UNSET
    audience: AudienceIn | UnsetType = UNSET
    conditions: dict[str, Any] | UnsetType | None = UNSET
    definitions: dict[str, Any] | UnsetType = UNSET
    caps: CapsIn | UnsetType = UNSET
    budget_points: CapPoints | UnsetType | None = UNSET
    description: Annotated[str, Meta(max_length=2000)] | UnsetType = UNSET
    status: RuleStatus | UnsetType = UNSET


class BudgetOut(Struct, kw_only=True):
    points: int
    spent: int
    remaining: int
    exhausted_at: datetime | None


class RuleProblems(Struct, kw_only=True):
    """Evaluation failures at run time: the order still earned by the other rules."""

    count: int
    last_error: str | None
    last_at: datetime | None


class RuleOut(RuleDefinition, kw_only=True):
    id: UUID
    status: RuleStatus
    version: int
    is_default: bool
    budget: BudgetOut | None
    problems: RuleProblems
    created_at: datetime
    updated_at: datetime


class RuleList(Struct, kw_only=True):
    items: list[RuleOut]
    next_cursor: str | None = None


class RuleVersionOut(Struct, kw_only=True):
    version: int
    definition: RuleDefinition
    created_at: datetime


class RuleVersionList(Struct, kw_only=True):
    items: list[RuleVersionOut]


class AwardOut(Struct, kw_only=True):
    rule_id: UUID
    rule_version: int
    rule_name: str
    points: int
    explanation: str


class EventCustomerIn(CustomerProfile, kw_only=True, forbid_unknown_fields=True):
    external_id: ExternalId


class EventIn(Struct, kw_only=True, forbid_unknown_fields=True):
    type: EventType
    customer: EventCustomerIn  # external_id, plus any profile fields to update
    properties: Annotated[dict[Annotated[str, Meta(max_length=64)], Any], Meta(max_length=50)] = {}
    occurred_at: Happened | None = None  # default: now


class EventOut(Struct, kw_only=True):
    id: UUID
    type: str
    customer_external_id: str
    occurred_at: datetime
    result: Literal["awarded", "no rule matched"]
    points: int
    explanation: str
    awards: list[AwardOut]
    entries: list[LedgerEntryOut]
    case_id: UUID | None = None  # the case a complaint opened (GET /v1/cases/{case_id})


class SimulationIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """Replay the orders placed in [from, to) with this rule added to the active rules (or replacing them)."""

    from_: Annotated[datetime, Meta(tz=True)] = msgspec.field(name="from")
    to: Annotated[datetime, Meta(tz=True)]
    mode: Literal["add", "replace_all"] = "add"
    top: Annotated[int, Meta(ge=1, le=100)] = 10


class AffectedCustomer(Struct, kw_only=True):
    customer_external_id: str
    orders: int
    extra_points: int


class SimulationOut(Struct, kw_only=True):
    rule_id: UUID
    rule_version: int
    mode: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    orders_replayed: int
    orders_evaluated: int  # in full; the others could not earn differently with the rule
    orders_affected: int
    customers_affected: int
    extra_points: int  # with the rule minus without it (negative when it takes points away)
    extra_cost: dict[
        str, Any
    ]  # {"amount": minor units, "currency": base currency} at the program's point value
    top_customers: list[AffectedCustomer]
    problems: list[str]
    elapsed_ms: int
