"""Rule evaluation: rules + an order (or event) + the customer's context -> awards with explanations.

Pure and deterministic: no I/O, no clock; the caller passes the time, the caps already used and the
campaign budgets left. The order of play:

1. A rule is a candidate when its trigger fits, the time is in its window (program time zone: dates,
   days of week, hours), the customer is in its audience and its budget is not spent.
2. Its conditions pick the matching lines (an event is one unit). No matching line, no award.
3. Rules are played by priority, highest first. An `exclusive` rule takes its lines from every
   exclusive rule of lower priority; of the exclusive rules of one priority, the one worth the most
   points wins (ties: the earlier rule). A `stack` rule adds to whatever else applies.
4. Percentage bonuses come last: a percentage of the points the other rules gave the matching lines.
5. Caps and budgets cut an award down (per order, per customer per day / month / year / lifetime,
   campaign budget); the explanation says so.

A rule that raises while being evaluated is left out and reported as a problem; the others still
award, so a broken rule never fails an order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

from service.core.money import allocate, exponent, format_money
from service.rules.conditions import Compiled, Facts, LineFacts

EffectKind = Literal["base_rate", "rate", "multiplier", "fixed", "percent_bonus"]
Scope = Literal["order", "lines"]
CustomerKind = Literal["all", "new", "returning"]
CapPeriod = Literal["order", "day", "month", "year", "lifetime"]
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Window:
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    days_of_week: frozenset[int] = frozenset()  # 0 = Monday; empty = every day
    hours: tuple[int, int] | None = None  # [start, end) local hours; start > end wraps past midnight

    def contains(self, at: datetime, zone: ZoneInfo, local: datetime | None = None) -> bool:
        if self.starts_at is not None and at < self.starts_at:
            return False
        if self.ends_at is not None and at >= self.ends_at:
            return False
        if not self.days_of_week and self.hours is None:
            return True
        if local is None:
            local = at.astimezone(zone)
        if self.days_of_week and local.weekday() not in self.days_of_week:
            return False
        if self.hours is not None:
            start, end = self.hours
            hour = local.hour
            inside = start <= hour < end if start < end else (hour >= start or hour < end)
            if not inside:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Audience:
    tiers: frozenset[str] = frozenset()  # empty = every tier and none
    customers: CustomerKind = "all"

    def admits(self, facts: Facts) -> bool:
        if self.tiers and facts.values.get("customer.tier") not in self.tiers:
            return False
        if self.customers == "new":
            return bool(facts.values.get("customer.is_new"))
        if self.customers == "returning":
            return not facts.values.get("customer.is_new")
        return True


@dataclass(frozen=True, slots=True)
class Effect:
    kind: EffectKind
    scope: Scope = "lines"
    rates: Mapping[str, Decimal] = field(default_factory=dict)  # rate: points per major unit
    multiplier: Decimal = Decimal(1)  # multiplier: × the program's base rate
    points: int = 0  # fixed
    percent: Decimal = Decimal(0)  # percent_bonus


@dataclass(frozen=True, slots=True)
class Caps:
    per_order: int | None = None
    per_customer_day: int | None = None
    per_customer_month: int | None = None
    per_customer_year: int | None = None
    per_customer_lifetime: int | None = None

    _periods: tuple[tuple[CapPeriod, int], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        periods = (
            ("day", self.per_customer_day),
            ("month", self.per_customer_month),
            ("year", self.per_customer_year),
            ("lifetime", self.per_customer_lifetime),
        )
        object.__setattr__(self, "_periods", tuple((p, cap) for p, cap in periods if cap is not None))

    def customer_caps(self) -> tuple[tuple[CapPeriod, int], ...]:
        return self._periods


@dataclass(frozen=True, slots=True)
class Rule:
    id: UUID
    version: int
    name: str
    priority: int
    trigger: str
    condition: Compiled
    effect: Effect
    exclusive: bool = False
    window: Window = Window()
    audience: Audience = Audience()
    caps: Caps = Caps()
    budget_points: int | None = None

    # Worked out once: the evaluator asks for every rule on every order.
    limited: bool = field(init=False, repr=False, compare=False, default=False)
    gated: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limited", self.budget_points is not None or bool(self.caps.customer_caps()))
        object.__setattr__(self, "gated", self.window != Window() or self.audience != Audience())

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class Subject(NamedTuple):
    """What is being rewarded: an order (lines) or an event (one unit, no lines). A tuple: a simulation
    makes one per order replayed."""

    trigger: str
    at: datetime
    facts: Facts
    currency: str | None = None
    lines: tuple[LineFacts, ...] = ()
    base_rate: Decimal | None = None  # the program's earn rate for this currency
    local_at: datetime | None = None  # `at` in the program's time zone, if the caller has it already


def period_key(period: CapPeriod, at: datetime, zone: ZoneInfo) -> str:
    local: date = at.astimezone(zone).date()
    if period == "day":
        return local.isoformat()
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    if period == "year":
        return f"{local.year:04d}"
    return "lifetime"


@dataclass(slots=True)
class Limits:
    """Caps used so far and budgets left, for the rules that have them. `None`: not known (unlimited)."""

    used: dict[tuple[UUID, str], int] = field(default_factory=dict)  # (rule, period key) -> points
    budget_left: dict[UUID, int] = field(default_factory=dict)
    known: bool = True

    def room(self, rule: Rule, at: datetime, zone: ZoneInfo) -> tuple[int | None, str | None]:
        """Points the rule may still give this customer now, and which limit binds (None: no limit)."""
        if not self.known:
            return None, None
        best: tuple[int | None, str | None] = (None, None)
        for period, cap in rule.caps.customer_caps():
            left = max(0, cap - self.used.get((rule.id, period_key(period, at, zone)), 0))
            if best[0] is None or left < best[0]:
                best = (
                    left,
                    f"{cap} points per customer {'in total' if period == 'lifetime' else 'per ' + period}",
                )
        if rule.budget_points is not None:
            left = max(0, self.budget_left.get(rule.id, rule.budget_points))
            if best[0] is None or left < best[0]:
                best = (left, f"campaign budget of {rule.budget_points} points")
        return best

    def consume(self, rule: Rule, points: int, at: datetime, zone: ZoneInfo) -> None:
        if not self.known:
            return
        for period, _cap in rule.caps.customer_caps():
            key = (rule.id, period_key(period, at, zone))
            self.used[key] = self.used.get(key, 0) + points
        if rule.budget_points is not None:
            self.budget_left[rule.id] = self.budget_left.get(rule.id, rule.budget_points) - points


UNKNOWN_LIMITS = Limits(known=False)


@dataclass(frozen=True, slots=True)
class Award:
    rule: Rule
    points: int
    unit_points: tuple[int, ...]  # per line (an event: one unit)
    # Written only when asked for (a simulation replays 100,000 orders and reads none).
    describe: Callable[[], str] = field(repr=False, compare=False)

    @property
    def explanation(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class Problem:
    rule: Rule
    error: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    awards: tuple[Award, ...]
    problems: tuple[Problem, ...]
    touched: frozenset[UUID]  # limited rules whose conditions matched a unit (their limits matter)
    notes: tuple[str, ...]

    @property
    def points(self) -> int:
        return sum(a.points for a in self.awards)

    def unit_points(self, units: int) -> list[int]:
        totals = [0] * units
        for award in self.awards:
            for i, p in enumerate(award.unit_points):
                totals[i] += p
        return totals

    def explanation(self) -> str:
        if self.awards:
            return "; ".join(a.explanation for a in self.awards)
        return "; ".join(self.notes) if self.notes else "No rule matched: no points"


@functools.lru_cache(maxsize=4096)
def _ratio(value: Decimal) -> tuple[int, int]:
    return value.as_integer_ratio()


def points_at_rate(amount: int, rate: Decimal, currency: str, multiplier: Decimal | None = None) -> int:
    """Points for an amount in minor units at `rate` (× `multiplier`) points per major unit, rounded
    down, exactly: integer arithmetic on the decimals' ratios, never a rounded product."""
    num, den = _ratio(rate)
    if multiplier is not None:
        m_num, m_den = _ratio(multiplier)
        num, den = num * m_num, den * m_den
    points: int = amount * num // (den * 10 ** exponent(currency))
    return points


def describe_rate(rate: Decimal, currency: str) -> str:
    one_unit = format_money(10 ** exponent(currency), currency)
    number = format(rate.normalize(), "f")
    return f"{number} {'point' if rate == 1 else 'points'} per {one_unit}"


def _plural(points: int) -> str:
    return f"{points} point" if points == 1 else f"{points} points"


def _what(subject: Subject, matched: Sequence[int], scope: Scope) -> str:
    """`of Shoes`, `of 2 lines (A-1, B-2)`, or nothing when the award is on the whole order."""
    if len(matched) == len(subject.lines):
        return ""
    lines = [subject.lines[i] for i in matched]
    categories = {line.category for line in lines}
    if len(categories) == 1 and None not in categories:
        return f" of {categories.pop()}"
    skus = ", ".join(line.sku for line in lines[:3]) + (", …" if len(lines) > 3 else "")
    return f" of {len(lines)} {'line' if len(lines) == 1 else 'lines'} ({skus})"


def _weights(subject: Subject, units: Sequence[int]) -> list[int]:
    if not subject.lines:
        return [1 for _ in units]
    amounts = [subject.lines[i].amount for i in units]
    return amounts if sum(amounts) > 0 else [subject.lines[i].quantity for i in units]


def _spread(points: int, weights: list[int], units: Sequence[int], n_units: int) -> list[int]:
    unit_points = [0] * n_units
    if len(units) == 1:
        unit_points[units[0]] = points
        return unit_points
    if sum(weights) <= 0:
        return unit_points
    for i, p in zip(units, allocate(points, weights), strict=True):
        unit_points[i] = p
    return unit_points


def _raw_award(
    rule: Rule, subject: Subject, units: Sequence[int], awarded: Sequence[int]
) -> tuple[int, list[int], Callable[[], str]] | None:
    """Points before caps, spread over `units`, and how to explain them; None when the effect does not apply."""
    effect = rule.effect
    n_units = max(1, len(subject.lines))
    kind = effect.kind
    if kind == "fixed":
        points = effect.points
        unit_points = _spread(points, _weights(subject, units), units, n_units)

        def describe() -> str:
            text = _plural(points)
            if subject.lines and effect.scope == "lines":
                text += _what(subject, units, effect.scope).replace(" of ", " for ", 1)
            return text

        return points, unit_points, describe
    if kind == "percent_bonus":
        base = [awarded[i] for i in units]
        base_total = sum(base)
        if base_total <= 0:
            return None
        num, den = _ratio(effect.percent)
        points = base_total * num // (den * 100)
        unit_points = _spread(points, base, units, n_units)

        def describe_bonus() -> str:
            percent = format(effect.percent.normalize(), "f")
            return f"{percent}% bonus on {_plural(base_total)}{_what(subject, units, effect.scope)}"

        return points, unit_points, describe_bonus
    currency = subject.currency
    if currency is None:
        return None
    if kind == "rate":
        rate = effect.rates.get(currency)
        multiplier = None
    else:
        rate = subject.base_rate
        multiplier = effect.multiplier if kind == "multiplier" else None
    if rate is None:
        return None
    lines = subject.lines
    amount = sum(lines[i].amount for i in units)
    points = points_at_rate(amount, rate, currency, multiplier)
    unit_points = _spread(points, _weights(subject, units), units, n_units)

    def describe_rate_award() -> str:
        text = f"{describe_rate(rate, currency)} on {format_money(amount, currency)}"
        if multiplier is not None:
            text = f"{format(multiplier.normalize(), 'f')} × {text}"
        return text + _what(subject, units, effect.scope)

    return points, unit_points, describe_rate_award


@dataclass(slots=True)
class _Candidate:
    rule: Rule
    units: list[int]
    points: int
    unit_points: list[int]
    describe: Callable[[], str]
    limit_note: str | None


def _capped(
    rule: Rule,
    raw: tuple[int, list[int], Callable[[], str]],
    units: list[int],
    limits: Limits,
    subject: Subject,
    zone: ZoneInfo,
) -> _Candidate:
    points, unit_points, describe = raw
    note = None
    if rule.caps.per_order is not None and points > rule.caps.per_order:
        points, note = rule.caps.per_order, f"capped at {rule.caps.per_order} points per order"
    if rule.limited:
        room, binding = limits.room(rule, subject.at, zone)
        if room is not None and points > room:
            points, note = room, f"capped by the {binding}: {room} left"
    if points != raw[0]:
        unit_points = allocate(points, unit_points) if raw[0] > 0 else unit_points
    return _Candidate(rule, units, points, unit_points, describe, note)


def evaluate(
    rules: Iterable[Rule],
    subject: Subject,
    limits: Limits,
    zone: ZoneInfo,
    memo: dict[int, list[int]] | None = None,
) -> Evaluation:
    """Play the rules on the subject; see the module docstring for the order of play. `memo` keeps each
    rule's matching units for the next evaluation of the same subject (a simulation plays it twice)."""
    n_units = max(1, len(subject.lines))
    candidates: list[tuple[Rule, list[int]]] = []
    problems: list[Problem] = []
    touched: set[UUID] = set()
    notes: list[str] = []
    if isinstance(rules, tuple):
        local = subject.local_at or subject.at.astimezone(zone)
        rules = _of_weekday(rules, local.weekday())
    for rule in rules:
        try:
            if memo is None:
                units = _matching_units(rule, subject, zone)
            else:
                units = memo.get(id(rule))  # type: ignore[assignment]
                if units is None:
                    units = memo[id(rule)] = _matching_units(rule, subject, zone)
        except Exception as exc:
            problems.append(Problem(rule, f"{type(exc).__name__}: {exc}"))
            continue
        if not units:
            continue
        if rule.limited:
            touched.add(rule.id)
        candidates.append((rule, units))
    candidates.sort(key=lambda c: (-c[0].priority, c[0].effect.kind == "percent_bonus"))
    awarded = [0] * n_units
    all_units = list(range(n_units))
    claimed: set[int] = set()  # lines an exclusive rule has taken from the exclusive rules below it
    awards: list[Award] = []
    index = 0
    # Non-bonus rules, one priority level at a time.
    main = [c for c in candidates if c[0].effect.kind != "percent_bonus"]
    bonuses = [c for c in candidates if c[0].effect.kind == "percent_bonus"]
    while index < len(main):
        priority = main[index][0].priority
        level: list[_Candidate] = []
        while index < len(main) and main[index][0].priority == priority:
            rule, units = main[index]
            index += 1
            if rule.effect.scope == "order":
                units = all_units  # matched by one line or more, it applies to the whole order
            free = [u for u in units if u not in claimed] if rule.exclusive else units
            if not free:
                continue
            raw = _guarded_award(rule, subject, free, awarded, problems)
            if raw is None:
                if rule.effect.kind == "base_rate" and subject.currency is not None:
                    total = format_money(sum(line.amount for line in subject.lines), subject.currency)
                    notes.append(f"No earn rate is set for {subject.currency}: no points on {total}")
                continue
            level.append(_capped(rule, raw, free, limits, subject, zone))
        exclusive = [c for c in level if c.rule.exclusive and c.points > 0]
        winner = max(exclusive, key=lambda c: c.points, default=None)  # max keeps the first of equals
        for candidate in level:
            if candidate.points <= 0 or (candidate.rule.exclusive and candidate is not winner):
                continue
            awards.append(_award(candidate, limits, subject, zone))
            for i, p in enumerate(candidate.unit_points):
                awarded[i] += p
        if winner is not None:
            claimed.update(winner.units)
    base_awarded = list(awarded)
    for rule, units in bonuses:
        if rule.effect.scope == "order":
            units = all_units
        raw = _guarded_award(rule, subject, units, base_awarded, problems)
        if raw is None:
            continue
        candidate = _capped(rule, raw, units, limits, subject, zone)
        if candidate.points > 0:
            awards.append(_award(candidate, limits, subject, zone))
    return Evaluation(tuple(awards), tuple(problems), frozenset(touched), tuple(dict.fromkeys(notes)))


_WEEKDAYS: dict[int, tuple[tuple[Rule, ...], list[tuple[Rule, ...]]]] = {}


def _of_weekday(rules: tuple[Rule, ...], weekday: int) -> tuple[Rule, ...]:
    """The rules whose days of the week include `weekday` (a rule set is sorted into seven once)."""
    found = _WEEKDAYS.get(id(rules))
    if found is None or found[0] is not rules:
        if len(_WEEKDAYS) > 64:
            _WEEKDAYS.clear()
        days = [
            tuple(r for r in rules if not r.window.days_of_week or day in r.window.days_of_week)
            for day in range(7)
        ]
        found = _WEEKDAYS[id(rules)] = (rules, days)
    return found[1][weekday]


def matching_units(
    rule: Rule, subject: Subject, zone: ZoneInfo, memo: dict[int, list[int]] | None = None
) -> list[int]:
    """The units (line indexes; an event is unit 0) the rule would reward, before caps and other rules:
    empty when the trigger, window or audience does not fit or no line meets the conditions."""
    if memo is not None:
        found = memo.get(id(rule))
        if found is None:
            found = memo[id(rule)] = _matching_units(rule, subject, zone)
        return found
    return _matching_units(rule, subject, zone)


def _guarded_award(
    rule: Rule, subject: Subject, units: Sequence[int], awarded: Sequence[int], problems: list[Problem]
) -> tuple[int, list[int], Callable[[], str]] | None:
    """`_raw_award`, with a failure reported as the rule's problem (and no award) instead of raised."""
    try:
        return _raw_award(rule, subject, units, awarded)
    except Exception as exc:
        problems.append(Problem(rule, f"{type(exc).__name__}: {exc}"))
        return None


def _matching_units(rule: Rule, subject: Subject, zone: ZoneInfo) -> list[int]:
    if rule.trigger != subject.trigger:
        return []
    if rule.gated and not (
        rule.window.contains(subject.at, zone, subject.local_at) and rule.audience.admits(subject.facts)
    ):
        return []
    predicate = rule.condition.predicate
    if not subject.lines:
        return [0] if predicate(subject.facts, None) else []
    if not rule.condition.uses_lines:
        return list(range(len(subject.lines))) if predicate(subject.facts, None) else []
    return rule.condition.match_lines(subject.facts, subject.lines)


def _award(candidate: _Candidate, limits: Limits, subject: Subject, zone: ZoneInfo) -> Award:
    if candidate.rule.limited:
        limits.consume(candidate.rule, candidate.points, subject.at, zone)

    written: list[str] = []  # asked for by the order's explanation and by its ledger entry: write it once

    def describe() -> str:
        if not written:
            text = f"{candidate.rule.label}: {candidate.describe()}"
            if candidate.limit_note:
                text += f" ({candidate.limit_note}; {_plural(candidate.points)} given)"
            written.append(text)
        return written[0]

    return Award(candidate.rule, candidate.points, tuple(candidate.unit_points), describe)


def within_limits(evaluation: Evaluation, limits: Limits, at: datetime, zone: ZoneInfo) -> bool:
    """Whether an evaluation made without limits stands as it is under these: every capped or budgeted
    award fits in what is left. (A capped rule that lost to an exclusive rule could only lose by more.)"""
    for award in evaluation.awards:
        if award.rule.limited:
            room, _ = limits.room(award.rule, at, zone)
            if room is not None and room < award.points:
                return False
    return True


def window_has_ended(window: Window, now: datetime) -> bool:
    return window.ends_at is not None and window.ends_at <= now


def days_between(earlier: datetime | None, later: datetime) -> int | None:
    return None if earlier is None else max(0, (later - earlier).days)
