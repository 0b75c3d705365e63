"""Reports' pure decisions: the range a report covers (its bounds as sent, its default), the periods it is
cut into in the program's time zone (ISO weeks from Monday, calendar months), and the figures of a period
(NPS, mean CSAT, response rate, median time to resolve) from what was counted in it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import chain, repeat
from typing import Literal
from zoneinfo import ZoneInfo

from service.feedback import domain as feedback

Period = Literal["week", "month"]
Segment = Literal["tier", "locale"]  # by the customer's current tier key, or its locale
DEFAULT_PERIODS = 12  # no `from`: the twelve periods up to `to` (the current one included)
MAX_RANGE = timedelta(days=5 * 365 + 2)  # five years, their leap days included
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
NONE = "none"  # the segment of a customer without a tier (or a locale)

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
BOUND_FORMS = "a date (2026-03-01, in the program's time zone) or an RFC 3339 time with an offset"


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant `day` begins in `zone`."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def parse_bound(text: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A range bound as sent: a date is its day's start in the program's time zone, and as the end (`to`)
    the whole day is in (the range ends when the next day begins); a time is that instant (as the end: not
    included). ValueError (its words for a person) when it is neither or outside 1970-2200."""
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            moment = local_midnight(day + timedelta(days=1) if end else day, zone)
        elif _TIME.match(text):
            moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)
        else:
            raise ValueError
    except (ValueError, OverflowError):
        raise ValueError(f"expected {BOUND_FORMS}") from None
    if not EARLIEST <= moment <= LATEST:
        raise ValueError("a bound must be from 1970-01-01 to 2200-01-01 UTC")
    return moment


def period_start(day: date, period: Period) -> date:
    """The first day of the period `day` is in: its ISO week's Monday, or its month's first."""
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


def _next(start: date, period: Period) -> date:
    if period == "week":
        return start + timedelta(days=7)
    return date(start.year + (start.month == 12), start.month % 12 + 1, 1)


def _previous(start: date, period: Period) -> date:
    if period == "week":
        return start - timedelta(days=7)
    return date(start.year - (start.month == 1), (start.month - 2) % 12 + 1, 1)


def label(start: date, period: Period) -> str:
    """A period as the report names it: `2026-03`, or the ISO week `2026-W10` (its ISO year: the Monday
    2025-12-29 starts 2026-W01)."""
    if period == "month":
        return f"{start.year:04d}-{start.month:02d}"
    iso = start.isocalendar()
    return f"{iso.year:04d}-W{iso.week:02d}"


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def last_day(end: datetime, zone: ZoneInfo) -> date:
    """The local day of the range's last instant (`end` itself is not in the range)."""
    return local_day(end - timedelta(microseconds=1), zone)


def default_start(end: datetime, period: Period, zone: ZoneInfo) -> datetime:
    """No `from`: the start of the period DEFAULT_PERIODS - 1 before the one the range ends in."""
    start = period_start(last_day(end, zone), period)
    for _ in range(DEFAULT_PERIODS - 1):
        start = _previous(start, period)
    return local_midnight(start, zone)


def periods(start: datetime, end: datetime, period: Period, zone: ZoneInfo) -> list[date]:
    """The first days of the periods [start, end) touches, in order (the first and last may be partial)."""
    first, last = period_start(local_day(start, zone), period), last_day(end, zone)
    found: list[date] = []
    while first <= last:
        found.append(first)
        first = _next(first, period)
    return found


def median(values: Sequence[int]) -> int | None:
    """The median of whole seconds (of an even count: the mean of the middle two, a half rounded up)."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle] + 1) // 2


def _decimal(numerator: int, denominator: int, places: int) -> str | None:
    if denominator == 0:
        return None
    quantum = Decimal(1).scaleb(-places)
    return str((Decimal(numerator) / Decimal(denominator)).quantize(quantum, rounding=ROUND_HALF_UP))


def csat_mean(score_sum: int, responses: int) -> str | None:
    """The mean score as a decimal string with 2 places (half up); None without answers."""
    return _decimal(score_sum, responses, 2)


def response_rate(responses: int, sent: int) -> str | None:
    """Responses per survey sent, 4 places (half up); None when none was sent. Above 1 when answers
    came another way too (a shop's own `POST /v1/feedback`)."""
    return _decimal(responses, sent, 4)


@dataclass(slots=True)
class Tally:
    """What one period (and segment) counted: answers by band, scores, alarms, sends."""

    responses: int = 0
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    score_sum: int = 0
    sent: int = 0
    alarms: int = 0
    alarms_resolved: int = 0
    resolve_seconds: list[int] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.responses += other.responses
        self.promoters += other.promoters
        self.passives += other.passives
        self.detractors += other.detractors
        self.score_sum += other.score_sum
        self.sent += other.sent
        self.alarms += other.alarms
        self.alarms_resolved += other.alarms_resolved
        self.resolve_seconds.extend(other.resolve_seconds)

    def nps(self) -> int | None:
        bands: Iterable[feedback.Category] = chain(
            repeat("promoter", self.promoters),
            repeat("passive", self.passives),
            repeat("detractor", self.detractors),
        )
        return feedback.nps(bands)


def segment_order(segment: str | None) -> tuple[bool, str]:
    """Segments by name, `none` (no tier, no locale) last."""
    return (segment == NONE, segment or "")
