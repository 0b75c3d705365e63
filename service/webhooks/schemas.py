from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import UNSET, Meta, Struct, UnsetType, field

Url = Annotated[str, Meta(min_length=1, max_length=2000, description="https URL that receives the events")]
EventTypes = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=64)]],
    Meta(
        min_length=1,
        max_length=100,
        description='Topics (e.g. `order.created`) or groups (`points.*`), or `["*"]` for every event. '
        "At least one: an empty list would subscribe to nothing. Absent when creating: every event.",
    ),
]
Description = Annotated[str, Meta(max_length=500)]
DeliveryStatus = Literal["pending", "succeeded", "dead", "paused"]


class EndpointCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url
    event_types: EventTypes = field(default_factory=lambda: ["*"])
    description: Description = ""
    enabled: bool = True


class EndpointPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url | UnsetType = UNSET
    event_types: EventTypes | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class EndpointOut(Struct, kw_only=True):
    id: UUID
    url: str
    event_types: list[str]  # ["*"]: every event
    description: str
    enabled: bool
    disabled_reason: str | None
    # A rotation's previous secret still signs (besides the new one) until this time.
    previous_secret_valid_until: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut, kw_only=True):
    secret: str  # shown in this response only; verify deliveries with any Standard Webhooks library


class EndpointList(Struct, kw_only=True):
    items: list[EndpointOut]


class RotateSecret(Struct, kw_only=True, forbid_unknown_fields=True):
    # How long the old secret keeps signing besides the new one (both signatures are sent).
    overlap_seconds: Annotated[int, Meta(ge=0, le=7 * 24 * 3600)] = 24 * 3600


class DeliveryOut(Struct, kw_only=True):
    id: int
    endpoint_id: UUID
    event_id: UUID  # also the `webhook-id` header: the same on every attempt
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class DeliveryList(Struct, kw_only=True):
    items: list[DeliveryOut]
    next_cursor: str | None
