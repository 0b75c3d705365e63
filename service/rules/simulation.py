"""What a rule would have cost: replay a period's real orders with and without it; writes nothing.

Both runs start the period with empty caps and full budgets, and play the orders oldest first, so caps
and budgets bind as they would have. Refunds are not replayed: an order earns on what it was placed for.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from uuid import UUID
from zoneinfo import ZoneInfo

from service.core.db import Connection
from service.core.errors import InvalidInput
from service.orders import service as orders
from service.programs.service import Program
from service.rules import domain
from service.rules import service as rules
from service.rules.schemas import AffectedCustomer, SimulationIn, SimulationOut

MAX_PERIOD_DAYS = 366


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while a replay makes its few hundred thousand objects (none of
    them in a cycle): its full passes over them cost a quarter of the replay's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(slots=True)
class Replay:
    extra_points: int = 0
    evaluated: int = 0  # orders evaluated in full (the others cannot differ)
    per_customer: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    problems: dict[str, None] = field(default_factory=dict)


def _points_by_rule(evaluation: domain.Evaluation) -> dict[UUID, int]:
    return {a.rule.id: a.points for a in evaluation.awards if a.rule.limited}


def _may_apply(
    rules: list[domain.Rule], subject: domain.Subject, zone: ZoneInfo, memo: dict[int, list[int]]
) -> bool:
    for rule in rules:
        try:
            if domain.matching_units(rule, subject, zone, memo):
                return True
        except Exception:
            return True  # it fails at run time: evaluate in full, where the failure is reported
    return False


def replay(
    subjects: list[tuple[str, domain.Subject]],
    before: tuple[domain.Rule, ...],
    after: tuple[domain.Rule, ...],
    zone: ZoneInfo,
) -> Replay:
    """Play every order through both rule sets, oldest first, each run with its own caps and budgets.

    Only what can differ is evaluated in full. An order that none of the changed rules (in one set and
    not the other) would touch earns the same in both runs, given the same caps and budgets; so it is
    skipped, or — when a capped or budgeted rule applies to it and its customer matters (they have an
    order the changed rules touch, or a budgeted rule applies to them) — evaluated once, and its use of
    caps and budgets copied to the other run while those have not come apart between the runs.
    """
    result = Replay()
    limits_before, limits_after = domain.Limits(), domain.Limits()
    before_ids = {(r.id, r.version) for r in before}
    after_ids = {(r.id, r.version) for r in after}
    changed = [r for r in before if (r.id, r.version) not in after_ids] + [
        r for r in after if (r.id, r.version) not in before_ids
    ]
    limited = [r for r in after if r.limited and (r.id, r.version) in before_ids]
    budgeted = [r for r in limited if r.budget_points is not None]
    # Pass 1: which orders the changed rules touch, and whose cap history matters.
    memos: list[dict[int, list[int]]] = [{} for _ in subjects]  # each order's rule matches, computed once
    touched_by_change = [
        _may_apply(changed, subject, zone, memo) for (_, subject), memo in zip(subjects, memos, strict=True)
    ]
    tracked = {
        customer
        for (customer, subject), hit, memo in zip(subjects, touched_by_change, memos, strict=True)
        if hit or (budgeted and _may_apply(budgeted, subject, zone, memo))
    }
    diverged: set[UUID] = set()  # rules whose cap or budget use differs between the runs
    for (customer, subject), hit, memo in zip(subjects, touched_by_change, memos, strict=True):
        if hit:
            was = domain.evaluate(before, subject, limits_before, zone, memo)
            will = domain.evaluate(after, subject, limits_after, zone, memo)
            result.evaluated += 1
        else:
            relevant = limited if customer in tracked else budgeted
            if not relevant or not _may_apply(relevant, subject, zone, memo):
                continue
            was = domain.evaluate(before, subject, limits_before, zone, memo)
            result.evaluated += 1
            if not (was.touched & diverged):
                for award in was.awards:
                    if award.rule.limited:
                        limits_after.consume(award.rule, award.points, subject.at, zone)
                continue
            will = domain.evaluate(after, subject, limits_after, zone, memo)
        used_before, used_after = _points_by_rule(was), _points_by_rule(will)
        diverged.update(
            k for k in used_before.keys() | used_after.keys() if used_before.get(k) != used_after.get(k)
        )
        if was.points != will.points:
            tally = result.per_customer[customer]
            tally[0] += 1
            tally[1] += will.points - was.points
            result.extra_points += will.points - was.points
        for problem in will.problems:
            result.problems.setdefault(f"{problem.rule.label}: {problem.error}")
    return result


async def simulate(
    conn: Connection, program: Program, rule_id: UUID, data: SimulationIn, now: datetime
) -> SimulationOut:
    started = time.perf_counter()
    if data.to <= data.from_:
        raise InvalidInput("`to` must be after `from`", field="to")
    if (data.to - data.from_).days > MAX_PERIOD_DAYS:
        raise InvalidInput(f"simulate at most {MAX_PERIOD_DAYS} days at a time", field="to")
    _, rule = await rules.rules_by_id(conn, program.id, rule_id)
    if rule.trigger != "order":
        raise InvalidInput(
            f"a simulation replays orders; this rule is triggered by {rule.trigger!r} events",
            field="path:rule_id",
        )
    active = await rules.active_set(conn, program, now)
    before = active
    after = (rule,) if data.mode == "replace_all" else (*(r for r in active if r.id != rule.id), rule)
    zone = ZoneInfo(program.timezone)
    with _collector_paused():
        subjects = await orders.replay_subjects(conn, program, data.from_, data.to)
        result = replay(subjects, before, after, zone)
        replayed = len(subjects)
        del subjects
    per_customer = result.per_customer
    extra = result.extra_points
    cost = Fraction(extra * program.point_value_amount, program.point_value_points)
    top = sorted(per_customer.items(), key=lambda item: (-abs(item[1][1]), item[0]))[: data.top]
    return SimulationOut(
        rule_id=rule.id,
        rule_version=rule.version,
        mode=data.mode,
        from_=data.from_,
        to=data.to,
        orders_replayed=replayed,
        orders_evaluated=result.evaluated,
        orders_affected=sum(v[0] for v in per_customer.values()),
        customers_affected=len(per_customer),
        extra_points=extra,
        extra_cost={"amount": round(cost), "currency": program.base_currency},
        top_customers=[
            AffectedCustomer(customer_external_id=k, orders=v[0], extra_points=v[1]) for k, v in top
        ],
        problems=list(result.problems)[:20],
        elapsed_ms=round((time.perf_counter() - started) * 1000),
    )
