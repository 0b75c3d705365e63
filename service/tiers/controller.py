from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.work import Run, Work
from service.programs.service import Program
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
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Create a VIP tier",
        description="Qualification is a metric (points earned, spend, orders) over a window (rolling months, "
        "calendar year, lifetime) reaching a threshold; ranks are unique and, on one metric and window, a "
        "higher rank needs a higher threshold (422 otherwise).",
    )
    async def create_tier(
        self, data: JSONBody[TierCreate], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[TierOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create(work.conn, work.program, data, work.now),
            load="program",
        )

    @get(
        "/",
        guards=[requires(Permission.READ)],
        summary="The program's tiers, lowest rank first, with their holders",
    )
    async def list_tiers(self, run: Run[Program]) -> TierList:
        async def tiers(work: Work[None]) -> TierList:
            return TierList(items=await service.list_all(work.conn, work.program_id))

        return await run.read(tiers)

    @get("/{key:str}", guards=[requires(Permission.READ)], summary="One tier")
    async def get_tier(self, key: FromPath[str], run: Run[Program]) -> TierOut:
        return await run.read(lambda work: service.get(work.conn, work.program_id, key))

    @patch(
        "/{key:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Change a tier (its version moves on); holders are re-evaluated by the next run",
    )
    async def update_tier(self, key: FromPath[str], data: JSONBody[TierPatch], run: Run[Program]) -> TierOut:
        return await run.transaction(
            lambda work: service.update(work.conn, work.program, key, data, work.now), load="program"
        )

    @delete(
        "/{key:str}",
        guards=[requires(Permission.CONFIGURE)],
        status_code=200,
        summary="Delete a tier; a tier customers hold needs `move_to` (a tier key, or `none`), else 409",
        opt=problems(409),
    )
    async def delete_tier(
        self,
        key: FromPath[str],
        run: Run[Program],
        move_to: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> TierDeleted:
        return await run.transaction(
            lambda work: service.delete(work.conn, work.program, key, move_to, work.now), load="program"
        )


class CustomerTierController(Controller):
    path = "/v1/customers"
    tags = ["tiers"]

    @get(
        "/{external_id:str}/tier",
        guards=[requires(Permission.READ)],
        summary="The customer's tier, progress to the next one, and what would keep it when at risk",
    )
    async def customer_tier(self, external_id: FromPath[str], run: Run[Program]) -> CustomerTier:
        return await run.read(
            lambda work: service.standing(work.conn, work.program, external_id, work.now), load="program"
        )

    @post(
        "/{external_id:str}/tier",
        guards=[requires(Permission.ADJUST)],
        status_code=200,
        summary="Set a customer's tier by hand (with a reason; until a date or for good)",
        description="A manual tier is a floor: the customer still rises by their own qualification; when it "
        "ends they keep it until warned and downgraded like anyone else. `tier: null` takes the tier away.",
    )
    async def assign_tier(
        self,
        external_id: FromPath[str],
        data: JSONBody[ManualTierIn],
        run: Run[Program],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[CustomerTier]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.assign(work.conn, work.program, external_id, data, work.now),
            load="program",
            status_code=200,
        )

    @get(
        "/{external_id:str}/tier-history",
        guards=[requires(Permission.READ)],
        summary="Every tier change of the customer (and downgrade warnings), newest first, with its cause",
    )
    async def tier_history(
        self,
        external_id: FromPath[str],
        run: Run[Program],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> TierHistory:
        return await run.read(
            lambda work: service.history(work.conn, work.program_id, external_id, cursor, limit)
        )
