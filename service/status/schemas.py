"""The customer's whole status in one answer: profile, points, pending dates, expiry, orders, tier,
recent entries and messages."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from msgspec import Struct

from service.customers.schemas import CustomerOut
from service.ledger.schemas import LedgerEntryOut
from service.messaging.schemas import MessageOut
from service.recovery.schemas import OpenCaseOut
from service.tiers.schemas import CustomerTier


class PendingPoints(Struct, kw_only=True):
    points: int
    available_at: datetime


class ExpiringPoints(Struct, kw_only=True):
    points: int
    expires_at: datetime


class PointsSummary(Struct, kw_only=True):
    available: int
    pending: int
    debt: int  # clawback owed after a refund of spent points; the next points earned settle it first
    lifetime_earned: int


class OrderSummary(Struct, kw_only=True):
    count: int
    last_order_at: datetime | None


class OpenCode(Struct, kw_only=True):
    """A reward code the customer can still use."""

    redemption_id: UUID
    code: str
    reward_id: UUID
    name: str  # in the customer's locale, else English
    kind: str
    expires_at: datetime | None


class CustomerStatus(Struct, kw_only=True):
    customer: CustomerOut
    points: PointsSummary
    pending: list[PendingPoints]
    next_expiring: ExpiringPoints | None
    orders: OrderSummary
    recent_entries: list[LedgerEntryOut]
    tier: CustomerTier | None  # null: the program has no tiers
    recent_messages: list[MessageOut]  # the last five, newest first (GET /v1/messages?customer= for all)
    open_codes: list[OpenCode] = []  # reward codes issued and not used, cancelled or expired
    open_cases: list[OpenCaseOut] = []  # service cases still open, oldest first (GET /v1/cases/{id})
