"""Surveys and feedback as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import ExternalId, Happened, Key, words
from service.messaging.schemas import LocaleCode

SurveyKind = Literal["nps", "csat"]
Category = Literal["promoter", "passive", "detractor"]
SendAfter = Literal["order", "delivery"]
AskPromoters = Literal["none", "review", "referral"]
SurveyStatus = Literal["active", "archived"]
Channel = Literal["email", "web", "app", "sms", "phone", "in_store", "other"]
Question = Annotated[str, words(500)]
Label = Annotated[str, words(100)]
MAX_COMMENT_CHARS = 5000
Comment = Annotated[str, words(MAX_COMMENT_CHARS)]
Score = Annotated[int, Meta(ge=0, le=10, description="NPS 0-10, CSAT 1-5")]
DimensionScore = Annotated[int, Meta(ge=1, le=5)]


class Dimension(Struct, kw_only=True, forbid_unknown_fields=True):
    """A CSAT rating of one side of the service (`speed`, `accuracy`), 1-5, labelled per locale (the
    shipped labels of `speed` and `accuracy` fill the locales not given)."""

    key: Key
    labels: Annotated[dict[LocaleCode, Label], Meta(max_length=6)] = {}


QUESTIONS = (
    "The question per locale (`{shop}` stands for the program's name); the shipped defaults fill the locales "
    "not given"
)
THRESHOLD = "A score under this raises an alarm (default: NPS 5, CSAT 2); at most one above the scale's top"


class SurveyIn(Struct, kw_only=True, forbid_unknown_fields=True):
    key: Key
    name: Annotated[str, words(200)]
    kind: SurveyKind
    questions: Annotated[dict[LocaleCode, Question], Meta(max_length=6, description=QUESTIONS)] = {}
    dimensions: Annotated[list[Dimension], Meta(max_length=5)] = []  # CSAT only
    send_after: SendAfter = "order"  # the order placed, or its delivery (the `order_delivered` event)
    delay_days: Annotated[int, Meta(ge=0, le=365)] = 7
    alarm_below: Annotated[int, Meta(ge=0, le=11, description=THRESHOLD)] | None = None
    ask_promoters: AskPromoters = "none"  # promoters enter a journey asking for a review or a referral
    follow_up: bool = False  # after a detractor's case is closed: "did we put it right?"
    status: SurveyStatus = "active"


class SurveyPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, words(200)] | UnsetType = UNSET
    questions: Annotated[dict[LocaleCode, Question], Meta(max_length=6)] | UnsetType = UNSET
    dimensions: Annotated[list[Dimension], Meta(max_length=5)] | UnsetType = UNSET
    send_after: SendAfter | UnsetType = UNSET
    delay_days: Annotated[int, Meta(ge=0, le=365)] | UnsetType = UNSET
    alarm_below: Annotated[int, Meta(ge=0, le=11)] | UnsetType = UNSET
    ask_promoters: AskPromoters | UnsetType = UNSET
    follow_up: bool | UnsetType = UNSET
    status: SurveyStatus | UnsetType = UNSET


class DimensionOut(Struct, kw_only=True):
    key: str
    labels: dict[str, str]  # every locale


class SurveyOut(Struct, kw_only=True):
    id: UUID
    key: str
    name: str
    kind: SurveyKind
    scale: list[int]  # [lowest, highest]
    questions: dict[str, str]  # every locale: given or shipped
    dimensions: list[DimensionOut]
    send_after: SendAfter
    delay_days: int
    alarm_below: int
    ask_promoters: AskPromoters
    follow_up: bool
    status: SurveyStatus
    created_at: datetime
    updated_at: datetime


class SurveyList(Struct, kw_only=True):
    items: list[SurveyOut]


class FeedbackIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """An answer a shop collected itself: the survey it answers (or just its kind), the score on that
    survey's scale, optional dimension ratings (1-5) and comment, the order it is about."""

    customer: ExternalId
    score: Score
    survey: Key | None = None
    kind: SurveyKind | None = None  # without a survey; with one, its kind (another is 422)
    dimensions: Annotated[dict[Key, DimensionScore], Meta(max_length=5)] = {}
    comment: Comment | None = None
    order: ExternalId | None = None
    channel: Channel = "other"
    answered_at: Happened | None = None  # default: now
    follows_up_case_id: UUID | None = None  # the closed case this answers "did we put it right?" for


class FeedbackOut(Struct, kw_only=True):
    id: UUID
    customer_external_id: str
    survey: str | None  # its key
    kind: SurveyKind
    score: int
    category: Category
    dimensions: dict[str, int]
    comment: str | None
    order_external_id: str | None
    channel: str
    alarm: bool  # under the survey's (or the kind's default) threshold
    case_id: UUID | None  # the recovery case a detractor's answer opened
    follows_up_case_id: UUID | None
    reopened: bool  # the follow-up was still unhappy: its case is open again
    answered_at: datetime
    changeable_until: datetime | None  # an answer by link can be changed until then
    created_at: datetime
    updated_at: datetime


class FeedbackList(Struct, kw_only=True):
    items: list[FeedbackOut]
    next_cursor: str | None = None
