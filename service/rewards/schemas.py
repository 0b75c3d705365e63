"""The rewards API: the catalogue, a customer's view of it, redemptions and codes at checkout."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import Currency, Key, matching
from service.ledger.schemas import LedgerEntryOut
from service.orders.schemas import Amount

RewardKind = Literal[
    "amount_off", "percent_off", "free_shipping", "free_product", "points_for_discount", "custom"
]
RewardStatus = Literal["active", "paused", "archived"]
RedemptionStatus = Literal["issued", "used", "cancelled", "expired"]
RedemptionSource = Literal["points", "journey", "gift", "recovery", "referral"]
Locale = Literal["en", "tr", "cy", "lv", "ms", "ru"]
Points = Annotated[int, Meta(ge=1, le=1_000_000_000)]
Percent = Annotated[int, Meta(ge=1, le=100)]
ImageUrl = Annotated[
    str, matching(r"^https://[^\s]+$", "an https URL without spaces", min_length=9, max_length=2000)
]


class Money(Struct, kw_only=True, forbid_unknown_fields=True):
    amount: Amount
    currency: Currency


class LimitIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """At most `count` redemptions of this reward per customer per calendar `period` (the program's time
    zone; `ever`: in all); cancelled ones do not count."""

    count: Annotated[int, Meta(ge=1, le=10_000)]
    period: Literal["day", "week", "month", "year", "ever"]


KIND_RULE = (
    "`amount_off`: `amount` off (optional `min_order`); `percent_off`: `percent` (1-100) off the order's "
    "lines (optional `cap`, `min_order`); `free_shipping`: the order's shipping; `free_product`: `quantity` "
    "of `sku` free; `points_for_discount`: every `points_step` points give `step_amount` off, from "
    "`min_points` to `max_points` per redemption, at most `max_share_percent` of the order; `custom`: "
    "anything the shop fulfils (a gift, an event invitation), with a declared `value`."
)


class RewardIn(Struct, kw_only=True, forbid_unknown_fields=True):
    kind: Annotated[RewardKind, Meta(description=KIND_RULE)]
    # Per locale (the six shipped); a customer's own locale, else en, else the first given.
    name: Annotated[dict[Locale, Annotated[str, Meta(min_length=1, max_length=200)]], Meta(min_length=1)]
    description: dict[Locale, Annotated[str, Meta(max_length=2000)]] = {}
    cost_points: Points | None = None  # every kind but points_for_discount
    amount: Money | None = None  # amount_off
    percent: Percent | None = None  # percent_off
    cap: Money | None = None  # percent_off: at most this much off
    min_order: Money | None = None  # the order's lines must come to at least this
    sku: Annotated[str, Meta(min_length=1, max_length=128)] | None = None  # free_product
    quantity: Annotated[int, Meta(ge=1, le=1000)] = 1  # free_product
    points_step: Points | None = None  # points_for_discount
    step_amount: Money | None = None  # points_for_discount: what each step gives off
    min_points: Points | None = None  # points_for_discount (default: one step)
    max_points: Points | None = None  # points_for_discount (default: no maximum)
    max_share_percent: Percent | None = None  # points_for_discount: at most this share of the order
    value: Money | None = None  # custom: its declared value (liability)
    min_tier: Key | None = None  # this tier or a higher-ranked one
    stock: Annotated[int, Meta(ge=0, le=100_000_000)] | None = None  # codes left to issue; null unlimited
    limit: LimitIn | None = None
    code_valid_days: Annotated[int, Meta(ge=1, le=3650)] | None = 90  # null: codes never expire
    starts_at: Annotated[datetime, Meta(tz=True)] | None = None
    ends_at: Annotated[datetime, Meta(tz=True)] | None = None
    image_url: ImageUrl | None = None
    status: Literal["active", "paused"] = "active"


class RewardPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    status: RewardStatus | UnsetType = UNSET
    stock: Annotated[int, Meta(ge=0, le=100000000)] | UnsetType | None = UNSET


class RewardOut(Struct, kw_only=True):
    id: UUID
    version: int
    status: RewardStatus
    kind: RewardKind
    name: dict[str, str]
    description: dict[str, str]
    cost_points: int | None
    amount: Money | None
    percent: int | None
    cap: Money | None
    min_order: Money | None
    sku: str | None
    quantity: int
    points_step: int | None
    step_amount: Money | None
    min_points: int | None
    max_points: int | None
    max_share_percent: int | None
    value: Money | None
    min_tier: str | None
    stock: int | None  # codes left to issue; null unlimited
    limit: LimitIn | None
    code_valid_days: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    image_url: str | None
    issued: int  # codes issued (cancelled ones aside)
    created_at: datetime
    updated_at: datetime


class RewardList(Struct, kw_only=True):
    items: list[RewardOut]


class RewardVersionOut(Struct, kw_only=True):
    version: int
    definition: dict[str, object]
    created_at: datetime


class RewardVersionList(Struct, kw_only=True):
    items: list[RewardVersionOut]


CatalogueState = Literal[
    "available", "points_missing", "tier_locked", "out_of_stock", "limit_reached", "customer_in_debt"
]


class CatalogueItem(Struct, kw_only=True):
    """A reward as this customer sees it: can they have it now, and if not, why (in words too)."""

    reward_id: UUID
    kind: RewardKind
    name: str
    description: str | None
    image_url: str | None
    cost_points: int | None  # points_for_discount: `min_points`
    state: CatalogueState
    note: str | None  # "250 more points", "Gold and above", ...
    points_missing: int  # 0 unless state is points_missing
    min_tier: str | None
    # points_for_discount: the most this customer could spend on it now (a multiple of the step).
    max_points_now: int | None = None
    amount: Money | None = None
    percent: int | None = None
    value: Money | None = None


class CustomerCatalogue(Struct, kw_only=True):
    customer_external_id: str
    locale: str
    available_points: int
    items: list[CatalogueItem]


class RedemptionIn(Struct, kw_only=True, forbid_unknown_fields=True):
    reward_id: UUID
    # A points_for_discount reward: how many points to spend (a multiple of its step).
    points: Points | None = None


class DiscountOut(Struct, kw_only=True):
    """What the code gives (fixed at issue)."""

    kind: RewardKind
    amount: Money | None = None  # amount_off, points_for_discount: the money off
    percent: int | None = None
    cap: Money | None = None
    min_order: Money | None = None
    sku: str | None = None
    quantity: int | None = None
    max_share_percent: int | None = None
    value: Money | None = None  # custom: the declared value


class RedemptionOut(Struct, kw_only=True):
    id: UUID
    code: str
    status: RedemptionStatus
    source: RedemptionSource
    customer_external_id: str
    reward_id: UUID
    reward_version: int
    reward_name: str
    points: int  # spent on it (0: given at no cost)
    discount: DiscountOut
    # The money value: fixed at issue (amount_off, points_for_discount, custom) or taken at use from the
    # order (percent_off, free_shipping, free_product; null until then).
    value: Money | None
    expires_at: datetime | None
    created_at: datetime
    used_at: datetime | None = None
    order_external_id: str | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    points_returned: int = 0  # given back to their lots (cancel, full refund, expiry if the program says so)
    entries: list[LedgerEntryOut] = []  # the ledger entries this call wrote


class RedemptionList(Struct, kw_only=True):
    items: list[RedemptionOut]
    next_cursor: str | None


class CodeCheckOut(Struct, kw_only=True):
    """What the code takes off this cart."""

    code: str
    redemption_id: UUID
    reward_name: str
    kind: RewardKind
    discount: Money  # the money off this cart (free_shipping: its shipping; custom: 0)
    free_shipping: bool
    free_product: FreeProduct | None
    expires_at: datetime | None


class FreeProduct(Struct, kw_only=True):
    sku: str
    quantity: int


class CodeUseIn(Struct, kw_only=True, forbid_unknown_fields=True):
    # The order that used the code (already recorded): the value of a percent or free-item code is taken
    # from it. Without it, such a code's value stays unknown.
    order_external_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class CodeResult(Struct, kw_only=True):
    """One code of an order: `applied`, or why not (the problem type of a refusal)."""

    code: str
    result: Literal[
        "applied", "code-used", "code-expired", "code-cancelled", "code-not-applicable", "not-found"
    ]
    detail: str | None = None
    redemption_id: UUID | None = None
    discount: Money | None = None  # applied: its money value for this order


class CancelIn(Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] | None = None
