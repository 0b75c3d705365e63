"""The earning endpoints: orders, quotes, refunds, events and rule simulations. Each turns its request
body into the pipeline's plain inputs and calls the one entry point."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from service.core.auth import Permission, requires
from service.core.idempotency import IdempotencyKeyHeader, RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.work import Run
from service.customers import service as customers
from service.earning import inputs, pipeline, simulation
from service.earning.schemas import OrderCreated, QuoteOut, RefundOut
from service.orders.schemas import OrderCustomerIn, OrderIn, OrderLineIn, QuoteIn, RefundIn
from service.programs.service import Program
from service.rules.schemas import EventCustomerIn, EventIn, EventOut, SimulationIn, SimulationOut


def _customer(customer: OrderCustomerIn | EventCustomerIn) -> inputs.CustomerRef:
    profile = customers.given_fields(customer)
    profile.pop("external_id")  # the key, not a field to change
    return inputs.CustomerRef(customer.external_id, profile)


def _lines(lines: list[OrderLineIn]) -> tuple[inputs.Line, ...]:
    return tuple(
        inputs.Line(line.sku, line.quantity, line.unit_amount, line.name, line.category) for line in lines
    )


def order_input(data: OrderIn) -> inputs.Order:
    return inputs.Order(
        external_id=data.external_id,
        placed_at=data.placed_at,
        customer=_customer(data.customer),
        currency=data.currency,
        lines=_lines(data.lines),
        total_amount=data.total_amount,
        discount_amount=data.discount_amount,
        shipping_amount=data.shipping_amount,
        attributes=data.attributes,
        codes=tuple(data.codes),
    )


def cart_input(data: QuoteIn) -> inputs.Cart:
    return inputs.Cart(
        customer=_customer(data.customer),
        currency=data.currency,
        lines=_lines(data.lines),
        total_amount=data.total_amount,
        discount_amount=data.discount_amount,
        shipping_amount=data.shipping_amount,
        attributes=data.attributes,
        placed_at=data.placed_at,
    )


def refund_input(data: RefundIn) -> inputs.Refund:
    return inputs.Refund(
        external_id=data.external_id,
        lines=None
        if not isinstance(data.lines, list)
        else tuple(inputs.RefundLine(line.sku, line.quantity) for line in data.lines),
        amount=data.amount if isinstance(data.amount, int) else None,
    )


def event_input(data: EventIn) -> inputs.Event:
    return inputs.Event(
        type=data.type,
        customer=_customer(data.customer),
        properties=data.properties,
        occurred_at=data.occurred_at,
    )


class OrderEarningController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post(
        "/",
        guards=[requires(Permission.RECORD)],
        status_code=201,
        summary="Record an order and earn its points",
    )
    async def create_order(
        self, data: JSONBody[OrderIn], run: Run[Program], idempotency_key: IdempotencyKeyHeader = None
    ) -> Response[OrderCreated]:
        order = order_input(data)
        return await run.idempotent(
            idempotency_key, data, lambda work: pipeline.record_order(work, order), load="crediting"
        )

    @post(
        "/quote",
        guards=[requires(Permission.READ)],
        status_code=200,
        summary="The points an order would earn now, and why (for a cart); writes nothing",
    )
    async def quote(self, data: JSONBody[QuoteIn], run: Run[Program]) -> QuoteOut:
        cart = cart_input(data)
        return await run.transaction(lambda work: pipeline.quote(work, cart), load="program")

    @post(
        "/{external_id:str}/refunds",
        guards=[requires(Permission.RECORD)],
        status_code=201,
        summary="Refund lines or an amount; reverses exactly the points the refunded part earned",
        opt=problems(409),
        responses={
            200: ResponseSpec(
                RefundOut, description="The same refund again: the first one", generate_examples=False
            )
        },
        description="Idempotent by the refund's `external_id`: the same body again answers 200 with the first refund.",
    )
    async def refund_order(
        self, external_id: FromPath[str], data: JSONBody[RefundIn], run: Run[Program]
    ) -> Response[RefundOut]:
        refund = refund_input(data)
        answer, created = await run.transaction(
            lambda work: pipeline.refund_order(work, external_id, refund), load="program"
        )
        return Response(answer, status_code=201 if created else 200)


class EventEarningController(Controller):
    path = "/v1/events"
    tags = ["rules"]

    @post(
        "/",
        guards=[requires(Permission.RECORD)],
        status_code=202,
        summary="Report a customer event (signup, review_written, referral, a custom type...)",
        description="The rules it triggers credit points at once; an event no rule matches is recorded and "
        'answered with `"result": "no rule matched"`. `Idempotency-Key` is required: an event has no id of its '
        "own, so a retry without the key would award twice.",
    )
    async def record_event(
        self, data: JSONBody[EventIn], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[EventOut]:
        event = event_input(data)
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: pipeline.record_event(work, event),
            load="crediting",
            status_code=202,
        )


class SimulationController(Controller):
    path = "/v1/rules"
    tags = ["rules"]

    @post(
        "/{rule_id:str}/simulate",
        guards=[requires(Permission.CONFIGURE)],
        status_code=200,
        summary="Replay a period's orders with this rule added to the active rules (or replacing them)",
        description="Writes nothing. Reports the extra points, the orders and customers affected, the cost "
        "at the program's point value and the customers most affected.",
    )
    async def simulate(
        self, rule_id: FromPath[UUID], data: JSONBody[SimulationIn], run: Run[Program]
    ) -> SimulationOut:
        return await run.transaction(
            lambda work: simulation.simulate(work.conn, work.program, rule_id, data, work.now), load="program"
        )
