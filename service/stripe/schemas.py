from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Struct

from service.core.fields import matching

ApiKey = Annotated[
    str,
    matching(
        r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,240}$",
        "a Stripe secret or restricted key (sk_test_..., rk_live_...)",
    ),
]
WebhookSecret = Annotated[
    str, matching(r"^whsec_[A-Za-z0-9_+/=]{8,240}$", "a Stripe webhook signing secret (whsec_...)")
]
MetadataKey = Annotated[str, matching(r"^[A-Za-z0-9_\-.]{1,40}$", "a product metadata key such as sku")]
EventStatus = Literal["received", "processed", "waiting", "failed", "ignored"]


class ConnectionIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """The key needs: read Checkout Sessions, write Coupons and Promotion Codes. Both secrets are checked
    (the key against Stripe), stored encrypted and never shown again."""

    api_key: ApiKey
    webhook_secret: WebhookSecret
    create_orders: bool = True  # off: the shop posts its orders itself; Encore still reverses refunds
    sku_metadata_key: MetadataKey = "sku"
    category_metadata_key: MetadataKey = "category"


class ConnectionOut(Struct, kw_only=True):
    connected: bool
    mode: Literal["test", "live"] | None = None
    key_kind: Literal["secret", "restricted"] | None = None
    key_last4: str | None = None
    webhook_secret_last4: str | None = None
    create_orders: bool | None = None
    sku_metadata_key: str | None = None
    category_metadata_key: str | None = None
    webhook_url: str | None = None  # where to point the Stripe webhook endpoint
    connected_at: datetime | None = None
    updated_at: datetime | None = None
    last_event_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    events_waiting: int = 0
    events_failed: int = 0


class EventOut(Struct, kw_only=True):
    id: UUID
    stripe_id: str
    type: str
    livemode: bool
    api_version: str | None
    created: datetime  # by Stripe
    source: Literal["webhook", "replay"]
    status: EventStatus
    attempts: int
    next_attempt_at: datetime | None  # while received or waiting
    outcome: str | None  # what it did, or why it was ignored
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


class EventList(Struct, kw_only=True):
    items: list[EventOut]
    next_cursor: str | None


class Received(Struct, kw_only=True):
    """The webhook's answer: stored (or found stored: a replay), to be processed by the worker."""

    received: bool
    id: UUID
    status: EventStatus
    duplicate: bool
