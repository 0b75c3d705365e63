from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.core import db
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.openapi import problems
from service.outreach import service
from service.outreach.schemas import JourneyIn, JourneyList, JourneyOut, JourneyPatch


class JourneyController(Controller):
    path = "/v1/journeys"
    tags = ["journeys"]

    @get("/", guards=[requires("read")], summary="The program's journeys (the shipped ones start off)")
    async def list_journeys(
        self, request: Request[Principal, Any, Any], clock: NamedDependency[Clock]
    ) -> JourneyList:
        async with db.transaction() as conn:
            return JourneyList(items=await service.list_all(conn, request.user.program_id, clock.now()))

    @post(
        "/",
        guards=[requires("admin")],
        status_code=201,
        summary="Create a journey",
        opt=problems(409),
        description="A trigger, ordered steps (delay after the previous one, message type, optional reward points and "
        "offer) and exit conditions. Only triggers after the journey is turned on enter customers.",
    )
    async def create_journey(
        self, request: Request[Principal, Any, Any], data: JSONBody[JourneyIn], clock: NamedDependency[Clock]
    ) -> JourneyOut:
        async with db.transaction() as conn:
            return await service.create(conn, request.user.program_id, data, clock.now())

    @get("/{key:str}", guards=[requires("read")], summary="One journey with its counts")
    async def get_journey(
        self, request: Request[Principal, Any, Any], key: FromPath[str], clock: NamedDependency[Clock]
    ) -> JourneyOut:
        async with db.transaction() as conn:
            return await service.get(conn, request.user.program_id, key, clock.now())

    @put("/{key:str}", guards=[requires("admin")], summary="Replace a journey (a new version)")
    async def replace_journey(
        self,
        request: Request[Principal, Any, Any],
        key: FromPath[str],
        data: JSONBody[JourneyIn],
        clock: NamedDependency[Clock],
    ) -> JourneyOut:
        async with db.transaction() as conn:
            return await service.replace(conn, request.user.program_id, key, data, clock.now())

    @patch("/{key:str}", guards=[requires("admin")], summary="Turn a journey on or off")
    async def toggle_journey(
        self,
        request: Request[Principal, Any, Any],
        key: FromPath[str],
        data: JSONBody[JourneyPatch],
        clock: NamedDependency[Clock],
    ) -> JourneyOut:
        async with db.transaction() as conn:
            return await service.set_enabled(conn, request.user.program_id, key, data, clock.now())

    @delete(
        "/{key:str}",
        guards=[requires("admin")],
        summary="Delete a journey; customers in it exit",
        opt=problems(409),
    )
    async def delete_journey(
        self, request: Request[Principal, Any, Any], key: FromPath[str], clock: NamedDependency[Clock]
    ) -> None:
        async with db.transaction() as conn:
            await service.delete(conn, request.user.program_id, key, clock.now())
