"""Orders and refunds: the facts points react to. Each use case runs in the caller's transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core import db
from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.fields import MAX_FUTURE
from service.core.money import is_currency
from service.customers import service as customers
from service.ledger import domain as ledger_domain
from service.ledger import service as ledger
from service.ledger.schemas import LedgerEntryOut, entry_out
from service.orders import domain, repository
from service.orders.schemas import (
    OrderCreated,
    OrderIn,
    OrderLineOut,
    OrderOut,
    QuoteIn,
    QuoteLineOut,
    QuoteOut,
    RefundIn,
    RefundLineOut,
    RefundOut,
)
from service.outbox.service import Event, emit
from service.programs.service import Program
from service.rules import domain as rules_domain
from service.rules import service as rules
from service.rules.conditions import Facts, LineFacts
from service.tiers import service as tiers

NO_ATTRIBUTES: dict[str, Any] = {}  # shared by the replayed orders that have none; never written to


def _order_out(order: dict[str, Any], lines: list[dict[str, Any]]) -> OrderOut:
    order = {**order, "attributes": msgspec.json.decode(order["attributes"])}
    return OrderOut(
        **{k: order[k] for k in OrderOut.__struct_fields__ if k != "lines"},
        lines=[OrderLineOut(**line) for line in lines],
    )


def entries_out(rows: list[dict[str, Any]]) -> list[LedgerEntryOut]:
    return [entry_out(row) for row in rows]


def _check(currency: str, placed_at: datetime, now: datetime) -> None:
    if not is_currency(currency):
        raise InvalidInput(f"{currency!r} is not an ISO 4217 currency", field="currency")
    if placed_at > now + MAX_FUTURE:
        raise InvalidInput("placed_at is more than a day in the future", field="placed_at")


def _price(data: QuoteIn) -> domain.PricedOrder:
    return domain.price_order(
        [domain.LineInput(line.sku, line.quantity, line.unit_amount) for line in data.lines],
        discount_amount=data.discount_amount,
        shipping_amount=data.shipping_amount,
        total_amount=data.total_amount,
        currency=data.currency,
    )


def _subject_of(
    program: Program, data: QuoteIn, placed_at: datetime, priced: domain.PricedOrder, customer: Any
) -> rules_domain.Subject:
    """An order (or a cart) being placed, as the rules see it."""
    return order_subject(
        program,
        currency=data.currency,
        placed_at=placed_at,
        lines=tuple(
            LineFacts(
                line.sku, given.category, given.name, line.quantity, line.unit_amount, line.eligible_amount
            )
            for line, given in zip(priced.lines, data.lines, strict=True)
        ),
        subtotal_amount=priced.subtotal_amount,
        eligible_amount=priced.eligible_amount,
        discount_amount=data.discount_amount,
        shipping_amount=data.shipping_amount,
        total_amount=data.total_amount,
        attributes=data.attributes,
        customer=customer,
    )


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
    attributes: dict[str, Any],
    customer: Any,
    lazy: bool = False,
) -> rules_domain.Subject:
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
        facts = rules.LazyFacts(customer, placed_at, program.base_currency, values)
    else:
        facts = rules.customer_facts(customer, placed_at, program.base_currency) | values
    return rules_domain.Subject(
        "order",
        placed_at,
        Facts(facts, attributes),
        currency,
        lines,
        program.earn_rate(currency),
        placed_at.astimezone(program.zone),
    )


async def create_order(
    conn: Connection, program: Program, data: OrderIn, now: datetime
) -> tuple[OrderCreated, rules_domain.Evaluation]:
    """Record the order and credit what the active rules award it (one entry per rule version)."""
    _check(data.currency, data.placed_at, now)
    priced = _price(data)
    profile = customers.profile_changes(data.customer, now, "customer.")
    profile.pop("external_id", None)
    customer_row, _, events = await customers.upsert(
        conn, program.id, data.customer.external_id, profile, now, *customer_context_laterals()
    )
    customer = customers.ledger_customer(customer_row)
    names = [line.name for line in data.lines]
    categories = [line.category for line in data.lines]
    subject = _subject_of(program, data, data.placed_at, priced, customer_row)
    earned = await rules.evaluate(conn, program, subject, now, customer=customer, write=True)
    evaluation = earned.evaluation
    priced = domain.with_points(priced, evaluation.unit_points(len(priced.lines)), evaluation.explanation())
    order_id = uuid4()
    inserted = await repository.insert_order(
        conn,
        order_id=order_id,
        program_id=program.id,
        customer_id=customer.id,
        external_id=data.external_id,
        currency=data.currency,
        placed_at=data.placed_at,
        priced=priced,
        discount_amount=data.discount_amount,
        shipping_amount=data.shipping_amount,
        total_amount=data.total_amount,
        names=names,
        categories=categories,
        attributes=data.attributes,
        now=now,
    )
    if not inserted:
        existing = await repository.get_order(conn, program.id, data.external_id)
        raise Conflict(
            f"order {data.external_id!r} already exists (placed {existing['placed_at'].isoformat() if existing else '?'})",
            field="external_id",
            extra={"existing_order": f"/v1/orders/{data.external_id}"},
        )
    events.append(
        Event(
            "order.created",
            {
                "order": data.external_id,
                "customer": customer.external_id,
                "currency": data.currency,
                "total_amount": data.total_amount,
                "eligible_amount": priced.eligible_amount,
                "points": priced.points,
                "placed_at": data.placed_at,
            },
        )
    )
    available_at, expires_at = ledger_domain.lot_dates(
        data.placed_at, now, program.pending_days, program.points_expire_after_days
    )
    credited = await rules.credit_awards(
        conn,
        customer,
        evaluation,
        reason=f"order {data.external_id}",
        now=now,
        available_at=available_at,
        expires_at=expires_at,
        order_id=order_id,
    )
    events.extend(credited.events)
    events.extend(earned.events)
    await emit(conn, program.id, events, now)
    spend = data.total_amount if data.currency == program.base_currency else 0
    await tiers.after_activity(
        conn, program, customer_row, now, "order", data.external_id, spend=spend, orders=1
    )
    # Everything the answer shows was just written from these values: no need to read it back.
    order = OrderOut(
        external_id=data.external_id,
        customer_external_id=customer.external_id,
        currency=data.currency,
        placed_at=data.placed_at.astimezone(UTC),
        status="placed",
        subtotal_amount=priced.subtotal_amount,
        discount_amount=data.discount_amount,
        shipping_amount=data.shipping_amount,
        total_amount=data.total_amount,
        eligible_amount=priced.eligible_amount,
        points_earned=priced.points,
        earn_explanation=priced.explanation,
        attributes=data.attributes,
        refunded_amount=0,
        points_reversed=0,
        lines=[
            OrderLineOut(
                sku=line.sku,
                name=given.name,
                category=given.category,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
                line_amount=line.line_amount,
                discount_amount=line.discount_amount,
                eligible_amount=line.eligible_amount,
                points=line.points,
                refunded_quantity=0,
                refunded_amount=0,
                refunded_points=0,
            )
            for line, given in zip(priced.lines, data.lines, strict=True)
        ],
        created_at=now,
    )
    created = OrderCreated(
        order=order, entries=ledger.entry_views(credited, order_external_id=data.external_id)
    )
    return created, evaluation


async def quote(
    conn: Connection, program: Program, data: QuoteIn, now: datetime
) -> tuple[QuoteOut, rules_domain.Evaluation]:
    """The points this cart would earn now, and why; writes nothing (caps and budgets as they stand)."""
    placed_at = data.placed_at or now
    _check(data.currency, placed_at, now)
    priced = _price(data)
    found = await customers.find(conn, program.id, data.customer.external_id, *customer_context_laterals())
    subject = _subject_of(program, data, placed_at, priced, found or {"created_at": now})
    customer = customers.ledger_customer(found) if found else None
    evaluation = (
        await rules.evaluate(conn, program, subject, now, customer=customer, write=False)
    ).evaluation
    line_points = evaluation.unit_points(len(priced.lines))
    out = QuoteOut(
        currency=data.currency,
        eligible_amount=priced.eligible_amount,
        points=evaluation.points,
        explanation=evaluation.explanation(),
        awards=rules.awards_out(evaluation),
        lines=[
            QuoteLineOut(sku=line.sku, eligible_amount=line.eligible_amount, points=p)
            for line, p in zip(priced.lines, line_points, strict=True)
        ],
    )
    return out, evaluation


async def get_order(conn: Connection, program_id: UUID, external_id: str) -> OrderOut:
    order = await repository.get_order(conn, program_id, external_id)
    if order is None:
        raise NotFound(f"no order {external_id!r} in this program", field="path:external_id")
    return _order_out(order, await repository.get_lines(conn, order["id"]))


def _priced_lines(rows: list[dict[str, Any]]) -> list[domain.PricedLine]:
    fields = domain.PricedLine.__dataclass_fields__
    return [domain.PricedLine(**{k: v for k, v in row.items() if k in fields}) for row in rows]


def _refund_hash(data: RefundIn) -> str:
    return hashlib.sha256(msgspec.json.encode(data)).hexdigest()


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


async def refund(
    conn: Connection, program: Program, order_external_id: str, data: RefundIn, now: datetime
) -> tuple[RefundOut, bool]:
    """Refund lines or an amount; reverse exactly the points the refunded part earned.

    The refund's external id makes it idempotent: the same body again returns the first refund
    (second value False), another body under that id is 409.
    """
    has_lines = data.lines is not msgspec.UNSET
    has_amount = data.amount is not msgspec.UNSET
    if has_lines == has_amount:
        raise InvalidInput("give either `lines` or `amount`", field="lines" if not has_lines else "amount")
    order = await repository.get_order(conn, program.id, order_external_id, lock=True)
    if order is None:
        raise NotFound(f"no order {order_external_id!r} in this program", field="path:external_id")
    request_hash = _refund_hash(data)
    existing = await repository.get_refund(conn, order["id"], data.external_id)
    if existing is not None:
        if existing["request_hash"] != request_hash:
            raise Conflict(
                f"refund {data.external_id!r} of this order already exists with different content",
                field="external_id",
            )
        entries = entries_out(await ledger.entries_for_refund(conn, existing["id"]))
        return _refund_out(order, existing, entries), False
    lines = _priced_lines(await repository.get_lines(conn, order["id"]))
    currency = order["currency"]
    if has_lines:
        requested = [(line.sku, line.quantity) for line in data.lines]  # type: ignore[union-attr]
        plan = domain.plan_line_refund(lines, requested, currency)
    else:
        shipping_left = order["shipping_amount"] - order["refunded_shipping_amount"]
        plan = domain.plan_amount_refund(lines, data.amount, shipping_left, currency)  # type: ignore[arg-type]
    refund_id = uuid4()
    refund_lines = [dataclasses.asdict(r) for r in plan.lines]
    await repository.insert_refund(
        conn,
        refund_id=refund_id,
        program_id=program.id,
        order_id=order["id"],
        external_id=data.external_id,
        request_hash=request_hash,
        amount=plan.amount,
        shipping_amount=plan.shipping_amount,
        points=plan.points,
        lines=refund_lines,
        now=now,
    )
    await repository.apply_refund(
        conn,
        order["id"],
        plan.updated,
        plan.amount,
        plan.shipping_amount,
        plan.points,
        domain.fully_refunded(plan.updated),
    )
    customer = ledger.Customer(program.id, order["customer_id"], order["customer_external_id"])
    explanation = (
        f"Refund {data.external_id} of order {order['external_id']} "
        f"({domain.refund_summary(plan, currency, by_lines=has_lines)}): {ledger.plural_points(plan.points)} reversed"
    )
    reversed_ = await ledger.reverse(
        conn,
        customer,
        plan.points,
        order_id=order["id"],
        refund_id=refund_id,
        reason=f"refund {data.external_id} of order {order['external_id']}",
        explanation=explanation,
        now=now,
        details={"lines": refund_lines},
    )
    if reversed_.debt_recorded:
        await repository.record_refund_debt(conn, refund_id, reversed_.debt_recorded)
    events = [
        Event(
            "order.refunded",
            {
                "order": order["external_id"],
                "refund": data.external_id,
                "customer": customer.external_id,
                "amount": plan.amount,
                "currency": currency,
                "points_reversed": plan.points,
                "debt_recorded": reversed_.debt_recorded,
            },
        ),
        *reversed_.events,
    ]
    await emit(conn, program.id, events, now)
    # Answered from what was just written, as create_order does; a replay reads the stored refund.
    written = {
        "external_id": data.external_id,
        "amount": plan.amount,
        "shipping_amount": plan.shipping_amount,
        "points_reversed": plan.points,
        "debt_recorded": reversed_.debt_recorded,
        "lines": refund_lines,
        "created_at": now,
    }
    entries = ledger.entry_views(reversed_, order["external_id"], data.external_id)
    return _refund_out(order, written, entries), True


def customer_stats_lateral(customer_id: str) -> str:
    return repository.customer_stats_lateral(customer_id)


def customer_context_laterals() -> tuple[str, str]:
    """What the rules read of the customer `c` besides its row: order stats and the tier key."""
    return repository.customer_stats_lateral("c.id"), tiers.TIER_KEY_LATERAL


async def replay_subjects(
    conn: Connection, program: Program, start: datetime, end: datetime
) -> list[tuple[str, rules_domain.Subject]]:
    """The orders placed in [start, end) as the rules saw them (customer external id, subject), oldest first.
    The lines are read on a second connection at the same time (an order and its lines commit together)."""

    async def read_lines() -> dict[UUID, list[tuple[Any, ...]]]:
        async with db.connection() as other:
            return await repository.replay_lines(other, program.id, start, end)

    orders, lines_by_order = await asyncio.gather(
        repository.replay_orders(conn, program.id, start, end, program.base_currency), read_lines()
    )
    subjects = []
    make_line = LineFacts._make
    for row in orders:
        lines = tuple(make_line(line) for line in lines_by_order.get(row["id"], ()))
        subject = order_subject(
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
