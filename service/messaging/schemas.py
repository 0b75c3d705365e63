from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from service.core.fields import Email, ExternalId

LocaleCode = Literal["en", "tr", "cy", "lv", "ms", "ru"]
MessageTypeKey = Literal[
    "order_thank_you",
    "delivery_check_in",
    "review_request",
    "points_earned",
    "points_expiring",
    "tier_upgraded",
    "tier_downgrade_warning",
    "repeat_invitation",
    "first_order_anniversary",
    "win_back",
    "birthday",
    "reward_issued",
    "code_expiring",
    "surprise",
    "survey",
    "promoter_ask",
    "feedback_alarm",
]
MessageStatus = Literal["queued", "deferred", "sent", "failed", "suppressed"]
HttpsUrl = Annotated[str, Meta(max_length=2000, pattern=r"^https?://\S+$")]
LocalTime = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, local time")]


class QuietHoursIn(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    start: LocalTime = "21:00"
    end: LocalTime = "08:00"


class MessagingSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """How the program's messages go out. PUT replaces the whole document (omitted fields: defaults)."""

    from_email: Email = "loyalty@shop.example"
    from_name: Annotated[str, Meta(max_length=100)] | None = None
    reply_to: Email | None = None
    default_locale: LocaleCode = "en"
    quiet_hours: QuietHoursIn | None = QuietHoursIn()
    marketing_cap: Annotated[
        int, Meta(ge=0, le=100, description="at most this many marketing messages ...")
    ] = 3
    marketing_cap_days: Annotated[int, Meta(ge=1, le=90, description="... in this many days")] = 7
    marketing_min_gap_hours: Annotated[int, Meta(ge=0, le=168, description="none within this of another")] = (
        16
    )
    shop_url: HttpsUrl | None = None
    review_url: HttpsUrl | None = None
    staff_cap_per_hour: Annotated[
        int,
        Meta(ge=1, le=1000, description="messages to staff (alarms) at most this many an hour; more wait"),
    ] = 20


class MessageTypeOut(Struct, kw_only=True):
    key: str
    category: Literal["transactional", "marketing", "staff"]
    description: str
    variables: list[str]
    locales: list[str]


class MessageTypeList(Struct, kw_only=True):
    items: list[MessageTypeOut]


class TemplateParts(Struct, kw_only=True, forbid_unknown_fields=True):
    subject: Annotated[str, Meta(min_length=1, max_length=1000)]
    text: Annotated[str, Meta(min_length=1, max_length=50_000)]
    html: Annotated[
        str, Meta(min_length=1, max_length=100_000, description="the HTML body; the layout wraps it")
    ]


class TemplateCreate(TemplateParts, kw_only=True, forbid_unknown_fields=True):
    message_type: MessageTypeKey
    locale: LocaleCode


class TemplateOut(Struct, kw_only=True):
    id: str
    message_type: str
    locale: str
    version: int
    subject: str
    text: str
    html: str
    created_at: datetime
    updated_at: datetime


class TemplateList(Struct, kw_only=True):
    items: list[TemplateOut]


class TemplateVersionOut(Struct, kw_only=True):
    version: int
    subject: str
    text: str
    html: str
    created_at: datetime


class TemplateVersionList(Struct, kw_only=True):
    items: list[TemplateVersionOut]


class PreviewIn(Struct, kw_only=True, forbid_unknown_fields=True):
    customer: ExternalId | None = None  # a real customer; omitted: a sample one
    count: Annotated[int, Meta(ge=0, le=10**9, description="the number sample values use (plural forms)")] = 3


class DraftPreviewIn(Struct, kw_only=True, forbid_unknown_fields=True):
    message_type: MessageTypeKey
    locale: LocaleCode
    parts: TemplateParts | None = None  # omitted: the program's current template (or the default)
    customer: ExternalId | None = None
    count: Annotated[int, Meta(ge=0, le=10**9)] = 3


class PreviewOut(Struct, kw_only=True):
    message_type: str
    locale: str
    template: str  # default:<locale> | <template id> v<version> | draft
    customer: str  # the customer's external id, or "sample"
    subject: str
    text: str
    html: str
    notes: list[str]


class MessageOut(Struct, kw_only=True):
    id: int
    customer: str
    message_type: str
    category: str
    status: MessageStatus
    reason: str | None
    journey: str | None
    step: int | None
    due_at: datetime
    attempts: int
    to: str | None
    subject: str | None
    locale: str | None
    locale_note: str | None
    template: str | None
    message_id: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class MessageList(Struct, kw_only=True):
    items: list[MessageOut]
    next_cursor: str | None


class SuppressionIn(Struct, kw_only=True, forbid_unknown_fields=True):
    email: Email
    reason: Literal["hard_bounce", "complaint", "manual"] = "manual"
    detail: Annotated[str, Meta(max_length=1000)] | None = None


class SuppressionOut(Struct, kw_only=True):
    email: str
    reason: str
    detail: str | None
    created_at: datetime


class SuppressionList(Struct, kw_only=True):
    items: list[SuppressionOut]
