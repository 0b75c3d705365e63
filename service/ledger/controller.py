from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db, idempotency
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.idempotency import IdempotencyKeyHeader
from service.core.pagination import decode_cursor, encode_cursor
from service.customers import service as customers
from service.ledger import service
from service.ledger.schemas import AdjustmentIn, AdjustmentOut, LedgerPage, entry_out
from service.programs import service as programs


class LedgerController(Controller):
    path = "/v1/customers/{external_id:str}"
    tags = ["ledger"]

    @post(
        "/adjustments",
        guards=[requires("admin")],
        status_code=201,
        summary="Manual goodwill credit or correction debit, with a required reason",
    )
    async def adjust(
        self,
        request: Request[Principal, Any, Any],
        external_id: FromPath[str],
        data: JSONBody[AdjustmentIn],
        clock: NamedDependency[Clock],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[AdjustmentOut]:
        program_id = request.user.program_id
        now = clock.now()

        async def operation(conn: db.Connection) -> AdjustmentOut:
            program = await programs.load(conn, program_id, crediting=True)
            customer = customers.ledger_customer(await customers.get(conn, program_id, external_id))
            actor = data.actor or f"api key {request.user.key_id}"
            return await service.manual_adjustment(conn, program, customer, data, actor, now)

        return await idempotency.respond(  # type: ignore[return-value]
            request, program_id=program_id, key=idempotency_key, body=data, now=now, operation=operation
        )

    @get("/ledger", guards=[requires("read")], summary="The customer's ledger entries, newest first")
    async def ledger(
        self,
        request: Request[Principal, Any, Any],
        external_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> LedgerPage:
        before = decode_cursor(cursor)
        async with db.connection() as conn:
            customer = await customers.get(conn, request.user.program_id, external_id)
            rows = await service.history(conn, request.user.program_id, customer["id"], before, limit + 1)
        items = [entry_out(row) for row in rows[:limit]]
        next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
        return LedgerPage(items=items, next_cursor=next_cursor)
