"""Recovery's pure decisions: which budget month, whether a cost fits, how long a gesture lasts, how a
recovery explains itself, and how long a case waited."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.gifts import domain as gifts_domain
from service.tiers import domain as tiers_domain


def budget_month(at: datetime, zone: ZoneInfo) -> str:
    """The budget month `at` falls in, in the program's time zone (`2026-12`)."""
    return gifts_domain.budget_period("month", at, zone)


@dataclass(frozen=True, slots=True)
class Room:
    """What is left of the program's month (and of the agent's, when agents have a cap)."""

    program_left: int
    agent_left: int | None

    def fits(self, cost: int) -> bool:
        return cost <= self.program_left and (self.agent_left is None or cost <= self.agent_left)

    def after(self, cost: int) -> Room:
        return Room(self.program_left - cost, None if self.agent_left is None else self.agent_left - cost)


def room(program_budget: int, program_used: int, agent_budget: int | None, agent_used: int) -> Room:
    """What is left, never below 0 (a budget lowered under what a month used leaves nothing)."""
    return Room(
        max(0, program_budget - program_used),
        None if agent_budget is None else max(0, agent_budget - agent_used),
    )


def months_later(at: datetime, months: int, zone: ZoneInfo) -> datetime:
    """The same local time `months` calendar months later (the day clamped to the month's last), in UTC
    terms as `at` is given."""
    return tiers_domain.add_months(at.astimezone(zone), months).astimezone(at.tzinfo)


def explanation(agent: str, reason: str, what: str) -> str:
    """How the ledger and the case say it: `Recovery by Mira: parcel lost — 500 points`."""
    return f"Recovery by {agent}: {reason} — {what}"


def seconds_between(start: datetime, end: datetime | None) -> int | None:
    """Whole seconds from `start` to `end` (never negative: a complaint dated after its first answer by a
    skewed clock waited 0 s); None while `end` has not happened."""
    if end is None:
        return None
    return max(0, int((end - start).total_seconds()))


SUMMARY_PROPERTIES = ("summary", "reason", "comment", "text", "subject")


def complaint_summary(properties: Mapping[str, Any]) -> str:
    """A complaint case's summary: the event's first text property of SUMMARY_PROPERTIES (trimmed, at most
    500 characters), else `complaint`."""
    for name in SUMMARY_PROPERTIES:
        value = properties.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:500]
    return "complaint"
