"""Earning rules: CRUD with versions, the cached active set, and earning by rules inside the caller's
transaction (orders, events, quotes). The decisions themselves are in `domain` (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import msgspec
import structlog

from service.core import db
from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.money import is_currency
from service.core.strict_input import patched
from service.ledger import service as ledger
from service.outbox.service import Event
from service.programs import service as programs
from service.programs.service import Program
from service.rules import domain, repository
from service.rules.conditions import Facts, LineFacts, Money, compile_conditions
from service.rules.schemas import (
    AwardOut,
    BaseRateEffect,
    BudgetOut,
    FixedEffect,
    MultiplierEffect,
    PercentBonusEffect,
    RateEffect,
    RuleCreate,
    RuleDefinition,
    RuleOut,
    RulePatch,
    RuleProblems,
    RuleVersionOut,
)
from service.tiers import service as tiers

log = structlog.get_logger("encore.rules")

BUILTIN_EVENT_TYPES = (
    "signup",
    "birthday",
    "review_written",
    "newsletter_signup",
    "social_follow",
    "referral",
    "complaint",  # also a surprise-gift trigger (a gesture after something went wrong)
    "order_delivered",  # its `order` property names the order: surveys sent after delivery count from it
)
MAX_RATE = Decimal(1000)
MAX_MULTIPLIER = Decimal(100)
MAX_PERCENT = Decimal(1000)
DEFAULT_RULE = RuleDefinition(
    name="Base earn rate",
    effect=BaseRateEffect(),
    priority=0,
    stacking="exclusive",
    description="The program's earn rate on every order line. Rules of higher priority that are exclusive "
    "take their lines from it (double points on Sunday); pause it to earn by other rules only.",
)


# --- definitions: check, normalise, compile ---------------------------------------------------------


def _decimal(value: Decimal, low: Decimal, high: Decimal, field: str, what: str) -> None:
    if not value.is_finite() or not low < value <= high:
        raise InvalidInput(f"{what} must be more than {low} and at most {high}", field=field)
    if -value.as_tuple().exponent > 6:  # type: ignore[operator]
        raise InvalidInput(f"{what} has at most 6 decimal places", field=field)


def _effect(definition: RuleDefinition) -> domain.Effect:
    effect = definition.effect
    is_order = definition.trigger == "order"
    if not is_order and not isinstance(effect, FixedEffect | PercentBonusEffect):
        raise InvalidInput(
            "an event has no amount: rules triggered by events give `fixed` points or a `percent_bonus`",
            field="effect.kind",
        )
    if isinstance(effect, BaseRateEffect):
        return domain.Effect("base_rate", effect.scope)
    if isinstance(effect, RateEffect):
        if not effect.rates:
            raise InvalidInput("give a rate for at least one currency", field="effect.rates")
        for code, rate in effect.rates.items():
            if not is_currency(code):
                raise InvalidInput(f"{code!r} is not an ISO 4217 currency", field=f"effect.rates.{code}")
            _decimal(rate, Decimal(0), MAX_RATE, f"effect.rates.{code}", "a rate (points per major unit)")
        return domain.Effect("rate", effect.scope, rates=dict(effect.rates))
    if isinstance(effect, MultiplierEffect):
        _decimal(effect.multiplier, Decimal(0), MAX_MULTIPLIER, "effect.multiplier", "a multiplier")
        return domain.Effect("multiplier", effect.scope, multiplier=effect.multiplier)
    if isinstance(effect, FixedEffect):
        return domain.Effect("fixed", effect.scope, points=effect.points)
    _decimal(effect.percent, Decimal(0), MAX_PERCENT, "effect.percent", "a percentage bonus")
    if definition.stacking != "stack":
        raise InvalidInput(
            "a percentage bonus adds to the other rules: its stacking is `stack`", field="stacking"
        )
    return domain.Effect("percent_bonus", effect.scope, percent=effect.percent)


def _window(definition: RuleDefinition) -> domain.Window:
    w = definition.window
    if w.starts_at is not None and w.ends_at is not None and w.starts_at >= w.ends_at:
        raise InvalidInput("the window ends before it starts", field="window.ends_at")
    if w.hours is not None and w.hours.start == w.hours.end % 24:
        raise InvalidInput(
            "hours start and end at the same hour; leave `hours` out for all day", field="window.hours"
        )
    days = frozenset(domain.DAY_NAMES.index(d) for d in w.days_of_week)
    hours = (w.hours.start, w.hours.end) if w.hours else None
    return domain.Window(w.starts_at, w.ends_at, days, hours)


def is_event_type(name: str, declared: Sequence[str]) -> bool:
    """A built-in event type or one the program declares."""
    return name in BUILTIN_EVENT_TYPES or name in declared


def compile_rule(
    definition: RuleDefinition, rule_id: UUID, version: int, event_types: Sequence[str] | None = None
) -> domain.Rule:
    """A checked definition as the evaluator's Rule; raises InvalidInput naming the field.
    `event_types`: the program's known triggers (None: a stored definition, checked when saved)."""
    trigger = definition.trigger
    if event_types is not None and trigger != "order" and not is_event_type(trigger, event_types):
        raise InvalidInput(
            f"unknown trigger {trigger!r}: use `order`, a built-in event type ({', '.join(BUILTIN_EVENT_TYPES)}) "
            "or declare it in the program's event_types",
            field="trigger",
        )
    caps = definition.caps
    return domain.Rule(
        id=rule_id,
        version=version,
        name=definition.name,
        priority=definition.priority,
        trigger=trigger,
        condition=compile_conditions(definition.conditions, definition.definitions, trigger),
        effect=_effect(definition),
        exclusive=definition.stacking == "exclusive",
        window=_window(definition),
        audience=domain.Audience(frozenset(definition.audience.tiers), definition.audience.customers),
        caps=domain.Caps(
            caps.per_order,
            caps.per_customer_day,
            caps.per_customer_month,
            caps.per_customer_year,
            caps.per_customer_lifetime,
        ),
        budget_points=definition.budget_points,
    )


async def _check_audience(conn: Connection, program: Program, definition: RuleDefinition) -> None:
    known = (await tiers.tier_set(conn, program)).by_key
    for index, key in enumerate(definition.audience.tiers):
        if key not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise InvalidInput(
                f"no tier {key!r} in this program (tiers: {names})", field=f"audience.tiers[{index}]"
            )


def _normalised(definition: RuleDefinition, zone: ZoneInfo) -> RuleDefinition:
    """Times without an offset are in the program's time zone; stored and shown in UTC."""

    def utc(moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        return (moment.replace(tzinfo=zone) if moment.tzinfo is None else moment).astimezone(UTC)

    window = msgspec.structs.replace(
        definition.window, starts_at=utc(definition.window.starts_at), ends_at=utc(definition.window.ends_at)
    )
    return msgspec.structs.replace(definition, window=window, name=definition.name.strip() or definition.name)


def _definition(stored: dict[str, Any]) -> RuleDefinition:
    return msgspec.convert(stored, RuleDefinition)


def _out(row: dict[str, Any]) -> RuleOut:
    definition = _definition(row["definition"])
    budget = None
    if definition.budget_points is not None:
        spent = row["budget_spent"]
        budget = BudgetOut(
            points=definition.budget_points,
            spent=spent,
            remaining=max(0, definition.budget_points - spent),
            exhausted_at=row["exhausted_at"],
        )
    return RuleOut(
        **msgspec.structs.asdict(definition),
        id=row["id"],
        status=row["status"],
        version=row["current_version"],
        is_default=row["is_default"],
        budget=budget,
        problems=RuleProblems(
            count=row["problem_count"], last_error=row["last_problem"], last_at=row["last_problem_at"]
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _check_activation(definition: RuleDefinition, now: datetime) -> None:
    ends_at = definition.window.ends_at
    if ends_at is not None and ends_at <= now:
        raise InvalidInput(
            f"the rule's window ended at {ends_at.isoformat()}; move `window.ends_at` to activate it",
            field="window.ends_at",
        )


# --- CRUD -------------------------------------------------------------------------------------------------


async def ensure_default(conn: Connection, program: Program, now: datetime) -> None:
    """Every program has the default rule (the base earn rate); made on first use, once."""
    if await repository.has_default(conn, program.id):
        return
    inserted = await repository.insert_rule(
        conn,
        rule_id=uuid4(),
        program_id=program.id,
        status="active",
        definition=msgspec.to_builtins(DEFAULT_RULE),
        is_default=True,
        now=now,
    )
    if inserted:
        await programs.bump_rules_revision(conn, program.id)


async def create(conn: Connection, program: Program, data: RuleCreate, now: datetime) -> RuleOut:
    await ensure_default(conn, program, now)
    fields = msgspec.structs.asdict(data)
    status = fields.pop("status")
    definition = _normalised(RuleDefinition(**fields), ZoneInfo(program.timezone))
    rule_id = uuid4()
    await _check_audience(conn, program, definition)
    compile_rule(definition, rule_id, 1, program.event_types)
    if status == "active":
        _check_activation(definition, now)
    await repository.insert_rule(
        conn,
        rule_id=rule_id,
        program_id=program.id,
        status=status,
        definition=msgspec.to_builtins(definition),
        is_default=False,
        now=now,
    )
    if status == "active":
        await programs.bump_rules_revision(conn, program.id)
    row = await repository.get_rule(conn, program.id, rule_id)
    assert row is not None
    return _out(row)


async def _row(conn: Connection, program_id: UUID, rule_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    row = await repository.get_rule(conn, program_id, rule_id, lock=lock)
    if row is None:
        raise NotFound(f"no rule {rule_id} in this program", field="path:rule_id")
    return row


async def get(conn: Connection, program_id: UUID, rule_id: UUID) -> RuleOut:
    return _out(await _row(conn, program_id, rule_id))


async def list_all(conn: Connection, program: Program, status: str | None, now: datetime) -> list[RuleOut]:
    await ensure_default(conn, program, now)
    return [_out(row) for row in await repository.list_rules(conn, program.id, status)]


async def versions(conn: Connection, program_id: UUID, rule_id: UUID) -> list[RuleVersionOut]:
    await _row(conn, program_id, rule_id)
    return [
        RuleVersionOut(
            version=v["version"], definition=_definition(v["definition"]), created_at=v["created_at"]
        )
        for v in await repository.versions(conn, rule_id)
    ]


async def update(
    conn: Connection, program: Program, rule_id: UUID, patch: RulePatch, now: datetime
) -> RuleOut:
    """Change a rule. Once a rule has been active its versions are frozen: a change of what it awards
    makes the next version (entries keep naming the version that awarded them)."""
    row = await _row(conn, program.id, rule_id, lock=True)
    merged, changes = patched(row["definition"], patch, RuleDefinition)
    status = changes.get("status", row["status"])
    definition = _normalised(merged, ZoneInfo(program.timezone))
    if status == "draft" and row["published"]:
        raise InvalidInput("a rule that has been active cannot go back to draft; pause it", field="status")
    changed = msgspec.to_builtins(definition) != row["definition"]
    version = row["current_version"] + (1 if changed and row["published"] else 0)
    await _check_audience(conn, program, definition)
    compile_rule(definition, rule_id, version, program.event_types)
    if status == "active":
        _check_activation(definition, now)
    await repository.update_rule(
        conn,
        rule_id,
        status=status,
        definition=msgspec.to_builtins(definition),
        new_version=changed and row["published"],
        budget_points=definition.budget_points,
        now=now,
    )
    if "active" in (status, row["status"]):
        await programs.bump_rules_revision(conn, program.id)
    return _out(await _row(conn, program.id, rule_id))


async def delete(conn: Connection, program: Program, rule_id: UUID) -> None:
    row = await _row(conn, program.id, rule_id, lock=True)
    if row["is_default"]:
        raise Conflict(
            "the default rule cannot be deleted; pause it to stop base points", field="path:rule_id"
        )
    if row["published"]:
        raise Conflict(
            "this rule has been active and ledger entries may name its versions: archive it instead",
            field="path:rule_id",
        )
    await repository.delete_rule(conn, rule_id)


# --- the active set, cached per process by the program's rules revision ------------------------------------

_active: dict[UUID, tuple[tuple[int, int], tuple[domain.Rule, ...]]] = {}
_ALL_LINES = compile_conditions(None, None, "order")


def tier_rules(tier_set: tiers.TierSet) -> list[domain.Rule]:
    """Each tier's earn multiplier as a rule for its holders: a percentage bonus on the points the other
    rules give an order (× 1.5 = 50% more), explained like any rule and named after the tier."""
    made = []
    for tier in tier_set.tiers:
        if tier.earn_multiplier > 1:
            multiplier = format(tier.earn_multiplier.normalize(), "f")
            made.append(
                domain.Rule(
                    id=tier.id,
                    version=tier.version,
                    name=f"{tier.name} tier × {multiplier}",
                    priority=0,
                    trigger="order",
                    condition=_ALL_LINES,
                    effect=domain.Effect("percent_bonus", "lines", percent=(tier.earn_multiplier - 1) * 100),
                    audience=domain.Audience(frozenset({tier.key})),
                )
            )
    return made


def compile_stored(rows: Sequence[dict[str, Any]]) -> list[domain.Rule]:
    rules = []
    for row in rows:
        try:
            rules.append(compile_rule(_definition(row["definition"]), row["id"], row["current_version"]))
        except (InvalidInput, msgspec.ValidationError) as exc:
            # Checked when saved; only a later change elsewhere could break it. Never fail an order for it.
            log.error("rule_not_compiled", rule_id=str(row["id"]), error=str(exc))
    return rules


async def active_set(conn: Connection, program: Program, now: datetime) -> tuple[domain.Rule, ...]:
    """The active rules and the tiers' multipliers, cached per process until either revision moves."""
    if program.rules_revision == 0:
        await ensure_default(conn, program, now)
        return await _load_active(conn, program)
    revisions = (program.rules_revision, program.tiers_revision)
    cached = _active.get(program.id)
    if cached is not None and cached[0] == revisions:
        return cached[1]
    rules = await _load_active(conn, program)
    _active[program.id] = (revisions, rules)
    return rules


async def _load_active(conn: Connection, program: Program) -> tuple[domain.Rule, ...]:
    rules = compile_stored(await repository.active_rules(conn, program.id))
    if program.tiers_revision:
        rules.extend(tier_rules(await tiers.tier_set(conn, program)))
    return tuple(rules)


async def rules_by_id(
    conn: Connection, program_id: UUID, rule_id: UUID
) -> tuple[dict[str, Any], domain.Rule]:
    row = await _row(conn, program_id, rule_id)
    return row, compile_rule(_definition(row["definition"]), row["id"], row["current_version"])


# --- facts -----------------------------------------------------------------------------------------------


def _birthday_month(customer: Any, at: datetime, base: str) -> int | None:
    birthday = customer.get("birthday")
    return birthday.month if birthday else None


# The customer's side of the facts, from the customer row and its order stats (before this order):
# one function per field, so a simulation computes only the fields its rules read.
CUSTOMER_FACTS: dict[str, Callable[[Any, datetime, str], Any]] = {
    "customer.order_count": lambda c, at, base: c.get("order_count") or 0,
    "customer.days_since_last_order": lambda c, at, base: domain.days_between(c.get("last_order_at"), at),
    "customer.days_since_signup": lambda c, at, base: domain.days_between(c.get("created_at"), at),
    "customer.lifetime_spend": lambda c, at, base: Money(c.get("lifetime_spend") or 0, base),
    "customer.tier": lambda c, at, base: c.get("tier"),
    "customer.birthday_month": _birthday_month,
    "customer.is_birthday_month": lambda c, at, base: _birthday_month(c, at, base) == at.month,
    "customer.is_new": lambda c, at, base: not c.get("order_count"),
    "customer.locale": lambda c, at, base: c.get("locale"),
    "customer.marketing_consent": lambda c, at, base: bool(c.get("marketing_consent")),
}


def customer_facts(customer: Any, at: datetime, base_currency: str) -> dict[str, Any]:
    return {name: fact(customer, at, base_currency) for name, fact in CUSTOMER_FACTS.items()}


class LazyFacts:
    """`values` for a Facts whose customer fields are worked out on first use (a simulation replays
    100,000 orders; most rules read one or two fields). Behaves as the dict `customer_facts` returns."""

    __slots__ = ("_at", "_base", "_customer", "_values")

    def __init__(self, customer: Any, at: datetime, base_currency: str, values: dict[str, Any]) -> None:
        self._customer = customer
        self._at = at
        self._base = base_currency
        self._values = values

    def get(self, name: str, default: Any = None) -> Any:
        values = self._values
        if name in values:
            return values[name]
        fact = CUSTOMER_FACTS.get(name)
        if fact is None:
            return default
        value = values[name] = fact(self._customer, self._at, self._base)
        return value


# --- subjects: what the rules see ------------------------------------------------------------------------


def order_subject(
    program: Program,
    *,
    currency: str,
    placed_at: datetime,
    lines: tuple[LineFacts, ...],
    subtotal_amount: int,
    eligible_amount: int,
    discount_amount: int,
    shipping_amount: int,
    total_amount: int,
    attributes: Mapping[str, Any],
    customer: Any,
    lazy: bool = False,
) -> domain.Subject:
    """What the rules see of an order: its amounts (minor units of `order.currency`), lines and attributes,
    and the customer before it (`lazy`: customer fields worked out when a rule reads them)."""
    values = {
        "order.total": total_amount,
        "order.subtotal": subtotal_amount,
        "order.eligible": eligible_amount,
        "order.discount": discount_amount,
        "order.shipping": shipping_amount,
        "order.item_count": sum(line.quantity for line in lines),
        "order.line_count": len(lines),
        "order.currency": currency,
    }
    facts: Any
    if lazy:
        facts = LazyFacts(customer, placed_at, program.base_currency, values)
    else:
        facts = customer_facts(customer, placed_at, program.base_currency) | values
    return domain.Subject(
        "order",
        placed_at,
        Facts(facts, attributes),
        currency,
        lines,
        program.earn_rate(currency),
        placed_at.astimezone(program.zone),
    )


def event_subject(
    program: Program, type_: str, occurred_at: datetime, properties: Mapping[str, Any], customer: Any
) -> domain.Subject:
    """What the rules see of a customer event: its type and properties, and the customer before it."""
    values = customer_facts(customer, occurred_at, program.base_currency)
    values["event.type"] = type_
    return domain.Subject(type_, occurred_at, Facts(values, properties))


def check_event_type(type_: str, program: Program) -> None:
    if not is_event_type(type_, program.event_types):
        raise InvalidInput(
            f"unknown event type {type_!r}: use one of {', '.join(BUILTIN_EVENT_TYPES)} or declare it "
            "in the program's event_types",
            field="type",
        )


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    id: UUID
    result: Literal["awarded", "no rule matched"]
    event: Event  # `event.recorded`, for the outbox


async def record_event(
    conn: Connection,
    program_id: UUID,
    customer: ledger.Customer,
    *,
    type_: str,
    properties: Mapping[str, Any],
    occurred_at: datetime,
    evaluation: domain.Evaluation,
    now: datetime,
) -> RecordedEvent:
    """Keep the event with what it earned (its result: "awarded" or "no rule matched")."""
    event_id = uuid4()
    result: Literal["awarded", "no rule matched"] = "awarded" if evaluation.awards else "no rule matched"
    await repository.insert_event(
        conn,
        event_id=event_id,
        program_id=program_id,
        customer_id=customer.id,
        type_=type_,
        properties=dict(properties),
        occurred_at=occurred_at,
        points=evaluation.points,
        result=result,
        now=now,
    )
    payload = {
        "event_id": str(event_id),
        "type": type_,
        "customer": customer.external_id,
        "occurred_at": occurred_at,
        "points": evaluation.points,
        "result": result,
    }
    return RecordedEvent(event_id, result, Event("event.recorded", payload))


# --- earning ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Earned:
    evaluation: domain.Evaluation
    events: list[Event]


async def _limits(
    conn: Connection,
    customer_id: UUID | None,
    rules: Sequence[domain.Rule],
    at: datetime,
    zone: ZoneInfo,
    *,
    lock: bool,
) -> domain.Limits:
    capped = [r for r in rules if r.caps.customer_caps()] if customer_id is not None else []
    periods = sorted({domain.period_key(p, at, zone) for r in capped for p, _ in r.caps.customer_caps()})
    budgeted = [r for r in rules if r.budget_points is not None]
    used, spent = await repository.limits(
        conn,
        customer_id,
        [r.id for r in capped],
        periods,
        [r.id for r in budgeted],
        lock=lock,
        ledger_lock_sql=ledger.lock_sql("$1"),
    )
    budget_left = {
        r.id: r.budget_points - spent.get(r.id, 0) for r in budgeted if r.budget_points is not None
    }
    return domain.Limits(used, budget_left)


async def evaluate(
    conn: Connection,
    program: Program,
    subject: domain.Subject,
    now: datetime,
    *,
    customer: ledger.Customer | None,
    write: bool,
) -> Earned:
    """Evaluate the active rules on the subject. With `write`, inside the order's or event's transaction:
    caps are read under the customer's ledger lock and budgets under a row lock, and what the awards use
    of them is written, so concurrent orders never overspend a budget or a cap."""
    rules = await active_set(conn, program, now)
    zone = ZoneInfo(program.timezone)
    evaluation = domain.evaluate(rules, subject, domain.UNKNOWN_LIMITS, zone)
    events: list[Event] = []
    limited = [r for r in rules if r.id in evaluation.touched]
    if limited:
        # With `write`, this also takes the customer's ledger lock before reading their caps.
        limits = await _limits(conn, customer.id if customer else None, limited, subject.at, zone, lock=write)
        if not domain.within_limits(evaluation, limits, subject.at, zone):
            evaluation = domain.evaluate(rules, subject, limits, zone)
        if write and customer is not None:
            events = await _record_use(conn, program, customer, evaluation, subject.at, zone, now)
    for problem in evaluation.problems:
        log.warning(
            "rule_failed", rule_id=str(problem.rule.id), version=problem.rule.version, error=problem.error
        )
    return Earned(evaluation, events)


async def _record_use(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    evaluation: domain.Evaluation,
    at: datetime,
    zone: ZoneInfo,
    now: datetime,
) -> list[Event]:
    usage = [
        (award.rule.id, domain.period_key(p, at, zone), award.points)
        for award in evaluation.awards
        for p, _ in award.rule.caps.customer_caps()
    ]
    budgets = [
        (award.rule.id, award.points, award.rule.budget_points)
        for award in evaluation.awards
        if award.rule.budget_points is not None
    ]
    if not usage and not budgets:
        return []
    exhausted = set(await repository.record_use(conn, customer.id, usage, budgets, now))
    events = [
        Event(
            "rule.budget_exhausted",
            {
                "rule_id": str(award.rule.id),
                "rule_version": award.rule.version,
                "name": award.rule.name,
                "budget_points": award.rule.budget_points,
            },
        )
        for award in evaluation.awards
        if award.rule.id in exhausted
    ]
    if events:
        await programs.bump_rules_revision(conn, program.id)
    return events


async def credit_awards(
    conn: Connection,
    customer: ledger.Customer,
    evaluation: domain.Evaluation,
    *,
    reason: str,
    now: datetime,
    available_at: datetime,
    expires_at: datetime | None,
    order_id: UUID | None = None,
) -> ledger.LedgerResult:
    """One ledger entry per award, each naming the rule version that gave it, in one lot for them all."""
    return await ledger.credit_many(
        conn,
        customer,
        [ledger.Credit(a.points, a.explanation, (a.rule.id, a.rule.version)) for a in evaluation.awards],
        kind="earn",
        reason=reason,
        now=now,
        available_at=available_at,
        expires_at=expires_at,
        topic="points.earned",
        order_id=order_id,
    )


def awards_out(evaluation: domain.Evaluation) -> list[AwardOut]:
    return [
        AwardOut(
            rule_id=a.rule.id,
            rule_version=a.rule.version,
            rule_name=a.rule.name,
            points=a.points,
            explanation=a.explanation,
        )
        for a in evaluation.awards
    ]


async def record_problems(evaluation: domain.Evaluation, now: datetime) -> None:
    """Make run-time failures visible on their rules — in a transaction of its own, after the order's,
    so that an order never waits on (or fails for) this bookkeeping."""
    if not evaluation.problems:
        return
    problems = sorted({(p.rule.id, p.error[:1000]) for p in evaluation.problems})
    async with db.transaction() as conn:
        await repository.record_problems(conn, problems, now)


async def events_between(
    conn: Connection, program_id: UUID, type_: str, start: datetime, end: datetime
) -> list[Any]:
    """The events of one type that occurred in [start, end), oldest first: id, customer_id, occurred_at."""
    return await repository.events_between(conn, program_id, type_, start, end)


async def get_event(conn: Connection, program_id: UUID, event_id: UUID) -> dict[str, Any] | None:
    """A recorded event (id, customer_id, type, occurred_at), or None when the program has none of this id."""
    return await repository.get_event(conn, program_id, event_id)
