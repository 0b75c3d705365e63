from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.auth import Scope
from service.core.fields import Email

EventTypeName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")]
Currency = Annotated[str, Meta(min_length=3, max_length=3, pattern="^[A-Z]{3}$", description="ISO 4217 code")]


class PointValue(Struct, kw_only=True):
    """`points` points are worth `amount` minor units of the program's base currency (for liability)."""

    amount: Annotated[int, Meta(ge=0, le=1_000_000)]
    points: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    currency: str | UnsetType = UNSET


CodePrefix = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=12,
        pattern="^[A-Z0-9]+$",
        description="Shown before every reward code, e.g. SHOP: SHOP-7KQ2-M9XD-4HTN-PB3W",
    ),
]


class CodeSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """How the program's reward codes behave."""

    prefix: CodePrefix | None = None
    # A full refund of an order that used a code cancels that redemption: its points go back to their lots.
    cancel_on_full_refund: bool = True
    # A code that expires unused gives its points back (else the points spent on it are gone with it).
    expiry_returns_points: bool = False


class ProgramOut(Struct, kw_only=True):
    id: UUID
    name: str
    base_currency: str
    earn_rates: dict[str, Decimal]
    pending_days: int
    points_expire_after_days: int | None
    point_value: PointValue
    timezone: str
    event_types: list[str]  # custom event types rules can be triggered by, besides the built-in ones
    codes: CodeSettings
    gift_cooldown_days: int  # at most one surprise gift (or hold-out) per customer within this many days
    alert_email: str | None  # staff address for alarms (a score under a survey's threshold); null: none
    created_at: datetime
    updated_at: datetime


class ExpiryChangeOut(Struct, kw_only=True):
    """What a change of `points_expire_after_days` did to the points customers already held."""

    kind: Literal["switched_on", "shortened", "lengthened", "switched_off"]
    from_days: int | None
    to_days: int | None
    rule: str  # the rule applied to the points held, in words
    customers: int  # customers whose points got a new date (each has an `expiry_changed` ledger entry)
    lots: int
    points: int
    # The soonest and latest of the new dates (null when the points no longer expire).
    earliest_expires_at: datetime | None
    latest_expires_at: datetime | None


class ProgramUpdated(ProgramOut, kw_only=True):
    # Set when `points_expire_after_days` changed: what happened to the points customers hold.
    expiry_change: ExpiryChangeOut | None = None


EXPIRY_RULE = (
    "Days after points become available until they expire; null: they never expire. A change applies to "
    "the points customers hold, never so that anyone loses points at once: switching on or shortening "
    "gives each held lot the new period counted from when it became available, but no sooner than the "
    "new period after the change (an earlier date stays); lengthening moves every held lot's date later "
    "by the difference; switching off removes the dates. Points already past their date stay expired. "
    "Each customer whose dates moved gets an `expiry_changed` ledger entry, and the 30- and 7-day "
    "expiry notices warn again for the new dates. The answer's `expiry_change` says what changed."
)


class ProgramPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    # Points per major unit of each currency, e.g. {"EUR": "1", "USD": "0.9"}.
    earn_rates: dict[Currency, Decimal] | UnsetType = UNSET  # each 0..1000, checked in the service
    pending_days: Annotated[int, Meta(ge=0, le=365)] | UnsetType = UNSET
    points_expire_after_days: (
        Annotated[int, Meta(ge=1, le=3650, description=EXPIRY_RULE)] | UnsetType | None
    ) = UNSET
    point_value: PointValue | UnsetType = UNSET
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType = UNSET
    # Custom event types for POST /v1/events (signup, birthday, review_written, newsletter_signup,
    # social_follow, referral and complaint are always known).
    event_types: Annotated[list[EventTypeName], Meta(max_length=100)] | UnsetType = UNSET
    codes: CodeSettings | UnsetType = UNSET  # replaced as a whole
    # Surprise gifts: at most one per customer within this many days, across all gift rules (0: no
    # cooldown). Surprises must stay surprising.
    gift_cooldown_days: Annotated[int, Meta(ge=0, le=3650)] | UnsetType = UNSET
    # Staff are told of alarms here (a low score's comment, the customer's status, a link); null: nobody.
    alert_email: Email | UnsetType | None = UNSET


SCOPE_RULE = (
    "What the key may do (the README's Scopes table): `read` every GET of the program's loyalty data and "
    "quotes; `server` read + what a shop's backend does (customers, orders, refunds, events); `agent` read "
    "+ recovery from the recovery budget and cases (one key per agent: its name is the agent's); `marketer` "
    "read + rules, tiers, templates, journeys, previews and simulations; `admin` everything, also ledger "
    "adjustments and manual tiers, API keys, webhooks, settings, suppressions and jobs."
)


class ApiKeyCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    scope: Annotated[Scope, Meta(description=SCOPE_RULE)]


class ApiKeyOut(Struct, kw_only=True):
    id: UUID
    name: str
    prefix: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut, kw_only=True):
    api_key: str  # shown once; only its hash is stored


class ApiKeyList(Struct, kw_only=True):
    items: list[ApiKeyOut]
