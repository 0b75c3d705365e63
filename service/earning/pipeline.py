"""Record an order, a refund or an event, and earn (or reverse) what it is worth — the one path.

Each entry point takes the caller's unit of work (`core.work.Work`: its transaction, the program, the
time) and registers there what must follow a successful commit (the rules' run-time problems, recorded
in a transaction of their own so an order never waits on or fails for that bookkeeping). The steps are explicit calls, in order;
a later feature joins here (a reward code used at checkout, a gift at order time, a referral's first
order), not in the features below.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from service.core.db import Connection
from service.core.errors import InvalidInput
from service.core.fields import MAX_FUTURE
from service.core.work import Work
from service.customers import service as customers
from service.earning import inputs
from service.earning.schemas import (
    OrderCreated,
    QuoteLineOut,
    QuoteOut,
    RefundLineOut,
    RefundOut,
    TierChanged,
)
from service.gifts import service as gifts
from service.ledger import domain as ledger_domain
from service.ledger import service as ledger
from service.ledger.schemas import LedgerEntryOut, entry_out
from service.orders import domain as orders_domain
from service.orders import service as orders
from service.outbox.service import Event, emit
from service.programs.service import Program
from service.recovery import domain as recovery_domain
from service.recovery import service as recovery
from service.rewards import service as rewards
from service.rules import domain as rules_domain
from service.rules import service as rules
from service.rules.conditions import LineFacts
from service.rules.schemas import EventOut
from service.tiers import service as tiers

# What the rules and gift rules read of the customer `c` besides its row, as LATERAL joins that the
# customer's upsert or look-up returns in the same round trip: order stats (orders), the tier (tiers) and
# the gift items waiting for their next parcel (gifts).
CUSTOMER_CONTEXT = (orders.customer_stats_lateral("c.id"), tiers.TIER_LATERAL, gifts.WAITING_LATERAL)


def _record_problems_after(work: Work[Program], evaluation: rules_domain.Evaluation) -> None:
    if evaluation.problems:
        now = work.now

        async def record() -> None:
            await rules.record_problems(evaluation, now)

        work.after_commit(record)


def _gift_problems_after(work: Work[Program], given: gifts.Given) -> None:
    if given.problems:
        problems, now = given.problems, work.now

        async def record() -> None:
            await gifts.record_problems(problems, now)

        work.after_commit(record)


async def _gifts_for(
    work: Work[Program],
    customer: ledger.Customer,
    row: Any,
    trigger: str,
    key: str,
    at: datetime,
    label: str,
) -> gifts.Given:
    """The gift rules an occasion without a parcel triggers (a refund, a complaint, a detractor)."""
    conn, program, now = work.conn, work.program, work.now
    if not await gifts.triggered_by(conn, program, trigger):
        return gifts.Given()
    if row is None:
        row = await customers.get(conn, program.id, customer.external_id, *gifts.CUSTOMER_CONTEXT)
    occasion = gifts.occasion_of(row, trigger, key, at, label=label)
    given = await gifts.decide(conn, program, customer, row, occasion, now)
    _gift_problems_after(work, given)
    return given


async def _customer(
    conn: Connection, program: Program, customer: inputs.CustomerRef, now: datetime
) -> tuple[dict[str, Any], list[Event]]:
    """Create or update the customer (row locked until commit), with what the rules read of them."""
    profile = customers.checked_profile(customer.profile, now, "customer.")
    row, _, events = await customers.upsert(
        conn, program.id, customer.external_id, profile, now, *CUSTOMER_CONTEXT
    )
    return row, events


def _price(cart: inputs.Cart | inputs.Order) -> orders_domain.PricedOrder:
    return orders.price(
        [orders_domain.LineInput(line.sku, line.quantity, line.unit_amount) for line in cart.lines],
        discount_amount=cart.discount_amount,
        shipping_amount=cart.shipping_amount,
        total_amount=cart.total_amount,
        currency=cart.currency,
    )


def _subject(
    program: Program,
    cart: inputs.Cart | inputs.Order,
    placed_at: datetime,
    priced: orders_domain.PricedOrder,
    customer: Any,
) -> rules_domain.Subject:
    return rules.order_subject(
        program,
        currency=cart.currency,
        placed_at=placed_at,
        lines=tuple(
            LineFacts(
                line.sku, given.category, given.name, line.quantity, line.unit_amount, line.eligible_amount
            )
            for line, given in zip(priced.lines, cart.lines, strict=True)
        ),
        subtotal_amount=priced.subtotal_amount,
        eligible_amount=priced.eligible_amount,
        discount_amount=cart.discount_amount,
        shipping_amount=cart.shipping_amount,
        total_amount=cart.total_amount,
        attributes=cart.attributes,
        customer=customer,
    )


def _tier_changed(change: tiers.Lifted | None) -> TierChanged | None:
    if change is None:
        return None
    return TierChanged(
        change="upgrade", from_tier=change.from_tier, to_tier=change.to_tier, reason=change.reason
    )


async def record_order(work: Work[Program], order: inputs.Order) -> OrderCreated:
    """Record the order and credit what the active rules award it (one entry per rule version, one lot);
    the tier may rise. The program loaded for crediting (its row shared-locked)."""
    conn, program, now = work.conn, work.program, work.now
    orders.check(order.currency, order.placed_at, now)
    rewards.check_codes(order.codes)
    priced = _price(order)
    row, events = await _customer(conn, program, order.customer, now)
    customer = ledger.customer_of(row)
    subject = _subject(program, order, order.placed_at, priced, row)
    earned = await rules.evaluate(conn, program, subject, now, customer=customer, write=True)
    evaluation = earned.evaluation
    _record_problems_after(work, evaluation)
    points = orders_domain.with_points(
        priced, evaluation.unit_points(len(order.lines)), evaluation.explanation()
    )
    order_id, recorded = await orders.record(
        conn,
        program_id=program.id,
        customer_id=customer.id,
        customer_external_id=customer.external_id,
        external_id=order.external_id,
        currency=order.currency,
        placed_at=order.placed_at,
        priced=points,
        details=[orders.LineDetails(line.name, line.category) for line in order.lines],
        discount_amount=order.discount_amount,
        shipping_amount=order.shipping_amount,
        total_amount=order.total_amount,
        attributes=order.attributes,
        now=now,
    )
    events.append(orders.created_event(recorded, order.placed_at))
    codes = await rewards.apply_to_order(
        conn,
        program,
        customer,
        order_id,
        rewards.cart_facts(
            customer.external_id,
            order.currency,
            [(line.sku, line.quantity, line.unit_amount) for line in order.lines],
            order.shipping_amount,
        ),
        order.codes,
        now,
    )
    available_at, expires_at = ledger_domain.lot_dates(
        order.placed_at, now, program.pending_days, program.points_expire_after_days
    )
    credited = await rules.credit_awards(
        conn,
        customer,
        evaluation,
        reason=f"order {order.external_id}",
        now=now,
        available_at=available_at,
        expires_at=expires_at,
        order_id=order_id,
    )
    events.extend(credited.events)
    events.extend(earned.events)
    surprises = await gifts.waiting_items(conn, customer, row, order_id)
    given = await gifts.decide(
        conn,
        program,
        customer,
        row,
        gifts.occasion_of(
            row, "order", f"order:{order.external_id}", order.placed_at, (order.total_amount, order.currency)
        ),
        now,
        order=gifts.OrderFacts(
            order_id,
            order.external_id,
            order.placed_at,
            order.total_amount,
            order.currency,
            [(line.sku, line.name, line.quantity, line.quantity * line.unit_amount) for line in order.lines],
            available_at,
            expires_at,
        ),
        ledger_locked=bool(credited.entries),  # crediting took the customer's ledger lock
    )
    _gift_problems_after(work, given)
    surprises.extend(given.surprises)
    events.extend(given.events)
    await emit(conn, program.id, events, now)
    spend = order.total_amount if order.currency == program.base_currency else 0
    lifted = await tiers.after_activity(
        conn, program, row, now, "order", order.external_id, spend=spend, orders=1
    )
    return OrderCreated(
        order=recorded,
        entries=ledger.entry_views(credited, order_external_id=order.external_id)
        + ledger.entry_views(given.entries, order_external_id=order.external_id),
        tier_change=_tier_changed(lifted),
        codes=codes,
        surprises=surprises,
    )


async def quote(work: Work[Program], cart: inputs.Cart) -> QuoteOut:
    """The points this cart would earn now, and why; writes nothing (caps and budgets as they stand)."""
    conn, program, now = work.conn, work.program, work.now
    placed_at = cart.placed_at or now
    orders.check(cart.currency, placed_at, now)
    priced = _price(cart)
    found = await customers.find(conn, program.id, cart.customer.external_id, *CUSTOMER_CONTEXT)
    subject = _subject(program, cart, placed_at, priced, found or {"created_at": now})
    customer = ledger.customer_of(found) if found else None
    evaluation = (
        await rules.evaluate(conn, program, subject, now, customer=customer, write=False)
    ).evaluation
    _record_problems_after(work, evaluation)
    line_points = evaluation.unit_points(len(priced.lines))
    return QuoteOut(
        currency=cart.currency,
        eligible_amount=priced.eligible_amount,
        points=evaluation.points,
        explanation=evaluation.explanation(),
        awards=rules.awards_out(evaluation),
        lines=[
            QuoteLineOut(sku=line.sku, eligible_amount=line.eligible_amount, points=p)
            for line, p in zip(priced.lines, line_points, strict=True)
        ],
    )


def _refund_out(order: dict[str, Any], refund: dict[str, Any], entries: list[LedgerEntryOut]) -> RefundOut:
    return RefundOut(
        external_id=refund["external_id"],
        order_external_id=order["external_id"],
        currency=order["currency"],
        amount=refund["amount"],
        shipping_amount=refund["shipping_amount"],
        points_reversed=refund["points_reversed"],
        debt_recorded=refund["debt_recorded"],
        lines=[RefundLineOut(**line) for line in refund["lines"]],
        created_at=refund["created_at"],
        entries=entries,
    )


async def refund_order(
    work: Work[Program], order_external_id: str, refund: inputs.Refund
) -> tuple[RefundOut, bool]:
    """Refund lines or an amount; reverse exactly the points the refunded part earned (what was spent
    already becomes a debt). The same refund again answers the first one (second value False)."""
    conn, program, now = work.conn, work.program, work.now
    recorded = await orders.record_refund(
        conn,
        program.id,
        order_external_id,
        external_id=refund.external_id,
        lines=None if refund.lines is None else [(line.sku, line.quantity) for line in refund.lines],
        amount=refund.amount,
        now=now,
    )
    order, plan = recorded.order, recorded.plan
    if plan is None:
        stored = await ledger.entries_for_refund(conn, recorded.refund["id"])
        return _refund_out(order, recorded.refund, [entry_out(row) for row in stored]), False
    refund_id: UUID = recorded.refund["id"]
    customer = ledger.Customer(program.id, order["customer_id"], order["customer_external_id"])
    summary = orders_domain.refund_summary(plan, order["currency"], by_lines=recorded.by_lines)
    reversed_ = await ledger.reverse(
        conn,
        customer,
        plan.points,
        order_id=order["id"],
        refund_id=refund_id,
        reason=f"refund {refund.external_id} of order {order['external_id']}",
        explanation=f"Refund {refund.external_id} of order {order['external_id']} ({summary}): "
        f"{ledger.plural_points(plan.points)} reversed",
        now=now,
        details={"lines": recorded.refund["lines"]},
    )
    if reversed_.debt_recorded:
        await orders.record_refund_debt(conn, refund_id, reversed_.debt_recorded)
    # Gifts before the codes: a gift's budget row is taken before a reward's row, as on an order.
    label = f"refund {refund.external_id} of order {order['external_id']}"
    given = await _gifts_for(work, customer, None, "refund", f"refund:{refund_id}", now, label)
    if recorded.fully_refunded:  # the codes the order used are cancelled, their points given back
        await rewards.cancel_for_refunded_order(conn, program, order["id"], now)
    events = [
        Event(
            "order.refunded",
            {
                "order": order["external_id"],
                "refund": refund.external_id,
                "customer": customer.external_id,
                "amount": plan.amount,
                "currency": order["currency"],
                "points_reversed": plan.points,
                "debt_recorded": reversed_.debt_recorded,
            },
        ),
        *reversed_.events,
    ]
    events.extend(given.events)
    await emit(conn, program.id, events, now)
    # Answered from what was just written; a replay reads the stored refund.
    written = {**recorded.refund, "debt_recorded": reversed_.debt_recorded}
    entries = ledger.entry_views(reversed_, order["external_id"], refund.external_id)
    return _refund_out(order, written, entries), True


async def record_event(work: Work[Program], event: inputs.Event) -> EventOut:
    """Record a customer event and credit what the rules it triggers award (available at once: an event
    has no return window); the tier may rise. The program loaded for crediting."""
    conn, program, now = work.conn, work.program, work.now
    rules.check_event_type(event.type, program)
    occurred_at = (event.occurred_at or now).astimezone(UTC)
    if occurred_at > now + MAX_FUTURE:
        raise InvalidInput("occurred_at is more than a day in the future", field="occurred_at")
    row, events = await _customer(conn, program, event.customer, now)
    customer = ledger.customer_of(row)
    subject = rules.event_subject(program, event.type, occurred_at, event.properties, row)
    earned = await rules.evaluate(conn, program, subject, now, customer=customer, write=True)
    evaluation = earned.evaluation
    _record_problems_after(work, evaluation)
    available_at, expires_at = ledger_domain.lot_dates(now, now, 0, program.points_expire_after_days)
    credited = await rules.credit_awards(
        conn,
        customer,
        evaluation,
        reason=f"{event.type} event",
        now=now,
        available_at=available_at,
        expires_at=expires_at,
    )
    recorded = await rules.record_event(
        conn,
        program.id,
        customer,
        type_=event.type,
        properties=event.properties,
        occurred_at=occurred_at,
        evaluation=evaluation,
        now=now,
    )
    events.append(recorded.event)
    events.extend(credited.events)
    events.extend(earned.events)
    case_id = None
    if event.type == "complaint":  # a case for whoever picks up the phone, and a gesture
        case_id, opened = await recovery.open_case(
            conn,
            program,
            customer,
            source="complaint",
            source_key=f"complaint:{recorded.id}",
            summary=recovery_domain.complaint_summary(event.properties),
            opened_at=occurred_at,
            order_id=await _complaint_order(conn, program, row, event.properties),
            now=now,
        )
        events.extend(opened)
        given = await _gifts_for(
            work, customer, row, "complaint", f"event:{recorded.id}", occurred_at, "complaint event"
        )
        events.extend(given.events)
    await emit(conn, program.id, events, now)
    if evaluation.awards:  # points earned may lift the customer's tier
        await tiers.after_activity(conn, program, row, now, "event", event.type)
    return EventOut(
        id=recorded.id,
        type=event.type,
        customer_external_id=customer.external_id,
        occurred_at=occurred_at,
        result=recorded.result,
        points=evaluation.points,
        explanation=evaluation.explanation(),
        awards=rules.awards_out(evaluation),
        entries=ledger.entry_views(credited),
        case_id=case_id,
    )


async def _complaint_order(
    conn: Connection, program: Program, row: dict[str, Any], properties: Mapping[str, Any]
) -> UUID | None:
    """The order a complaint names in its `order` property, when it is this customer's."""
    external_id = properties.get("order")
    if not isinstance(external_id, str) or not external_id:
        return None
    found = await orders.find(conn, program.id, external_id)
    return found[0] if found is not None and found[1].customer_external_id == row["external_id"] else None


async def record_detractor(work: Work[Program], customer_external_id: str, feedback_key: str) -> gifts.Given:
    """A detractor's feedback (the feedback feature calls this in its transaction): the gift rules with the
    `detractor` trigger decide, once per feedback (`feedback_key`, e.g. `feedback:<id>`)."""
    conn, program, now = work.conn, work.program, work.now
    row = await customers.get(
        conn, program.id, customer_external_id, *gifts.CUSTOMER_CONTEXT, field="customer"
    )
    customer = ledger.customer_of(row)
    given = await _gifts_for(work, customer, row, "detractor", feedback_key, now, "detractor feedback")
    await emit(conn, program.id, given.events, now)
    return given
