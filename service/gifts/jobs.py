"""The daily sweep of gifts without an order: birthdays and first-order anniversaries.

For each program with an active rule of such a trigger, the customers whose day it is (the program's
date) are decided one transaction each, through the same `service.decide` as an order (keys
`birthday:<year>`, `first_order_anniversary:<year>`: a rerun, or a second worker, decides nothing twice).
The occasion is the local midnight of the day, so a rerun that day is the same occasion. What such a gift
gives is announced by message (the `surprise` journey); an item waits for the customer's next order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from uuid import UUID

import structlog

from service.core import db
from service.customers import service as customers
from service.gifts import domain, repository, service
from service.ledger import service as ledger
from service.orders import service as orders
from service.outbox.service import emit
from service.programs import service as programs

log = structlog.get_logger("encore.gifts")

# $1 the program, $2 its date today, $3 its time zone (every parameter is passed, so each is used).
_CANDIDATES = {
    "birthday": customers.birthdays_on("$1", "$2::date") + " AND $3::text IS NOT NULL",
    "first_order_anniversary": orders.first_order_anniversaries_on("$1", "$2::date", "$3::text"),
}


@dataclass(slots=True)
class SweepResult:
    customers: int = 0  # decided
    granted: int = 0
    held_out: int = 0
    problems: int = 0


async def occasions(now: datetime) -> SweepResult:
    result = SweepResult()
    async with db.connection() as conn:
        found = await repository.programs_with_triggers(conn, sorted(domain.SWEEP_TRIGGERS))
    for program_id, triggers in found:
        for trigger in triggers:
            try:
                await _sweep(program_id, trigger, now, result)
            except Exception as exc:  # one program never stops the others'
                log.error("gift_sweep_failed", program_id=str(program_id), trigger=trigger, error=str(exc))
                result.problems += 1
    return result


async def _sweep(program_id: UUID, trigger: str, now: datetime, result: SweepResult) -> None:
    async with db.connection() as conn:
        program = await programs.load(conn, program_id)
        local_today = now.astimezone(program.zone).date()
        ids = await repository.customers_of(
            conn, _CANDIDATES[trigger], program_id, local_today, program.timezone
        )
    at = datetime.combine(local_today, time(), program.zone)
    key = f"{trigger}:{local_today.year}"
    for external_id in ids:
        try:
            async with db.transaction() as conn:
                program = await programs.load(conn, program_id)
                row = await customers.get(conn, program_id, external_id, *service.CUSTOMER_CONTEXT)
                customer = ledger.customer_of(row)
                given = await service.decide(
                    conn, program, customer, row, service.occasion_of(row, trigger, key, at), now
                )
                await emit(conn, program_id, given.events, now)
        except Exception as exc:  # one customer (erased meanwhile, a deadlock) never stops the day's sweep
            log.error("gift_sweep_failed", program_id=str(program_id), trigger=trigger, error=str(exc))
            result.problems += 1
            continue
        await service.record_problems(given.problems, now)
        result.customers += 1
        result.granted += len(given.surprises)
        result.held_out += given.held_out
        result.problems += len(given.problems)
