from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.pagination import decode_cursor, encode_cursor
from service.core.work import Run, Work
from service.customers import service as customers
from service.ledger import service
from service.ledger.schemas import AdjustmentIn, AdjustmentOut, LedgerPage, entry_out
from service.programs.service import Program


class LedgerController(Controller):
    path = "/v1/customers/{external_id:str}"
    tags = ["ledger"]

    @post(
        "/adjustments",
        guards=[requires(Permission.ADJUST)],
        status_code=201,
        summary="Manual goodwill credit or correction debit, with a required reason",
    )
    async def adjust(
        self,
        external_id: FromPath[str],
        data: JSONBody[AdjustmentIn],
        run: Run[Program],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[AdjustmentOut]:
        async def adjust(work: Work[Program]) -> AdjustmentOut:
            customer = service.customer_of(await customers.get(work.conn, work.program_id, external_id))
            actor = data.actor or work.actor
            return await service.manual_adjustment(work.conn, work.program, customer, data, actor, work.now)

        return await run.idempotent(idempotency_key, data, adjust, load="crediting")

    @get("/ledger", guards=[requires(Permission.READ)], summary="The customer's ledger entries, newest first")
    async def ledger(
        self,
        external_id: FromPath[str],
        run: Run[Program],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> LedgerPage:
        before = decode_cursor(cursor)

        async def page(work: Work[None]) -> LedgerPage:
            customer = await customers.get(work.conn, work.program_id, external_id)
            rows = await service.history(work.conn, work.program_id, customer["id"], before, limit + 1)
            items = [entry_out(row) for row in rows[:limit]]
            next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
            return LedgerPage(items=items, next_cursor=next_cursor)

        return await run.read(page)
