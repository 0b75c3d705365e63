"""Orders and refunds: the facts points react to — checked, priced, recorded and read back. Each use
case runs in the caller's transaction; what the facts earn is the earning pipeline's business."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.fields import MAX_FUTURE
from service.core.money import is_currency
from service.orders import domain, repository
from service.orders.schemas import OrderLineOut, OrderOut
from service.outbox.service import Event


def order_out(order: dict[str, Any], lines: list[dict[str, Any]]) -> OrderOut:
    order = {**order, "attributes": msgspec.json.decode(order["attributes"])}
    return OrderOut(
        **{k: order[k] for k in OrderOut.__struct_fields__ if k != "lines"},
        lines=[OrderLineOut(**line) for line in lines],
    )


def check(currency: str, placed_at: datetime, now: datetime) -> None:
    if not is_currency(currency):
        raise InvalidInput(f"{currency!r} is not an ISO 4217 currency", field="currency")
    if placed_at > now + MAX_FUTURE:
        raise InvalidInput("placed_at is more than a day in the future", field="placed_at")


def price(
    lines: Sequence[domain.LineInput],
    *,
    discount_amount: int,
    shipping_amount: int,
    total_amount: int,
    currency: str,
) -> domain.PricedOrder:
    return domain.price_order(
        lines,
        discount_amount=discount_amount,
        shipping_amount=shipping_amount,
        total_amount=total_amount,
        currency=currency,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class LineDetails:
    """What a line says besides its price: shown and matched by rules, not priced."""

    name: str | None
    category: str | None


async def record(
    conn: Connection,
    *,
    program_id: UUID,
    customer_id: UUID,
    customer_external_id: str,
    external_id: str,
    currency: str,
    placed_at: datetime,
    priced: domain.PricedOrder,
    details: Sequence[LineDetails],
    discount_amount: int,
    shipping_amount: int,
    total_amount: int,
    attributes: Mapping[str, Any],
    now: datetime,
) -> tuple[UUID, OrderOut]:
    """Write the order and its lines (priced, with their points); 409 if the program has this order."""
    order_id = uuid4()
    inserted = await repository.insert_order(
        conn,
        order_id=order_id,
        program_id=program_id,
        customer_id=customer_id,
        external_id=external_id,
        currency=currency,
        placed_at=placed_at,
        priced=priced,
        discount_amount=discount_amount,
        shipping_amount=shipping_amount,
        total_amount=total_amount,
        names=[d.name for d in details],
        categories=[d.category for d in details],
        attributes=dict(attributes),
        now=now,
    )
    if not inserted:
        existing = await repository.get_order(conn, program_id, external_id)
        raise Conflict(
            f"order {external_id!r} already exists (placed {existing['placed_at'].isoformat() if existing else '?'})",
            field="external_id",
            extra={"existing_order": f"/v1/orders/{external_id}"},
        )
    # Everything the answer shows was just written from these values: no need to read it back.
    written = OrderOut(
        external_id=external_id,
        customer_external_id=customer_external_id,
        currency=currency,
        placed_at=placed_at.astimezone(UTC),
        status="placed",
        subtotal_amount=priced.subtotal_amount,
        discount_amount=discount_amount,
        shipping_amount=shipping_amount,
        total_amount=total_amount,
        eligible_amount=priced.eligible_amount,
        points_earned=priced.points,
        earn_explanation=priced.explanation,
        attributes=dict(attributes),
        refunded_amount=0,
        points_reversed=0,
        lines=_new_lines(priced, details),
        created_at=now,
    )
    return order_id, written


def _new_lines(priced: domain.PricedOrder, details: Sequence[LineDetails]) -> list[OrderLineOut]:
    return [
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
        for line, given in zip(priced.lines, details, strict=True)
    ]


def created_event(order: OrderOut, placed_at: datetime) -> Event:
    """`order.created`, as webhooks and journeys receive it (`placed_at` with the offset it was given)."""
    return Event(
        "order.created",
        {
            "order": order.external_id,
            "customer": order.customer_external_id,
            "currency": order.currency,
            "total_amount": order.total_amount,
            "eligible_amount": order.eligible_amount,
            "points": order.points_earned,
            "placed_at": placed_at,
        },
    )


async def get_order(conn: Connection, program_id: UUID, external_id: str) -> OrderOut:
    order = await repository.get_order(conn, program_id, external_id)
    if order is None:
        raise NotFound(f"no order {external_id!r} in this program", field="path:external_id")
    return order_out(order, await repository.get_lines(conn, order["id"]))


async def find(conn: Connection, program_id: UUID, external_id: str) -> tuple[UUID, OrderOut] | None:
    """The order's id and the order, or None when the program has no such order."""
    order = await repository.get_order(conn, program_id, external_id)
    if order is None:
        return None
    return order["id"], order_out(order, await repository.get_lines(conn, order["id"]))


async def customers_order(
    conn: Connection, program_id: UUID, customer_external_id: str, external_id: str, field: str
) -> UUID:
    """The id of the customer's order `external_id`, which a request names as being about it (a recovery, a
    case, a feedback): 404 unknown, 422 another customer's, naming `field`."""
    found = await find(conn, program_id, external_id)
    if found is None:
        raise NotFound(f"no order {external_id!r} in this program", field=field)
    if found[1].customer_external_id != customer_external_id:
        raise InvalidInput(f"order {external_id!r} is another customer's", field=field)
    return found[0]


def _priced_lines(rows: list[dict[str, Any]]) -> list[domain.PricedLine]:
    fields = domain.PricedLine.__dataclass_fields__
    return [domain.PricedLine(**{k: v for k, v in row.items() if k in fields}) for row in rows]


def refund_fingerprint(external_id: str, lines: Sequence[tuple[str, int]] | None, amount: int | None) -> str:
    """The hash a refund's content is compared by. The bytes are those of the API's request body as it
    was encoded when refunds were first stored (fields in their order, the absent one left out), so a
    refund stored then still matches the same body now."""
    body: dict[str, Any] = {"external_id": external_id}
    if lines is not None:
        body["lines"] = [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
    if amount is not None:
        body["amount"] = amount
    return hashlib.sha256(msgspec.json.encode(body)).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class RefundRecorded:
    """A refund written (`plan` set) or found already written with the same content (`plan` None)."""

    order: dict[str, Any]
    refund: dict[str, Any]  # as stored: external_id, amounts, lines, created_at, ...
    plan: domain.RefundPlan | None
    by_lines: bool
    fully_refunded: bool = False  # this refund left nothing of the order unrefunded


async def record_refund(
    conn: Connection,
    program_id: UUID,
    order_external_id: str,
    *,
    external_id: str,
    lines: Sequence[tuple[str, int]] | None,
    amount: int | None,
    now: datetime,
) -> RefundRecorded:
    """Refund lines or an amount of the order (its row locked until commit). The refund's external id
    makes it idempotent: the same content again finds the first refund, other content under that id is 409."""
    if (lines is None) == (amount is None):
        raise InvalidInput("give either `lines` or `amount`", field="lines" if lines is None else "amount")
    order = await repository.get_order(conn, program_id, order_external_id, lock=True)
    if order is None:
        raise NotFound(f"no order {order_external_id!r} in this program", field="path:external_id")
    request_hash = refund_fingerprint(external_id, lines, amount)
    existing = await repository.get_refund(conn, order["id"], external_id)
    if existing is not None:
        if existing["request_hash"] != request_hash:
            raise Conflict(
                f"refund {external_id!r} of this order already exists with different content",
                field="external_id",
            )
        return RefundRecorded(order, existing, None, lines is not None)
    priced_lines = _priced_lines(await repository.get_lines(conn, order["id"]))
    currency = order["currency"]
    if lines is not None:
        plan = domain.plan_line_refund(priced_lines, lines, currency)
    else:
        assert amount is not None
        shipping_left = order["shipping_amount"] - order["refunded_shipping_amount"]
        plan = domain.plan_amount_refund(priced_lines, amount, shipping_left, currency)
    refund_id = uuid4()
    refund_lines = [dataclasses.asdict(r) for r in plan.lines]
    await repository.insert_refund(
        conn,
        refund_id=refund_id,
        program_id=program_id,
        order_id=order["id"],
        external_id=external_id,
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
        fully_refunded := domain.fully_refunded(plan.updated),
    )
    written = {
        "id": refund_id,
        "external_id": external_id,
        "amount": plan.amount,
        "shipping_amount": plan.shipping_amount,
        "points_reversed": plan.points,
        "debt_recorded": 0,
        "lines": refund_lines,
        "created_at": now,
    }
    return RefundRecorded(order, written, plan, lines is not None, fully_refunded)


async def record_refund_debt(conn: Connection, refund_id: UUID, debt: int) -> None:
    await repository.record_refund_debt(conn, refund_id, debt)


def customer_stats_lateral(customer_id: str, before: str | None = None) -> str:
    """What the orders say of a customer (order count, last order, lifetime spend): published for the
    features that read it with the customer row (`before`: as they were at that moment)."""
    return repository.customer_stats_lateral(customer_id, before)


async def replay_orders(
    conn: Connection,
    program_id: UUID,
    start: datetime,
    end: datetime,
    base_currency: str,
    tier_sql: str,
    upgrade_sql: str = "NULL::timestamptz",
) -> list[Any]:
    """The period's orders with their customers' history before each (`tier_sql`, `upgrade_sql`: see the
    repository)."""
    return await repository.replay_orders(conn, program_id, start, end, base_currency, tier_sql, upgrade_sql)


async def replay_lines(
    conn: Connection, program_id: UUID, start: datetime, end: datetime
) -> dict[UUID, list[tuple[Any, ...]]]:
    return await repository.replay_lines(conn, program_id, start, end)


async def last_refund_at(
    conn: Connection, customer_id: UUID, by: datetime, *, besides: UUID | None = None
) -> datetime | None:
    """When the customer's latest refund recorded by `by` was, refund `besides` not counted (None: none)."""
    return await repository.last_refund_at(conn, customer_id, by, besides)


def first_order_anniversaries_on(program_id: str, local_today: str, timezone: str) -> str:
    """SELECT of the program's customers whose first order was placed on this day of an earlier year
    (`local_today` a date in the program's `timezone`; SQL expressions), as `customer_id`."""
    return f"""
        SELECT f.customer_id FROM (
            SELECT o.customer_id, min(o.placed_at) AS first_at FROM orders o WHERE o.program_id = {program_id}
            GROUP BY o.customer_id) f
        WHERE to_char((f.first_at AT TIME ZONE {timezone})::date, 'MM-DD') = to_char({local_today}, 'MM-DD')
          AND (f.first_at AT TIME ZONE {timezone})::date < {local_today}
    """


# --- for the gift simulation (gifts.simulation) -----------------------------------------------------------


async def refunds_between(conn: Connection, program_id: UUID, start: datetime, end: datetime) -> list[Any]:
    """The refunds recorded in [start, end), oldest first: id, customer_id, created_at."""
    return await repository.refunds_between(conn, program_id, start, end)


async def first_orders(conn: Connection, program_id: UUID, before: datetime) -> list[Any]:
    """Each customer's first order placed before `before`: customer_id, first_at."""
    return await repository.first_orders(conn, program_id, before)
