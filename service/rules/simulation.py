"""What a rule would have cost: replay a period's real orders with and without it; writes nothing.

Both runs start the period with empty caps and full budgets, and play the orders oldest first, so caps
and budgets bind as they would have. Refunds are not replayed: an order earns on what it was placed for.
"""

from __future__ import annotations

import time
from collections import defaultdict
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


def run(
    subjects: list[tuple[str, domain.Subject]],
    before: tuple[domain.Rule, ...],
    after: tuple[domain.Rule, ...],
    zone: ZoneInfo,
) -> tuple[int, int, dict[str, tuple[int, int]], list[str]]:
    """Points before and after, per customer (orders affected, extra points), and the problems seen."""
    limits_before, limits_after = domain.Limits(), domain.Limits()
    points_before = points_after = 0
    per_customer: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    problems: dict[str, None] = {}
    for customer, subject in subjects:
        was = domain.evaluate(before, subject, limits_before, zone)
        will = domain.evaluate(after, subject, limits_after, zone)
        points_before += was.points
        points_after += will.points
        if was.points != will.points:
            tally = per_customer[customer]
            tally[0] += 1
            tally[1] += will.points - was.points
        for problem in will.problems:
            problems.setdefault(f"{problem.rule.label}: {problem.error}")
    return (
        points_before,
        points_after,
        {k: (v[0], v[1]) for k, v in per_customer.items()},
        list(problems)[:20],
    )


async def simulate(
    conn: Connection, program: Program, rule_id: UUID, data: SimulationIn, now: datetime
) -> SimulationOut:
    started = time.perf_counter()
    if data.to <= data.from_:
        raise InvalidInput("`to` must be after `from`", field="to")
    if (data.to - data.from_).days > MAX_PERIOD_DAYS:
        raise InvalidInput(f"simulate at most {MAX_PERIOD_DAYS} days at a time", field="to")
    _, rule = await rules.rules_by_id(conn, program.id, rule_id)
    active = await rules.active_set(conn, program, now)
    before = active
    after = (rule,) if data.mode == "replace_all" else (*(r for r in active if r.id != rule.id), rule)
    zone = ZoneInfo(program.timezone)
    subjects = await orders.replay_subjects(conn, program, data.from_, data.to)
    points_before, points_after, per_customer, problems = run(subjects, before, after, zone)
    extra = points_after - points_before
    cost = Fraction(extra * program.point_value_amount, program.point_value_points)
    top = sorted(per_customer.items(), key=lambda item: (-abs(item[1][1]), item[0]))[: data.top]
    return SimulationOut(
        rule_id=rule.id,
        rule_version=rule.version,
        mode=data.mode,
        from_=data.from_,
        to=data.to,
        orders_replayed=len(subjects),
        orders_affected=sum(v[0] for v in per_customer.values()),
        customers_affected=len(per_customer),
        points_before=points_before,
        points_after=points_after,
        extra_points=extra,
        extra_cost={"amount": round(cost), "currency": program.base_currency},
        top_customers=[
            AffectedCustomer(customer_external_id=k, orders=v[0], extra_points=v[1]) for k, v in top
        ],
        problems=problems,
        elapsed_ms=round((time.perf_counter() - started) * 1000),
    )
