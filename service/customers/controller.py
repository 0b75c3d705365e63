from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.core import db
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.customers import service, status
from service.customers.schemas import CustomerOut, CustomerProfile, CustomerStatus
from service.outbox.service import emit
from service.programs import service as programs


class CustomerController(Controller):
    path = "/v1/customers"
    tags = ["customers"]

    @put(
        "/{external_id:str}",
        guards=[requires("server")],
        summary="Create or update a customer by the shop's id",
    )
    async def upsert_customer(
        self,
        request: Request[Principal, Any, Any],
        external_id: FromPath[str],
        data: JSONBody[CustomerProfile],
        clock: NamedDependency[Clock],
    ) -> CustomerOut:
        now = clock.now()
        program_id = request.user.program_id
        status.check_external_id(external_id)
        async with db.transaction() as conn:
            row, _, events = await service.upsert(
                conn, program_id, external_id, service.profile_changes(data, now), now
            )
            await emit(conn, program_id, events, now)
        return service.to_out(row)

    @get(
        "/{external_id:str}",
        guards=[requires("read")],
        summary="The customer's whole status in one call: points, pending, expiry, orders, recent entries, tier",
    )
    async def customer_status(
        self, request: Request[Principal, Any, Any], external_id: FromPath[str], clock: NamedDependency[Clock]
    ) -> CustomerStatus:
        async with db.connection() as conn:
            program = await programs.load(conn, request.user.program_id)
            return await status.customer_status(conn, program, external_id, clock.now())
