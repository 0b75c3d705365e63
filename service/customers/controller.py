from __future__ import annotations

from litestar import Controller, put
from litestar.params import FromPath, JSONBody

from service.core.auth import Permission, requires
from service.core.work import Run, Work
from service.customers import service
from service.customers.schemas import CustomerOut, CustomerProfile
from service.outbox.service import emit
from service.programs.service import Program


class CustomerController(Controller):
    """Writing profiles; the customer's status (GET on the same path) is service/status/'s."""

    path = "/v1/customers"
    tags = ["customers"]

    @put(
        "/{external_id:str}",
        guards=[requires(Permission.RECORD)],
        summary="Create or update a customer by the shop's id",
    )
    async def upsert_customer(
        self, external_id: FromPath[str], data: JSONBody[CustomerProfile], run: Run[Program]
    ) -> CustomerOut:
        service.check_external_id(external_id)

        async def upsert(work: Work[None]) -> CustomerOut:
            changes = service.profile_changes(data, work.now)
            row, _, events = await service.upsert(work.conn, work.program_id, external_id, changes, work.now)
            await emit(work.conn, work.program_id, events, work.now)
            return service.to_out(row)

        return await run.transaction(upsert)
