from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from service.core import db, idempotency
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.idempotency import IdempotencyKeyHeader
from service.core.openapi import problems
from service.orders import service
from service.orders.schemas import OrderCreated, OrderIn, OrderOut, QuoteIn, QuoteOut, RefundIn, RefundOut
from service.programs import service as programs
from service.rules import domain as rules_domain
from service.rules import service as rules


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post("/", guards=[requires("server")], status_code=201, summary="Record an order and earn its points")
    async def create_order(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[OrderIn],
        clock: NamedDependency[Clock],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[OrderCreated]:
        program_id = request.user.program_id
        now = clock.now()
        evaluations: list[rules_domain.Evaluation] = []

        async def operation(conn: db.Connection) -> OrderCreated:
            program = await programs.load(conn, program_id, crediting=True)
            created, evaluation = await service.create_order(conn, program, data, now)
            evaluations.append(evaluation)
            return created

        response = await idempotency.respond(
            request, program_id=program_id, key=idempotency_key, body=data, now=now, operation=operation
        )
        for evaluation in evaluations:
            await rules.record_problems(evaluation, now)
        return response  # type: ignore[return-value]

    @post(
        "/quote",
        guards=[requires("read")],
        status_code=200,
        summary="The points an order would earn now, and why (for a cart); writes nothing",
    )
    async def quote(
        self, request: Request[Principal, Any, Any], data: JSONBody[QuoteIn], clock: NamedDependency[Clock]
    ) -> QuoteOut:
        now = clock.now()
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            out, evaluation = await service.quote(conn, program, data, now)
        await rules.record_problems(evaluation, now)
        return out

    @get(
        "/{external_id:str}", guards=[requires("read")], summary="An order with its lines and refunds so far"
    )
    async def get_order(self, request: Request[Principal, Any, Any], external_id: FromPath[str]) -> OrderOut:
        async with db.connection() as conn:
            return await service.get_order(conn, request.user.program_id, external_id)

    @post(
        "/{external_id:str}/refunds",
        guards=[requires("server")],
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
        self,
        request: Request[Principal, Any, Any],
        external_id: FromPath[str],
        data: JSONBody[RefundIn],
        clock: NamedDependency[Clock],
    ) -> Response[RefundOut]:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            refund, created = await service.refund(conn, program, external_id, data, clock.now())
        return Response(refund, status_code=201 if created else 200)
