from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, requires
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.work import Run, Work
from service.gifts import service, simulation
from service.gifts.schemas import (
    GiftKeyOut,
    GiftList,
    GiftRuleCreate,
    GiftRuleList,
    GiftRuleOut,
    GiftRulePatch,
    GiftRuleStatus,
    GiftRuleVersionList,
    GiftStatsOut,
    ItemStatus,
    SimulationIn,
    SimulationOut,
)
from service.programs.service import Program

TRIGGERS = (
    "Triggers (`trigger.kind`): `nth_order` (`n`, `repeat` for every nth), `order_over` (`amount`), "
    "`first_order_after_upgrade`, `returning_customer` (`days_away`), `birthday`, `first_order_anniversary`, "
    "`refund`, `complaint` (the built-in event type), `detractor` (fired by feedback), `random_share` "
    "(`share`). Gifts: `points`, `reward` (a code at no cost), `free_shipping` (a code of a free_shipping "
    "reward), `item` (sku, pick note, cost), `note` (the customer's language). Decided by keyed dice "
    "(GET /v1/gift-key), one surprise per customer per `gift_cooldown_days` (program, default 90), "
    "within the rule's money `budget`; a `holdout` share of eligible customers (default 0.1) gets nothing "
    "and is the control group of GET /v1/gift-rules/{id}/stats."
)


class GiftRuleController(Controller):
    path = "/v1/gift-rules"
    tags = ["gifts"]

    @post(
        "/",
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Create a surprise-gift rule (a draft unless `status` is active)",
        description=TRIGGERS,
    )
    async def create_gift_rule(
        self, data: JSONBody[GiftRuleCreate], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[GiftRuleOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create(work.conn, work.program, data, work.now),
            load="program",
        )

    @get("/", guards=[requires(Permission.READ)], summary="The program's gift rules")
    async def list_gift_rules(
        self, run: Run[Program], status: Annotated[GiftRuleStatus | None, QueryParameter()] = None
    ) -> GiftRuleList:
        async def list_all(work: Work[Program]) -> GiftRuleList:
            return GiftRuleList(items=await service.list_all(work.conn, work.program, status, work.now))

        return await run.transaction(list_all, load="program")

    @get(
        "/{gift_rule_id:str}",
        guards=[requires(Permission.READ)],
        summary="One gift rule: its current version, this period's budget and run-time problems",
    )
    async def get_gift_rule(self, gift_rule_id: FromPath[UUID], run: Run[Program]) -> GiftRuleOut:
        return await run.transaction(
            lambda work: service.get(work.conn, work.program, gift_rule_id, work.now), load="program"
        )

    @patch(
        "/{gift_rule_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Change a gift rule or its status; one that has been active gets a new version",
    )
    async def update_gift_rule(
        self, gift_rule_id: FromPath[UUID], data: JSONBody[GiftRulePatch], run: Run[Program]
    ) -> GiftRuleOut:
        return await run.transaction(
            lambda work: service.update(work.conn, work.program, gift_rule_id, data, work.now), load="program"
        )

    @delete(
        "/{gift_rule_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        status_code=204,
        summary="Delete a gift rule that has never been active",
        opt=problems(409),
    )
    async def delete_gift_rule(self, gift_rule_id: FromPath[UUID], run: Run[Program]) -> None:
        await run.transaction(
            lambda work: service.delete(work.conn, work.program, gift_rule_id), load="program"
        )

    @get(
        "/{gift_rule_id:str}/versions",
        guards=[requires(Permission.READ)],
        summary="Every version of a gift rule, newest first",
    )
    async def gift_rule_versions(
        self, gift_rule_id: FromPath[UUID], run: Run[Program]
    ) -> GiftRuleVersionList:
        async def versions(work: Work[None]) -> GiftRuleVersionList:
            return GiftRuleVersionList(items=await service.versions(work.conn, work.program_id, gift_rule_id))

        return await run.read(versions)

    @post(
        "/{gift_rule_id:str}/simulate",
        guards=[requires(Permission.CONFIGURE)],
        status_code=200,
        summary="Play the gift rule over a past period: how many gifts, hold-outs and what cost",
        description="Writes nothing. Orders, refunds, complaints, birthdays and anniversaries of the period "
        "are decided as they would have been (the same dice), with the cooldown and the budget as they bind "
        "over the period, starting from the gifts given before it.",
    )
    async def simulate_gift_rule(
        self, gift_rule_id: FromPath[UUID], data: JSONBody[SimulationIn], run: Run[Program]
    ) -> SimulationOut:
        return await run.transaction(
            lambda work: simulation.simulate(work.conn, work.program, gift_rule_id, data, work.now),
            load="program",
        )

    @get(
        "/{gift_rule_id:str}/stats",
        guards=[requires(Permission.READ)],
        summary="Granted, cost, budget, and the repeat-purchase rate of recipients against the hold-out",
        description="Within 30, 60 and 90 days of each decision, counting customers whose window has "
        "passed; the difference of the rates with its 95 % confidence interval (Newcombe's hybrid score "
        "method).",
    )
    async def gift_rule_stats(
        self,
        gift_rule_id: FromPath[UUID],
        run: Run[Program],
        version: Annotated[int | None, QueryParameter(ge=1, le=1_000_000)] = None,
    ) -> GiftStatsOut:
        return await run.transaction(
            lambda work: service.stats(work.conn, work.program, gift_rule_id, version, work.now),
            load="program",
        )


class GiftController(Controller):
    path = "/v1/gifts"
    tags = ["gifts"]

    @get(
        "/",
        guards=[requires(Permission.READ)],
        summary="Gifts and hold-outs, newest first (cursor pages): what a parcel carries, what waits",
        description="`order`: the gifts decided on that order and the waiting items its parcel took; "
        "`item_status=waiting`: items the warehouse will ship with a customer's next order.",
    )
    async def list_gifts(
        self,
        run: Run[Program],
        customer: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        order: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        rule_id: Annotated[UUID | None, QueryParameter()] = None,
        outcome: Annotated[Literal["granted", "held_out", "recovery"] | None, QueryParameter()] = None,
        item_status: Annotated[ItemStatus | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> GiftList:
        async def list_gifts(work: Work[Program]) -> GiftList:
            return await service.list_gifts(
                work.conn,
                work.program,
                customer=customer,
                order=order,
                rule_id=rule_id,
                outcome=outcome,
                item_status=item_status,
                cursor=cursor,
                limit=limit,
            )

        return await run.transaction(list_gifts, load="program")


class GiftKeyController(Controller):
    path = "/v1/gift-key"
    tags = ["gifts"]

    @get(
        "/",
        guards=[requires(Permission.ADMINISTER)],
        summary="The program's gift key and how the dice use it (admins: to audit any decision)",
    )
    async def gift_key(self, run: Run[Program]) -> GiftKeyOut:
        async def key(work: Work[Program]) -> GiftKeyOut:
            return service.gift_key(work.program)

        return await run.transaction(key, load="program")
