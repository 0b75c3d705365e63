from __future__ import annotations

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.params import FromPath, JSONBody

from service.core.auth import Permission, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.work import Run, Work
from service.outreach import service
from service.outreach.schemas import JourneyIn, JourneyList, JourneyOut, JourneyPatch
from service.programs.service import Program


class JourneyController(Controller):
    path = "/v1/journeys"
    tags = ["journeys"]

    # GETs in a transaction too: the first read of a program writes its shipped journeys (ensure_defaults).
    @get(
        "/",
        guards=[requires(Permission.READ)],
        summary="The program's journeys (the shipped ones start off)",
    )
    async def list_journeys(self, run: Run[Program]) -> JourneyList:
        async def journeys(work: Work[None]) -> JourneyList:
            return JourneyList(items=await service.list_all(work.conn, work.program_id, work.now))

        return await run.transaction(journeys)

    @post(
        "/",
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Create a journey",
        opt=problems(409),
        description="A trigger, ordered steps (delay after the previous one, message type, optional reward points and "
        "offer) and exit conditions. Only triggers after the journey is turned on enter customers.",
    )
    async def create_journey(
        self, data: JSONBody[JourneyIn], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[JourneyOut]:
        return await run.idempotent(
            idempotency_key, data, lambda work: service.create(work.conn, work.program_id, data, work.now)
        )

    @get("/{key:str}", guards=[requires(Permission.READ)], summary="One journey with its counts")
    async def get_journey(self, key: FromPath[str], run: Run[Program]) -> JourneyOut:
        return await run.transaction(lambda work: service.get(work.conn, work.program_id, key, work.now))

    @put("/{key:str}", guards=[requires(Permission.CONFIGURE)], summary="Replace a journey (a new version)")
    async def replace_journey(
        self, key: FromPath[str], data: JSONBody[JourneyIn], run: Run[Program]
    ) -> JourneyOut:
        return await run.transaction(
            lambda work: service.replace(work.conn, work.program_id, key, data, work.now)
        )

    @patch("/{key:str}", guards=[requires(Permission.CONFIGURE)], summary="Turn a journey on or off")
    async def toggle_journey(
        self, key: FromPath[str], data: JSONBody[JourneyPatch], run: Run[Program]
    ) -> JourneyOut:
        return await run.transaction(
            lambda work: service.set_enabled(work.conn, work.program_id, key, data, work.now)
        )

    @delete(
        "/{key:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Delete a journey; customers in it exit",
        opt=problems(409),
    )
    async def delete_journey(self, key: FromPath[str], run: Run[Program]) -> None:
        await run.transaction(lambda work: service.delete(work.conn, work.program_id, key, work.now))
