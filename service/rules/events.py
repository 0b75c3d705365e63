"""Custom events (signup, review written, referral, or a type the program declares): recorded, and
credited by the rules they trigger, in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from service.core.db import Connection
from service.core.errors import InvalidInput
from service.core.fields import MAX_FUTURE
from service.customers import service as customers
from service.ledger import domain as ledger_domain
from service.ledger import service as ledger
from service.orders import service as orders
from service.outbox.service import Event, emit
from service.programs.service import Program
from service.rules import domain, repository
from service.rules import service as rules
from service.rules.conditions import Facts
from service.rules.schemas import EventIn, EventOut
from service.tiers import service as tiers


async def record(
    conn: Connection, program: Program, data: EventIn, now: datetime
) -> tuple[EventOut, domain.Evaluation]:
    if not rules.is_event_type(data.type, program.event_types):
        raise InvalidInput(
            f"unknown event type {data.type!r}: use one of {', '.join(rules.BUILTIN_EVENT_TYPES)} or declare it "
            "in the program's event_types",
            field="type",
        )
    occurred_at = (data.occurred_at or now).astimezone(UTC)
    if occurred_at > now + MAX_FUTURE:
        raise InvalidInput("occurred_at is more than a day in the future", field="occurred_at")
    profile = customers.profile_changes(data.customer, now, "customer.")
    profile.pop("external_id", None)
    row, _, events = await customers.upsert(
        conn, program.id, data.customer.external_id, profile, now, *orders.customer_context_laterals()
    )
    customer = customers.ledger_customer(row)
    values = rules.customer_facts(row, occurred_at, program.base_currency)
    values["event.type"] = data.type
    subject = domain.Subject(data.type, occurred_at, Facts(values, data.properties))
    earned = await rules.evaluate(conn, program, subject, now, customer=customer, write=True)
    evaluation = earned.evaluation
    event_id = uuid4()
    # No return window for an event: its points are available at once, and expire like any others.
    available_at, expires_at = ledger_domain.lot_dates(now, now, 0, program.points_expire_after_days)
    credited = await rules.credit_awards(
        conn,
        customer,
        evaluation,
        reason=f"{data.type} event",
        now=now,
        available_at=available_at,
        expires_at=expires_at,
    )
    result = "awarded" if evaluation.awards else "no rule matched"
    await repository.insert_event(
        conn,
        event_id=event_id,
        program_id=program.id,
        customer_id=customer.id,
        type_=data.type,
        properties=data.properties,
        occurred_at=occurred_at,
        points=evaluation.points,
        result=result,
        now=now,
    )
    events.append(
        Event(
            "event.recorded",
            {
                "event_id": str(event_id),
                "type": data.type,
                "customer": customer.external_id,
                "occurred_at": occurred_at,
                "points": evaluation.points,
                "result": result,
            },
        )
    )
    events.extend(credited.events)
    events.extend(earned.events)
    await emit(conn, program.id, events, now)
    if evaluation.awards:  # points earned may lift the customer's tier
        await tiers.after_activity(conn, program, row, now, "event", data.type)
    out = EventOut(
        id=event_id,
        type=data.type,
        customer_external_id=customer.external_id,
        occurred_at=occurred_at,
        result=result,  # type: ignore[arg-type]
        points=evaluation.points,
        explanation=evaluation.explanation(),
        awards=rules.awards_out(evaluation),
        entries=ledger.entry_views(credited),
    )
    return out, evaluation
