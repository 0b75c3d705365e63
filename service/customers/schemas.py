from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import Email
from service.ledger.schemas import LedgerEntryOut
from service.messaging.schemas import MessageOut
from service.tiers.schemas import CustomerTier

# The shape only; profile_changes keeps locales CLDR knows, in their canonical BCP 47 form.
Locale = Annotated[
    str,
    Meta(
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
        description="A locale CLDR knows (en, en-GB, pt_BR, zh-Hant-TW), stored in BCP 47 form (pt-BR). "
        "Messages use the shipped templates of its language (en, tr, cy, lv, ms, ru: en-GB gets en, with "
        "British dates), else the program's default locale (the message's locale_note says so).",
    ),
]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64)]


class CustomerProfile(Struct, kw_only=True, forbid_unknown_fields=True):
    """Profile fields: an omitted field is left as it is; null clears it."""

    email: Email | UnsetType | None = UNSET
    name: Annotated[str, Meta(max_length=200)] | UnsetType | None = UNSET
    locale: Locale | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    timezone: TimeZone | UnsetType | None = UNSET
    marketing_consent: bool | UnsetType = UNSET
    transactional_consent: bool | UnsetType = UNSET  # false: unsubscribed from every email


class CustomerOut(Struct, kw_only=True):
    external_id: str
    email: str | None
    name: str | None
    locale: str | None
    birthday: date | None
    timezone: str | None
    marketing_consent: bool
    transactional_consent: bool
    created_at: datetime
    updated_at: datetime


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


class CustomerStatus(Struct, kw_only=True):
    customer: CustomerOut
    points: PointsSummary
    pending: list[PendingPoints]
    next_expiring: ExpiringPoints | None
    orders: OrderSummary
    recent_entries: list[LedgerEntryOut]
    tier: CustomerTier | None  # null: the program has no tiers
    recent_messages: list[MessageOut]  # the last five, newest first (GET /v1/messages?customer= for all)
