from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db, idempotency
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.idempotency import IdempotencyKeyHeader, RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.programs import service as programs
from service.rules import domain, events, service, simulation
from service.rules.schemas import (
    EventIn,
    EventOut,
    RuleCreate,
    RuleList,
    RuleOut,
    RulePatch,
    RuleStatus,
    RuleVersionList,
    SimulationIn,
    SimulationOut,
)


class RuleController(Controller):
    path = "/v1/rules"
    tags = ["rules"]
    guards = [requires("admin")]

    @post(
        "/",
        status_code=201,
        summary="Create an earning rule (a draft unless `status` is active)",
        description="Conditions are a JSON tree of all / any / not / ref over comparisons "
        '(`{"field": "line.category", "op": "eq", "value": "Shoes"}`); a malformed tree is answered 422 '
        "with the JSON path of the error.",
    )
    async def create_rule(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[RuleCreate],
        clock: NamedDependency[Clock],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[RuleOut]:
        program_id = request.user.program_id
        now = clock.now()

        async def operation(conn: db.Connection) -> RuleOut:
            return await service.create(conn, await programs.load(conn, program_id), data, now)

        return await idempotency.respond(  # type: ignore[return-value]
            request, program_id=program_id, key=idempotency_key, body=data, now=now, operation=operation
        )

    @get("/", summary="The program's rules, the default rule (base earn rate) included")
    async def list_rules(
        self,
        request: Request[Principal, Any, Any],
        clock: NamedDependency[Clock],
        status: Annotated[RuleStatus | None, QueryParameter()] = None,
    ) -> RuleList:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            return RuleList(items=await service.list_all(conn, program, status, clock.now()))

    @get("/{rule_id:str}", summary="One rule: its current version, budget and run-time problems")
    async def get_rule(self, request: Request[Principal, Any, Any], rule_id: FromPath[UUID]) -> RuleOut:
        async with db.connection() as conn:
            return await service.get(conn, request.user.program_id, rule_id)

    @patch(
        "/{rule_id:str}",
        summary="Change a rule or its status; a rule that has been active gets a new version",
    )
    async def update_rule(
        self,
        request: Request[Principal, Any, Any],
        rule_id: FromPath[UUID],
        data: JSONBody[RulePatch],
        clock: NamedDependency[Clock],
    ) -> RuleOut:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            return await service.update(conn, program, rule_id, data, clock.now())

    @delete(
        "/{rule_id:str}",
        status_code=204,
        summary="Delete a rule that has never been active",
        opt=problems(409),
    )
    async def delete_rule(self, request: Request[Principal, Any, Any], rule_id: FromPath[UUID]) -> None:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            await service.delete(conn, program, rule_id)

    @get("/{rule_id:str}/versions", summary="Every version of a rule, newest first")
    async def versions(
        self, request: Request[Principal, Any, Any], rule_id: FromPath[UUID]
    ) -> RuleVersionList:
        async with db.connection() as conn:
            return RuleVersionList(items=await service.versions(conn, request.user.program_id, rule_id))

    @post(
        "/{rule_id:str}/simulate",
        status_code=200,
        summary="Replay a period's orders with this rule added to the active rules (or replacing them)",
        description="Writes nothing. Reports the extra points, the orders and customers affected, the cost "
        "at the program's point value and the customers most affected.",
    )
    async def simulate(
        self,
        request: Request[Principal, Any, Any],
        rule_id: FromPath[UUID],
        data: JSONBody[SimulationIn],
        clock: NamedDependency[Clock],
    ) -> SimulationOut:
        async with db.transaction() as conn:
            program = await programs.load(conn, request.user.program_id)
            return await simulation.simulate(conn, program, rule_id, data, clock.now())


class EventController(Controller):
    path = "/v1/events"
    tags = ["rules"]

    @post(
        "/",
        guards=[requires("server")],
        status_code=202,
        summary="Report a customer event (signup, review_written, referral, a custom type...)",
        description="The rules it triggers credit points at once; an event no rule matches is recorded and "
        'answered with `"result": "no rule matched"`. `Idempotency-Key` is required: an event has no id of its '
        "own, so a retry without the key would award twice.",
    )
    async def record_event(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[EventIn],
        clock: NamedDependency[Clock],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[EventOut]:
        program_id = request.user.program_id
        now = clock.now()
        evaluations: list[domain.Evaluation] = []

        async def operation(conn: db.Connection) -> EventOut:
            program = await programs.load(conn, program_id, crediting=True)
            out, evaluation = await events.record(conn, program, data, now)
            evaluations.append(evaluation)
            return out

        response = await idempotency.respond(
            request,
            program_id=program_id,
            key=idempotency_key,
            body=data,
            now=now,
            operation=operation,
            status_code=202,
        )
        for evaluation in evaluations:
            await service.record_problems(evaluation, now)
        return response  # type: ignore[return-value]
