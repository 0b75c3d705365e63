"""What a rule would have cost: a period's real orders played with and without it; writes nothing (the
earning pipeline's simulation reads the orders and calls `replay`).

Both runs start the period with empty caps and full budgets, and play the orders oldest first, so caps
and budgets bind as they would have. Refunds are not replayed: an order earns on what it was placed for.
"""

from __future__ import annotations

import contextlib
import gc
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID
from zoneinfo import ZoneInfo

from service.rules import domain


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
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
