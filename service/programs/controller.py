from __future__ import annotations

from uuid import UUID

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, SkipValidation

from service.core.auth import Permission, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.secrets import SecretBox
from service.core.work import Run, Work
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
from service.programs.service import Program, RescheduleExpiry


class ProgramController(Controller):
    path = "/v1/program"
    tags = ["program"]

    @get("/", guards=[requires(Permission.READ)], summary="The program's settings")
    async def get_program(self, run: Run[Program]) -> ProgramOut:
        return await run.read(lambda work: service.get(work.conn, work.program_id))

    @patch(
        "/",
        guards=[requires(Permission.ADMINISTER)],
        summary="Change earn rates, return window, expiry, point value, timezone",
        description=f"Only the fields given change. `points_expire_after_days`: {EXPIRY_RULE}",
    )
    async def update_program(
        self,
        data: JSONBody[ProgramPatch],
        run: Run[Program],
        reschedule_expiry: NamedDependency[SkipValidation[RescheduleExpiry]],
    ) -> ProgramUpdated:
        return await run.transaction(
            lambda work: service.update(
                work.conn,
                work.program_id,
                data,
                work.now,
                reschedule_expiry=reschedule_expiry,
                actor=work.actor,
            )
        )


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api keys"]
    guards = [requires(Permission.ADMINISTER)]

    @post("/", summary="Create an API key (its plaintext is shown only in this response)")
    async def create_key(
        self,
        data: JSONBody[ApiKeyCreate],
        run: Run[Program],
        secret_box: NamedDependency[SecretBox],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[ApiKeyCreated]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create_key(work.conn, work.program_id, data.name, data.scope, work.now),
            sealed_with=secret_box,  # the answer holds the key: a replay shows it again, so it is kept sealed
        )

    @get("/", summary="List the program's API keys (never their secrets)")
    async def list_keys(self, run: Run[Program]) -> ApiKeyList:
        async def keys(work: Work[None]) -> ApiKeyList:
            return ApiKeyList(items=await service.list_keys(work.conn, work.program_id))

        return await run.read(keys)

    @delete("/{key_id:str}", status_code=200, summary="Revoke an API key")
    async def revoke_key(self, key_id: FromPath[UUID], run: Run[Program]) -> ApiKeyOut:
        return await run.transaction(
            lambda work: service.revoke_key(work.conn, work.program_id, key_id, work.now)
        )
