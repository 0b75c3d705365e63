"""The answers of the earning endpoints: what was recorded, what it earned or reversed, and why."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct

from service.gifts.schemas import SurpriseOut
from service.ledger.schemas import LedgerEntryOut
from service.orders.schemas import OrderOut
from service.rewards.schemas import CodeResult
from service.rules.schemas import AwardOut
from service.tiers.schemas import TierRef


class QuoteLineOut(Struct, kw_only=True):
    sku: str
    eligible_amount: int
    points: int


class QuoteOut(Struct, kw_only=True):
    currency: str
    eligible_amount: int
    points: int
    explanation: str
    awards: list[AwardOut]
    lines: list[QuoteLineOut]


class TierChanged(Struct, kw_only=True):
    """The tier the order lifted the customer to (an order only ever lifts; downgrades come from the
    re-evaluation)."""

    change: str  # upgrade
    from_tier: TierRef | None
    to_tier: TierRef | None
    reason: str


class OrderCreated(Struct, kw_only=True):
    order: OrderOut
    entries: list[LedgerEntryOut]
    tier_change: TierChanged | None = None  # null: the order left the tier as it was
    codes: list[CodeResult] = []  # each code the order came with: applied, or why not
    # Surprise gifts for this parcel: what a gift rule gave on this order, and items a gift without an
    # order (a birthday) left waiting for it (`from_earlier`); with their pick instructions and note.
    surprises: list[SurpriseOut] = []


class RefundLineOut(Struct, kw_only=True):
    sku: str
    quantity: int
    amount: int
    points: int


class RefundOut(Struct, kw_only=True):
    external_id: str
    order_external_id: str
    currency: str
    amount: int
    shipping_amount: int
    points_reversed: int
    debt_recorded: int
    lines: list[RefundLineOut]
    created_at: datetime
    entries: list[LedgerEntryOut]
