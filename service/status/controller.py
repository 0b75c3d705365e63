from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath

from service.core.auth import Permission, requires
from service.core.work import Run
from service.programs.service import Program
from service.status import service
from service.status.schemas import CustomerStatus


class CustomerStatusController(Controller):
    path = "/v1/customers"
    tags = ["customers"]

    @get(
        "/{external_id:str}",
        guards=[requires(Permission.READ)],
        summary="The customer's whole status in one call: points, pending, expiry, orders, recent entries, tier",
    )
    async def customer_status(self, external_id: FromPath[str], run: Run[Program]) -> CustomerStatus:
        return await run.read(
            lambda work: service.customer_status(work.conn, work.program, external_id, work.now),
            load="program",
        )
