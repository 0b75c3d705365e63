"""What a rule would have cost: a period's real orders replayed with and without it (rules' `replay`),
each order seen as the rules saw it when it was placed — the customer's order history before it and the
tier they held then. Writes nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from fractions import Fraction
from typing import Any
from uuid import UUID

import msgspec

from service.core import db
from service.core.db import Connection
from service.core.errors import InvalidInput
from service.orders import service as orders
from service.programs.service import Program
from service.rules import domain as rules_domain
from service.rules import service as rules
from service.rules.conditions import LineFacts
from service.rules.schemas import AffectedCustomer, SimulationIn, SimulationOut
from service.rules.simulation import collector_paused, replay
from service.tiers import service as tiers

MAX_PERIOD_DAYS = 366
NO_ATTRIBUTES: dict[str, Any] = {}  # shared by the replayed orders that have none; never written to


async def replay_subjects(
    conn: Connection, program: Program, start: datetime, end: datetime
) -> list[tuple[str, rules_domain.Subject]]:
    """The orders placed in [start, end) as the rules saw them (customer external id, subject), oldest first.
    The lines are read on a second connection at the same time (an order and its lines commit together)."""

    async def read_lines() -> dict[UUID, list[tuple[Any, ...]]]:
        async with db.connection() as other:
            return await orders.replay_lines(other, program.id, start, end)

    # The tier each customer held when the order was placed, from the tier history (none to look up in
    # a program that never had tiers).
    tier_sql = tiers.tier_key_held_at("h.customer_id", "h.placed_at") if program.tiers_revision else "NULL"
    rows, lines_by_order = await asyncio.gather(
        orders.replay_orders(conn, program.id, start, end, program.base_currency, tier_sql), read_lines()
    )
    subjects = []
    make_line = LineFacts._make
    for row in rows:
        lines = tuple(make_line(line) for line in lines_by_order.get(row["id"], ()))
        subject = rules.order_subject(
            program,
            currency=row["currency"],
            placed_at=row["placed_at"],
            lines=lines,
            subtotal_amount=row["subtotal_amount"],
            eligible_amount=row["eligible_amount"],
            discount_amount=row["discount_amount"],
            shipping_amount=row["shipping_amount"],
            total_amount=row["total_amount"],
            attributes=NO_ATTRIBUTES if row["attributes"] == "{}" else msgspec.json.decode(row["attributes"]),
            customer=row,
            lazy=True,
        )
        subjects.append((row["customer_external_id"], subject))
    return subjects


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
    with collector_paused():
        subjects = await replay_subjects(conn, program, data.from_, data.to)
        result = replay(subjects, before, after, program.zone)
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
