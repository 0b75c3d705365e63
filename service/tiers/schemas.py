from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import Currency, Key

TierKey = Annotated[Key, Meta(description="the tier's stable id in rule audiences and conditions (`gold`)")]
Metric = Literal["points", "spend", "orders"]
WindowKind = Literal["rolling_months", "calendar_year", "lifetime"]


class MoneyThreshold(Struct, kw_only=True, forbid_unknown_fields=True):
    amount: Annotated[int, Meta(ge=1, le=10**15)]
    currency: Currency


# An int for points or orders, money for spend: a threshold of the other kind is refused (422).
Threshold = Annotated[int, Meta(ge=1, le=10**15)] | MoneyThreshold


class QualificationIn(Struct, kw_only=True, forbid_unknown_fields=True):
    metric: Metric
    threshold: Threshold
    window: WindowKind = "rolling_months"
    months: Annotated[int, Meta(ge=1, le=120)] | None = None  # rolling_months only; default 12


class BenefitsIn(Struct, kw_only=True, forbid_unknown_fields=True):
    earn_multiplier: Annotated[
        Decimal, Meta(description="× every point an order earns; 1 = no bonus; at most 10")
    ] = Decimal(1)
    free_shipping: bool = False
    perks: Annotated[list[Annotated[str, Meta(min_length=1, max_length=300)]], Meta(max_length=20)] = []


class RetentionIn(Struct, kw_only=True, forbid_unknown_fields=True):
    keep_until_end_of_next_window: bool = True
    grace_days: Annotated[int, Meta(ge=0, le=365)] = 0
    warning_days: Annotated[int, Meta(ge=1, le=365, description="the downgrade warning comes this early")] = (
        30
    )


class TierDefinition(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    rank: Annotated[int, Meta(ge=0, le=1000, description="higher is better; unique in the program")]
    qualification: QualificationIn
    benefits: BenefitsIn = msgspec.field(default_factory=BenefitsIn)
    retention: RetentionIn = msgspec.field(default_factory=RetentionIn)
    downgrade: Literal["one_level", "qualified"] = "one_level"


class TierCreate(TierDefinition, kw_only=True, forbid_unknown_fields=True):
    key: TierKey


class TierPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields left out stay as they are; a nested object given replaces that object."""

    name: Annotated[str, Meta(min_length=1, max_length=100)] | UnsetType = UNSET
    rank: Annotated[int, Meta(ge=0, le=1000)] | UnsetType = UNSET
    qualification: QualificationIn | UnsetType = UNSET
    benefits: BenefitsIn | UnsetType = UNSET
    retention: RetentionIn | UnsetType = UNSET
    downgrade: Literal["one_level", "qualified"] | UnsetType = UNSET


class TierOut(TierDefinition, kw_only=True):
    key: str
    id: UUID
    version: int
    customers: int  # holding it now
    created_at: datetime
    updated_at: datetime


class TierList(Struct, kw_only=True):
    items: list[TierOut]  # by rank, lowest first


class TierDeleted(Struct, kw_only=True):
    key: str
    customers_moved: int
    moved_to: str | None


class ManualTierIn(Struct, kw_only=True, forbid_unknown_fields=True):
    tier: TierKey | None  # null: no tier
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    until: Annotated[datetime, Meta(tz=True)] | None = None  # the end of the gesture; null: for good
    actor: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class TierRef(Struct, kw_only=True):
    key: str
    name: str
    rank: int


class TierChangeOut(Struct, kw_only=True):
    id: int
    change: str  # upgrade | downgrade | manual | warning | warning_withdrawn | moved
    from_tier: TierRef | None
    to_tier: TierRef | None
    cause: str  # order | event | reevaluation | manual | tier_deleted
    reason: str
    actor: str | None
    created_at: datetime


class TierHistory(Struct, kw_only=True):
    items: list[TierChangeOut]  # newest first
    next_cursor: str | None


class MetricAmount(Struct, kw_only=True):
    """An amount of a tier's metric: points, orders, or minor units of `currency` (spend)."""

    metric: Metric
    window: WindowKind
    months: int | None
    current: int
    needed: int
    remaining: int
    currency: str | None  # spend only


class TierProgress(Struct, kw_only=True):
    tier: TierRef
    amounts: MetricAmount
    period_ends_at: datetime | None  # calendar windows: when this year's count closes
    text: str  # "spend EUR 40.00 more to reach Gold"


class AtRisk(Struct, kw_only=True):
    downgrade_at: datetime
    to_tier: TierRef | None
    warned_at: datetime | None
    keep: MetricAmount  # what still counts at the downgrade date, and what would keep the tier
    text: str  # "spend EUR 40.00 more by 31 Dec 2026 to keep Gold"


class TierBenefits(Struct, kw_only=True):
    earn_multiplier: Decimal
    free_shipping: bool
    perks: list[str]


class CustomerTier(Struct, kw_only=True):
    """The customer's standing: the tier held (if any), progress up, and any risk of going down."""

    tier: TierRef | None
    since: datetime | None
    source: str | None  # earned | manual
    manual_until: datetime | None
    benefits: TierBenefits | None
    qualification: MetricAmount | None  # the held tier's metric now
    period_ends_at: datetime | None
    next_tier: TierProgress | None
    at_risk: AtRisk | None
