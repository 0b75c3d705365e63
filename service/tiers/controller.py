from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db, idempotency
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.idempotency import IdempotencyKeyHeader
from service.core.openapi import problems
from service.programs import service as programs
from service.tiers import service
from service.tiers.schemas import (
    CustomerTier,
    ManualTierIn,
    TierCreate,
    TierDeleted,
    TierHistory,
    TierList,
    TierOut,
    TierPatch,
)


class TierController(Controller):
    path = "/v1/tiers"
    tags = ["tiers"]

    @post(
        "/",
        guards=[requires("admin")],
        status_code=201,
        summary="Create a VIP tier",
        description="Qualification is a metric (points earned, spend, orders) over a window (rolling months, "
        "calendar year, lifetime) reaching a threshold; ranks are unique and, on one metric and window, a "
        "higher rank needs a higher threshold (422 otherwise).",
    )
    async def create_tier(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[TierCreate],
        clock: NamedDependency[Clock],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[TierOut]:
        program_id = request.user.program_id
        now = clock.now()

        async def operation(conn: db.Connection) -> TierOut:
            return await service.create(conn, await programs.load(conn, program_id), data, now)

        return await idempotency.respond(  # type: ignore[return-value]
            request, program_id=program_id, key=idempotency_key, body=data, now=now, operation=operation
        )

    @get("/", guards=[requires("read")], summary="The program's tiers, lowest rank first, with their holders")
    async def list_tiers(self, request: Request[Principal, Any, Any]) -> TierList:
        async with db.connection() as conn:
            return TierList(items=await service.list_all(conn, request.user.program_id))

    @get("/{key:str}", guards=[requires("read")], summary="One tier")
    async def get_tier(self, request: Request[Principal, Any, Any], key: FromPath[str]) -> TierOut:
        async with db.connection() as conn:
            return await service.get(conn, request.user.program_id, key)

    @patch(
        "/{key:str}",
        guards=[requires("admin")],
        summary="Change a tier (its version moves on); holders are re-evaluated by the next run",
    )
    async def update_tier(
        self,
        request: Request[Principal, Any, Any],
        key: FromPath[str],
        data: JSONBody[TierPatch],
        clock: NamedDependency[Clock],
    ) -> TierOut:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            return await service.update(conn, program, key, data, clock.now())

    @delete(
        "/{key:str}",
        guards=[requires("admin")],
        status_code=200,
        summary="Delete a tier; a tier customers hold needs `move_to` (a tier key, or `none`), else 409",
        opt=problems(409),
    )
    async def delete_tier(
        self,
        request: Request[Principal, Any, Any],
        key: FromPath[str],
        clock: NamedDependency[Clock],
        move_to: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> TierDeleted:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            return await service.delete(conn, program, key, move_to, clock.now())


class CustomerTierController(Controller):
    path = "/v1/customers"
    tags = ["tiers"]

    @get(
        "/{external_id:str}/tier",
        guards=[requires("read")],
        summary="The customer's tier, progress to the next one, and what would keep it when at risk",
    )
    async def customer_tier(
        self, request: Request[Principal, Any, Any], external_id: FromPath[str], clock: NamedDependency[Clock]
    ) -> CustomerTier:
        async with db.connection() as conn:
            program = await programs.load(conn, request.user.program_id)
            return await service.standing(conn, program, external_id, clock.now())

    @post(
        "/{external_id:str}/tier",
        guards=[requires("admin")],
        status_code=200,
        summary="Set a customer's tier by hand (with a reason; until a date or for good)",
        description="A manual tier is a floor: the customer still rises by their own qualification; when it "
        "ends they keep it until warned and downgraded like anyone else. `tier: null` takes the tier away.",
    )
    async def assign_tier(
        self,
        request: Request[Principal, Any, Any],
        external_id: FromPath[str],
        data: JSONBody[ManualTierIn],
        clock: NamedDependency[Clock],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[CustomerTier]:
        program_id = request.user.program_id
        now = clock.now()

        async def operation(conn: db.Connection) -> CustomerTier:
            return await service.assign(conn, await programs.load(conn, program_id), external_id, data, now)

        return await idempotency.respond(  # type: ignore[return-value]
            request,
            program_id=program_id,
            key=idempotency_key,
            body=data,
            now=now,
            operation=operation,
            status_code=200,
        )

    @get(
        "/{external_id:str}/tier-history",
        guards=[requires("read")],
        summary="Every tier change of the customer (and downgrade warnings), newest first, with its cause",
    )
    async def tier_history(
        self,
        request: Request[Principal, Any, Any],
        external_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> TierHistory:
        async with db.connection() as conn:
            return await service.history(conn, request.user.program_id, external_id, cursor, limit)
