"""Recovery and cases as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Meta, Struct

from service.core.fields import ExternalId, Key, words
from service.gifts.schemas import GivenOut
from service.ledger.schemas import LedgerEntryOut
from service.rewards.schemas import Money

Reason = Annotated[str, words(500, description="why, in a few words (`parcel lost`)")]
Text = Annotated[str, words(5000)]
CaseStatus = Literal["open", "closed"]
CaseSource = Literal["complaint", "feedback", "agent"]


# --- settings and budget --------------------------------------------------------------------------------


class RecoverySettingsIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """The monthly recovery budget (the program's base currency; 0: nothing that costs money), an optional
    cap per agent key, and what one month of each tier costs as a gesture (unlisted tiers: 0)."""

    monthly_budget: Money
    agent_monthly_budget: Money | None = None
    tier_month_values: Annotated[dict[Key, Money], Meta(max_length=100)] = {}


class RecoverySettingsOut(Struct, kw_only=True):
    monthly_budget: Money
    agent_monthly_budget: Money | None
    tier_month_values: dict[str, Money]
    updated_at: datetime | None  # null: never set (the defaults)


class AgentRef(Struct, kw_only=True):
    key_id: UUID
    name: str


class AgentBudget(Struct, kw_only=True):
    key_id: UUID
    name: str
    scope: str
    revoked: bool
    recoveries: int
    used: Money
    left: Money | None  # null: no cap per agent (the program's budget still applies)


class RecoveryBudgetOut(Struct, kw_only=True):
    month: str  # 2026-12, in the program's time zone
    budget: Money
    used: Money
    left: Money
    recoveries: int
    agent_monthly_budget: Money | None
    agents: list[AgentBudget]  # every agent key, and any other key that spent this month


# --- recovery -----------------------------------------------------------------------------------------------


class PointsAction(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="points"):
    """Points, available at once; cost: the points at the program's point value."""

    points: Annotated[int, Meta(ge=1, le=1_000_000)]


class RewardAction(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="reward"):
    """A catalogue reward as a code at no cost; cost: its fixed value in the base currency, else its price
    in points at the program's point value (an agent names no price of their own)."""

    reward_id: UUID


class GiftAction(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="gift"):
    """What a gift rule gives (points, codes, an item for the next parcel, a personal note), at once: no
    trigger, dice, cooldown or budget of the rule (a paused rule serves as a template); cost: its price."""

    gift_rule_id: UUID


class TierAction(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind", tag="tier"):
    """The tier held by hand for `months` (a floor: the customer still rises by their own qualification);
    cost: the program's `tier_month_values` of that tier times the months."""

    tier: Key
    months: Annotated[int, Meta(ge=1, le=24)]


Action = PointsAction | RewardAction | GiftAction | TierAction


class RecoveryIn(Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Reason
    action: Action
    case_id: UUID | None = None  # the case it belongs to (open, of this customer)
    order: ExternalId | None = None  # the customer's order it is about
    complaint_id: UUID | None = None  # the complaint event (POST /v1/events' `id`); links its case too


class RecoveryGiven(Struct, kw_only=True, omit_defaults=True):
    kind: str  # points | reward | gift | tier
    points: int | None = None
    entry_id: int | None = None
    redemption_id: UUID | None = None
    code: str | None = None
    reward_name: dict[str, str] | None = None
    expires_at: datetime | None = None
    gift_id: UUID | None = None
    gift_rule_name: str | None = None
    gifts: list[GivenOut] | None = None
    tier: str | None = None
    until: datetime | None = None


class RecoveryOut(Struct, kw_only=True):
    id: UUID
    customer_external_id: str
    agent: AgentRef
    reason: str
    given: RecoveryGiven
    explanation: str
    cost: Money
    month: str
    budget_left: Money  # the program's, after this recovery
    agent_left: Money | None  # this agent's, after it (null: no cap per agent)
    case_id: UUID | None
    order_external_id: str | None
    complaint_id: UUID | None
    entries: list[LedgerEntryOut]
    created_at: datetime


# --- cases --------------------------------------------------------------------------------------------------


class CaseIn(Struct, kw_only=True, forbid_unknown_fields=True):
    customer: ExternalId
    summary: Reason
    order: ExternalId | None = None
    note: Text | None = None  # a first note beside the summary


class CaseNoteIn(Struct, kw_only=True, forbid_unknown_fields=True):
    text: Text


class CaseCloseIn(Struct, kw_only=True, forbid_unknown_fields=True):
    note: Text  # how it was put right


class CaseEntryOut(Struct, kw_only=True):
    id: int
    kind: str  # opened | note | recovery | closed | reopened
    text: str
    recovery_id: UUID | None
    by: AgentRef | None  # null: opened by a complaint or feedback
    at: datetime


class CaseSummary(Struct, kw_only=True):
    id: UUID
    customer_external_id: str
    status: CaseStatus
    source: CaseSource
    summary: str
    order_external_id: str | None
    agent: AgentRef | None  # who opened it or first acted on it
    opened_at: datetime  # a complaint's or feedback's own time; else when an agent opened it
    first_action_at: datetime | None  # the first note, recovery or status change by a person
    time_to_first_action_seconds: int | None
    closed_at: datetime | None
    time_to_resolution_seconds: int | None
    resolution: str | None
    reopened: int  # times a follow-up still unhappy opened it again (closed_at, resolution: the last)
    recoveries: int
    recovery_cost: Money


class CaseOut(CaseSummary, kw_only=True):
    entries: list[CaseEntryOut]  # the timeline, oldest first


class CaseList(Struct, kw_only=True):
    items: list[CaseSummary]
    next_cursor: str | None = None


class OpenCaseOut(Struct, kw_only=True):
    """An open case on the customer status: whoever picks up the phone sees it."""

    id: UUID
    source: CaseSource
    summary: str
    opened_at: datetime
    first_action_at: datetime | None
    agent: AgentRef | None
    last_entry: str | None  # the latest note or recovery, as its timeline says it
