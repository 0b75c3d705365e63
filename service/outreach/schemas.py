from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Meta, Struct

from service.core.fields import Key
from service.messaging.schemas import MessageTypeKey

JourneyKey = Key
TriggerKind = Literal[
    "order_placed",
    "event",
    "tier_upgraded",
    "tier_downgraded",
    "tier_downgrade_warning",
    "points_expiring",
    "points_earned",
    "inactivity",
    "birthday",
    "first_order_anniversary",
    "repeat_customer",
    "journey_completed",
    "reward_issued",
    "code_expiring",
    "gift_granted",
    "survey_due",
    "promoter",
]
ExitCondition = Literal["ordered_again", "refunded", "unsubscribed"]


class TriggerIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """What enters a customer: an event Encore records (order placed, a shop event such as
    `order_delivered`, tier changes, points, a code issued (`reward_issued`: bought with points or given,
    not one a journey step gave, which its own message sends) or an unused code expiring within 7 days
    (`code_expiring`), a surprise gift whose rule announces it by message (`gift_granted`), a promoter's
    answer to a survey that asks promoters for a review or a referral (`promoter`)), a schedule
    (inactivity, birthday, first-order anniversary, an active survey due after an order or its
    delivery: `survey_due`),
    the repeat-customer segment (expected reorder moment passed), or another journey's completion."""

    kind: TriggerKind
    event_type: Annotated[str, Meta(min_length=1, max_length=64)] | None = None  # kind event
    days: Annotated[int, Meta(ge=1, le=3650)] | None = None  # kind inactivity: days without an order
    min_orders: Annotated[int, Meta(ge=2, le=1000)] = 2  # kind repeat_customer
    default_interval_days: Annotated[int, Meta(ge=1, le=3650)] = (
        45  # repeat_customer: when a customer has no own rhythm
    )
    journey: JourneyKey | None = None  # kind journey_completed


class Delay(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    days: Annotated[int, Meta(ge=0, le=3650)] = 0
    hours: Annotated[int, Meta(ge=0, le=10_000)] = 0
    minutes: Annotated[int, Meta(ge=0, le=100_000)] = 0


class StepIn(Struct, kw_only=True, forbid_unknown_fields=True):
    delay: Delay = Delay()  # after the previous step (the first: after the trigger)
    message_type: MessageTypeKey
    reward_points: Annotated[int, Meta(ge=1, le=1_000_000)] | None = (
        None  # credited when the message is queued
    )
    offer: Annotated[str, Meta(max_length=500)] | None = None  # the invitation's offer text
    # A reward of the program given as a code at no cost when the message is queued (once per step and
    # trigger); its code and expiry go into the message (a type that shows a code).
    reward: UUID | None = None


class JourneyIn(Struct, kw_only=True, forbid_unknown_fields=True):
    key: JourneyKey
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    trigger: TriggerIn
    steps: Annotated[list[StepIn], Meta(min_length=1, max_length=20)]
    exit_on: list[ExitCondition] = []
    enabled: bool = False


class JourneyPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool


class JourneyOut(Struct, kw_only=True):
    key: str
    name: str
    version: int
    enabled: bool
    trigger: TriggerIn
    steps: list[StepIn]
    exit_on: list[ExitCondition]
    enabled_at: datetime | None
    active: int  # customers in it now
    completed: int
    exited: int
    created_at: datetime
    updated_at: datetime


class JourneyList(Struct, kw_only=True):
    items: list[JourneyOut]
