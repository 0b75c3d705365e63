from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, Principal, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.work import Run, Work
from service.programs.service import Program
from service.recovery import service
from service.recovery.schemas import (
    CaseCloseIn,
    CaseIn,
    CaseList,
    CaseNoteIn,
    CaseOut,
    CaseStatus,
    RecoveryBudgetOut,
    RecoveryIn,
    RecoveryOut,
    RecoverySettingsIn,
    RecoverySettingsOut,
)

ACTIONS = (
    "One action (`action.kind`): `points`; `reward` (a catalogue reward as a code at no cost); `gift` (what a "
    "gift rule gives, at once); `tier` (the tier held by hand for `months`). Priced in the program's base "
    "currency (points at the point value, a reward at its fixed value, else its points price, a gift rule at its price, a "
    "tier at the settings' `tier_month_values` per month) and spent from this month's recovery budget, the "
    "program's and (when set) the agent's: 409 `recovery-over-budget` with what is left, nothing changed. "
    "Explained on the customer's ledger (`Recovery by Mira: parcel lost — 500 points`) and on the case's "
    "timeline when `case_id` (or the `complaint_id` whose case is open) names one."
)


def agent_of(request: Request[Principal, Any, Any]) -> service.Agent:
    """The key is the agent: budgets per agent are spent in its name only."""
    return service.Agent(request.user.key_id, request.user.name)


class RecoveryController(Controller):
    path = "/v1"
    tags = ["recovery"]

    @post(
        "/customers/{external_id:str}/recovery",
        guards=[requires(Permission.RECOVER)],
        status_code=201,
        summary="Put something right for a customer on the spot, from the recovery budget",
        description=ACTIONS,
        opt=problems(409),
    )
    async def recover(
        self,
        external_id: FromPath[str],
        data: JSONBody[RecoveryIn],
        run: Run[Program],
        request: Request[Principal, Any, Any],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[RecoveryOut]:
        agent = agent_of(request)

        async def recover(work: Work[Program]) -> RecoveryOut:
            return await service.recover(work.conn, work.program, agent, external_id, data, work.now)

        return await run.idempotent(idempotency_key, data, recover, load="crediting")

    @get(
        "/recovery/budget",
        guards=[requires(Permission.READ)],
        summary="This month's recovery budget: used and left, in all and per agent",
    )
    async def recovery_budget(
        self,
        run: Run[Program],
        month: Annotated[
            str | None, QueryParameter(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="2026-12")
        ] = None,
    ) -> RecoveryBudgetOut:
        return await run.read(
            lambda work: service.budget(work.conn, work.program, month, work.now), load="program"
        )

    @get(
        "/recovery/settings",
        guards=[requires(Permission.READ)],
        summary="The monthly recovery budget, the cap per agent and the tiers' prices per month",
    )
    async def recovery_settings(self, run: Run[Program]) -> RecoverySettingsOut:
        return await run.read(lambda work: service.get_settings(work.conn, work.program), load="program")

    @put(
        "/recovery/settings",
        guards=[requires(Permission.ADMINISTER)],
        summary="Set the monthly recovery budget, the cap per agent and the tiers' prices per month",
    )
    async def put_recovery_settings(
        self, data: JSONBody[RecoverySettingsIn], run: Run[Program]
    ) -> RecoverySettingsOut:
        return await run.transaction(
            lambda work: service.put_settings(work.conn, work.program, data, work.now), load="program"
        )


class CaseController(Controller):
    path = "/v1/cases"
    tags = ["cases"]

    @post(
        "/",
        guards=[requires(Permission.RECOVER)],
        status_code=201,
        summary="Open a case on a customer (by an agent: its first action, and theirs)",
        description="Complaint events and detractors' feedback open cases on their own.",
        opt=problems(404),
    )
    async def open_case(
        self,
        data: JSONBody[CaseIn],
        run: Run[Program],
        request: Request[Principal, Any, Any],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[CaseOut]:
        agent = agent_of(request)
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.open_by_agent(work.conn, work.program, agent, data, work.now),
            load="program",
        )

    @get("/", guards=[requires(Permission.READ)], summary="Cases, newest first, with their response times")
    async def list_cases(
        self,
        run: Run[Program],
        status: Annotated[CaseStatus | None, QueryParameter()] = None,
        agent: Annotated[
            str | None,
            QueryParameter(
                min_length=1, max_length=64, description="an agent's key id, or `none`: nobody's yet"
            ),
        ] = None,
        customer: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> CaseList:
        async def cases(work: Work[Program]) -> CaseList:
            return await service.list_cases(
                work.conn,
                work.program,
                status=status,
                agent=agent,
                customer=customer,
                cursor=cursor,
                limit=limit,
            )

        return await run.read(cases, load="program")

    @get("/{case_id:str}", guards=[requires(Permission.READ)], summary="One case with its timeline")
    async def get_case(self, case_id: FromPath[UUID], run: Run[Program]) -> CaseOut:
        return await run.read(lambda work: service.get_case(work.conn, work.program, case_id), load="program")

    @post(
        "/{case_id:str}/notes",
        guards=[requires(Permission.RECOVER)],
        status_code=201,
        summary="Add a note to an open case",
        opt=problems(409),
    )
    async def add_note(
        self,
        case_id: FromPath[UUID],
        data: JSONBody[CaseNoteIn],
        run: Run[Program],
        request: Request[Principal, Any, Any],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[CaseOut]:
        agent = agent_of(request)
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.add_note(work.conn, work.program, agent, case_id, data.text, work.now),
            load="program",
        )

    @post(
        "/{case_id:str}/close",
        guards=[requires(Permission.RECOVER)],
        status_code=200,
        summary="Close a case with a note on how it was put right",
        opt=problems(409),
    )
    async def close_case(
        self,
        case_id: FromPath[UUID],
        data: JSONBody[CaseCloseIn],
        run: Run[Program],
        request: Request[Principal, Any, Any],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[CaseOut]:
        agent = agent_of(request)
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.close(work.conn, work.program, agent, case_id, data.note, work.now),
            load="program",
            status_code=200,
        )
