from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.work import Run, Work
from service.programs.service import Program
from service.rules import service
from service.rules.schemas import (
    RuleCreate,
    RuleList,
    RuleOut,
    RulePatch,
    RuleStatus,
    RuleVersionList,
)


class RuleController(Controller):
    path = "/v1/rules"
    tags = ["rules"]

    @post(
        "/",
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Create an earning rule (a draft unless `status` is active)",
        description="Conditions are a JSON tree of all / any / not / ref over comparisons "
        '(`{"field": "line.category", "op": "eq", "value": "Shoes"}`); a malformed tree is answered 422 '
        "with the JSON path of the error.",
    )
    async def create_rule(
        self, data: JSONBody[RuleCreate], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[RuleOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create(work.conn, work.program, data, work.now),
            load="program",
        )

    @get(
        "/",
        guards=[requires(Permission.READ)],
        summary="The program's rules, the default rule (base earn rate) included",
    )
    async def list_rules(
        self, run: Run[Program], status: Annotated[RuleStatus | None, QueryParameter()] = None
    ) -> RuleList:
        async def list_all(work: Work[Program]) -> RuleList:
            return RuleList(items=await service.list_all(work.conn, work.program, status, work.now))

        return await run.transaction(list_all, load="program")

    @get(
        "/{rule_id:str}",
        guards=[requires(Permission.READ)],
        summary="One rule: its current version, budget and run-time problems",
    )
    async def get_rule(self, rule_id: FromPath[UUID], run: Run[Program]) -> RuleOut:
        return await run.read(lambda work: service.get(work.conn, work.program_id, rule_id))

    @patch(
        "/{rule_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Change a rule or its status; a rule that has been active gets a new version",
    )
    async def update_rule(
        self, rule_id: FromPath[UUID], data: JSONBody[RulePatch], run: Run[Program]
    ) -> RuleOut:
        return await run.transaction(
            lambda work: service.update(work.conn, work.program, rule_id, data, work.now), load="program"
        )

    @delete(
        "/{rule_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        status_code=204,
        summary="Delete a rule that has never been active",
        opt=problems(409),
    )
    async def delete_rule(self, rule_id: FromPath[UUID], run: Run[Program]) -> None:
        await run.transaction(lambda work: service.delete(work.conn, work.program, rule_id), load="program")

    @get(
        "/{rule_id:str}/versions",
        guards=[requires(Permission.READ)],
        summary="Every version of a rule, newest first",
    )
    async def versions(self, rule_id: FromPath[UUID], run: Run[Program]) -> RuleVersionList:
        async def versions(work: Work[None]) -> RuleVersionList:
            return RuleVersionList(items=await service.versions(work.conn, work.program_id, rule_id))

        return await run.read(versions)
