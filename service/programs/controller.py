from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, SkipValidation

from service.core import db
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.programs import service
from service.programs.schemas import (
    EXPIRY_RULE,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    ProgramOut,
    ProgramPatch,
    ProgramUpdated,
)
from service.programs.service import RescheduleExpiry


class ProgramController(Controller):
    path = "/v1/program"
    tags = ["program"]

    @get("/", guards=[requires("read")], summary="The program's settings")
    async def get_program(self, request: Request[Principal, Any, Any]) -> ProgramOut:
        async with db.connection() as conn:
            return await service.get(conn, request.user.program_id)

    @patch(
        "/",
        guards=[requires("admin")],
        summary="Change earn rates, return window, expiry, point value, timezone",
        description=f"Only the fields given change. `points_expire_after_days`: {EXPIRY_RULE}",
    )
    async def update_program(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[ProgramPatch],
        clock: NamedDependency[Clock],
        reschedule_expiry: NamedDependency[SkipValidation[RescheduleExpiry]],
    ) -> ProgramUpdated:
        async with db.transaction() as conn:
            return await service.update(
                conn,
                request.user.program_id,
                data,
                clock.now(),
                reschedule_expiry=reschedule_expiry,
                actor=f"api key {request.user.key_id}",
            )


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api keys"]
    guards = [requires("admin")]

    @post("/", summary="Create an API key (its plaintext is shown only in this response)")
    async def create_key(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[ApiKeyCreate],
        clock: NamedDependency[Clock],
    ) -> ApiKeyCreated:
        async with db.transaction() as conn:
            return await service.create_key(conn, request.user.program_id, data.name, data.scope, clock.now())

    @get("/", summary="List the program's API keys (never their secrets)")
    async def list_keys(self, request: Request[Principal, Any, Any]) -> ApiKeyList:
        async with db.connection() as conn:
            return ApiKeyList(items=await service.list_keys(conn, request.user.program_id))

    @delete("/{key_id:str}", status_code=200, summary="Revoke an API key")
    async def revoke_key(
        self, request: Request[Principal, Any, Any], key_id: FromPath[UUID], clock: NamedDependency[Clock]
    ) -> ApiKeyOut:
        async with db.transaction() as conn:
            return await service.revoke_key(conn, request.user.program_id, key_id, clock.now())
