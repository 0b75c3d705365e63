from __future__ import annotations

from litestar import Controller, get
from litestar.params import FromPath

from service.core.auth import Permission, requires
from service.core.work import Run
from service.orders import service
from service.orders.schemas import OrderOut
from service.programs.service import Program


class OrderController(Controller):
    """Reading the facts; recording orders, quotes and refunds is the earning pipeline's
    (service/earning/controller.py, on the same paths)."""

    path = "/v1/orders"
    tags = ["orders"]

    @get(
        "/{external_id:str}",
        guards=[requires(Permission.READ)],
        summary="An order with its lines and refunds so far",
    )
    async def get_order(self, external_id: FromPath[str], run: Run[Program]) -> OrderOut:
        return await run.read(lambda work: service.get_order(work.conn, work.program_id, external_id))
