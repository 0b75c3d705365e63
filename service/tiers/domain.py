"""VIP tier decisions: which tier a customer qualifies for, and what a re-evaluation does about it.

Pure: no I/O, no clock. The caller passes the metrics (worked out in SQL) and the time.

The rules of play:
- A customer qualifies for a tier when its metric (points earned, spend, orders) over its window
  (rolling N months, the calendar year in the program's time zone, or lifetime) reaches its threshold;
  the tier they qualify for is the highest-ranked one they reach. Refunds count against every metric.
- Upgrades are immediate (the order or event that crosses a threshold, or a re-evaluation).
- A customer who no longer qualifies keeps the tier through its protection: with `retain_next_window`,
  until the end of the window after the one they last qualified in (qualified in 2026, kept all of
  2027), else until they last qualified; a manual assignment protects until its end (no end: for
  good); then `grace_days` more. That is the downgrade date.
- No silent downgrade: a warning goes out `warning_days` before the downgrade date (or at once, if
  that moment has passed) and the downgrade happens no earlier than `warning_days` after the warning.
- A customer who qualifies again before the downgrade keeps the tier; the warning is withdrawn.
- A downgrade goes one level down, or to the tier the customer qualifies for (the tier's policy).
- A manual tier is a floor, not a ceiling: the customer still rises by their own qualification.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

Metric = Literal["points", "spend", "orders"]
WindowKind = Literal["rolling_months", "calendar_year", "lifetime"]
DowngradePolicy = Literal["one_level", "qualified"]
Source = Literal["earned", "manual"]


class MetricKey(NamedTuple):
    """What is counted and over which window: tiers sharing one share its value."""

    metric: Metric
    window: WindowKind
    months: int  # rolling_months only; 0 otherwise

    @property
    def column(self) -> str:
        """A SQL identifier for this metric's value."""
        return f"{self.metric}_{self.window}_{self.months}"


@dataclass(frozen=True, slots=True)
class Tier:
    id: UUID
    key: str
    name: str
    rank: int
    metric: Metric
    threshold: int  # points, minor units of the program's base currency, or orders
    window: WindowKind
    months: int = 0
    retain_next_window: bool = True
    grace_days: int = 0
    downgrade_policy: DowngradePolicy = "one_level"
    warning_days: int = 30
    earn_multiplier: Decimal = Decimal(1)
    version: int = 1
    # Worked out once: the re-evaluation asks for it for every customer.
    metric_key: MetricKey = field(
        init=False, repr=False, compare=False, default=MetricKey("points", "lifetime", 0)
    )

    def __post_init__(self) -> None:
        months = self.months if self.window == "rolling_months" else 0
        object.__setattr__(self, "metric_key", MetricKey(self.metric, self.window, months))


@dataclass(frozen=True, slots=True)
class Holding:
    """The tier a customer holds now, and the state of any downgrade warning."""

    tier_id: UUID | None = None
    source: Source = "earned"
    since: datetime | None = None
    manual_until: datetime | None = None  # manual only; None = for good
    warned_at: datetime | None = None


DecisionKind = Literal["none", "upgrade", "warn", "withdraw_warning", "downgrade"]


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    tier: Tier | None = None  # upgrade / downgrade: the new tier (None: no tier any more)
    downgrade_at: datetime | None = None  # warn: the date announced
    keep: Tier | None = None  # warn: the tier at risk


NOTHING = Decision("none")


# --- windows -----------------------------------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (or earlier), clamped to the month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _year_start(year: int, zone: ZoneInfo) -> datetime:
    return datetime(year, 1, 1, tzinfo=zone)


def window_start(key: MetricKey, now: datetime, zone: ZoneInfo) -> datetime | None:
    """Where the window counting at `now` begins; None for lifetime."""
    if key.window == "lifetime":
        return None
    if key.window == "calendar_year":
        return _year_start(now.astimezone(zone).year, zone)
    return add_months(now, -key.months)


def period_end(tier: Tier, now: datetime, zone: ZoneInfo) -> datetime | None:
    """When the current qualification period closes: the year's end for a calendar window (rolling and
    lifetime windows never close, their counts just move)."""
    if tier.window == "calendar_year":
        return _year_start(now.astimezone(zone).year + 1, zone)
    return None


def retention_end(tier: Tier, last_qualified: datetime, zone: ZoneInfo) -> datetime:
    """How long having qualified at `last_qualified` keeps the tier (grace not included)."""
    if not tier.retain_next_window or tier.window == "lifetime":
        return last_qualified
    if tier.window == "calendar_year":
        return _year_start(last_qualified.astimezone(zone).year + 2, zone)
    return add_months(last_qualified, tier.months)


# --- qualification --------------------------------------------------------------------------------------


def qualified_tier(tiers: Sequence[Tier], values: Mapping[MetricKey, int]) -> Tier | None:
    """The highest-ranked tier whose threshold the customer's metrics reach."""
    best: Tier | None = None
    for tier in tiers:
        if values.get(tier.metric_key, 0) >= tier.threshold and (best is None or tier.rank > best.rank):
            best = tier
    return best


def by_rank(tiers: Sequence[Tier]) -> list[Tier]:
    return sorted(tiers, key=lambda t: t.rank)


def next_up(tiers: Sequence[Tier], current: Tier | None) -> Tier | None:
    """The next tier to reach (the lowest ranked above the current one)."""
    above = [t for t in tiers if current is None or t.rank > current.rank]
    return min(above, key=lambda t: t.rank) if above else None


def _one_below(tiers: Sequence[Tier], current: Tier) -> Tier | None:
    below = [t for t in tiers if t.rank < current.rank]
    return max(below, key=lambda t: t.rank) if below else None


def downgrade_target(tiers: Sequence[Tier], current: Tier, qualified: Tier | None) -> Tier | None:
    if current.downgrade_policy == "qualified":
        return qualified
    return _one_below(tiers, current)


def downgrade_date(
    current: Tier, holding: Holding, last_qualified: datetime | None, now: datetime, zone: ZoneInfo
) -> datetime | None:
    """When a customer who no longer qualifies loses the tier, the warning period not included;
    None: never (a manual tier without an end)."""
    if holding.source == "manual" and holding.manual_until is None:
        return None
    if last_qualified is not None:
        protected = retention_end(current, last_qualified, zone)
    else:  # e.g. the order that lifted them was refunded: the tier counts from when it was given
        protected = holding.since or now
    if holding.source == "manual" and holding.manual_until is not None:
        protected = max(protected, holding.manual_until)
    return protected + timedelta(days=current.grace_days)


def effective_downgrade_at(current: Tier, planned: datetime, warned_at: datetime) -> datetime:
    """Never sooner than `warning_days` after the warning."""
    return max(planned, warned_at + timedelta(days=current.warning_days))


def decide(
    tiers: Sequence[Tier],
    holding: Holding,
    qualified: Tier | None,
    last_qualified: datetime | None,
    now: datetime,
    zone: ZoneInfo,
) -> Decision:
    """What a re-evaluation does for one customer. `qualified`: the tier their metrics reach now;
    `last_qualified`: when they last reached the tier they hold (None: not that we know)."""
    upgrade = upgrade_on_activity(tiers, holding, qualified)
    if upgrade is not None:
        return Decision("upgrade", tier=upgrade)
    current = next((t for t in tiers if t.id == holding.tier_id), None)
    if current is None:
        return NOTHING
    if qualified is not None and qualified.rank >= current.rank:
        return Decision("withdraw_warning") if holding.warned_at is not None else NOTHING
    planned = downgrade_date(current, holding, last_qualified, now, zone)
    if planned is None:
        return Decision("withdraw_warning") if holding.warned_at is not None else NOTHING
    if holding.warned_at is None:
        if now >= planned - timedelta(days=current.warning_days):
            return Decision("warn", downgrade_at=effective_downgrade_at(current, planned, now), keep=current)
        return NOTHING
    if now >= effective_downgrade_at(current, planned, holding.warned_at):
        return Decision("downgrade", tier=downgrade_target(tiers, current, qualified))
    return NOTHING


def upgrade_on_activity(tiers: Sequence[Tier], holding: Holding, qualified: Tier | None) -> Tier | None:
    """The tier the customer rises to, if any (only ever up): what an order or event does, and the first
    thing a re-evaluation asks."""
    current = next((t for t in tiers if t.id == holding.tier_id), None)
    if qualified is not None and (current is None or qualified.rank > current.rank):
        return qualified
    return None


# --- validation of a tier set ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overlap:
    field: str
    message: str


def overlaps(tiers: Sequence[Tier]) -> Overlap | None:
    """Ranks must differ; among tiers counting the same metric over the same window, a higher rank
    needs a higher threshold (else the lower tier could never be held by qualifying)."""
    ranked = by_rank(tiers)
    for a, b in itertools.pairwise(ranked):
        if a.rank == b.rank:
            return Overlap("rank", f"tiers {a.key!r} and {b.key!r} both have rank {a.rank}")
    groups: dict[MetricKey, list[Tier]] = {}
    for tier in ranked:
        groups.setdefault(tier.metric_key, []).append(tier)
    for group in groups.values():
        for lower, higher in itertools.pairwise(group):
            if higher.threshold <= lower.threshold:
                return Overlap(
                    "threshold",
                    f"tier {higher.key!r} (rank {higher.rank}) needs a higher threshold than {lower.key!r} "
                    f"(rank {lower.rank}, threshold {lower.threshold}) on the same metric and window",
                )
    return None
