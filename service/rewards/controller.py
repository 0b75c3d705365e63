"""The rewards endpoints: the catalogue (marketers), a customer's view and redemptions (the shop's
server), codes validated and used at checkout, redemptions listed and cancelled."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, requires
from service.core.idempotency import IdempotencyKeyHeader, RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.strict_input import optional_body
from service.core.work import Run, Work
from service.orders.schemas import QuoteIn
from service.programs.service import Program
from service.rewards import domain, service
from service.rewards.schemas import (
    CancelIn,
    CodeCheckOut,
    CodeUseIn,
    CustomerCatalogue,
    Locale,
    RedemptionIn,
    RedemptionList,
    RedemptionOut,
    RedemptionStatus,
    RewardIn,
    RewardList,
    RewardOut,
    RewardPatch,
    RewardStatus,
    RewardVersionList,
)


def cart_facts(data: QuoteIn) -> domain.CartFacts:
    return service.cart_facts(
        data.customer.external_id,
        data.currency,
        [(line.sku, line.quantity, line.unit_amount) for line in data.lines],
        data.shipping_amount,
    )


class RewardController(Controller):
    path = "/v1/rewards"
    tags = ["rewards"]

    @post(
        "/",
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Add a reward to the catalogue",
        description="A reward's amounts are in a currency of the program; `min_tier` names a tier key.",
    )
    async def create_reward(
        self, data: JSONBody[RewardIn], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[RewardOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create(work.conn, work.program, data, work.now),
            load="program",
        )

    @get("/", guards=[requires(Permission.READ)], summary="The catalogue, oldest first")
    async def list_rewards(
        self, run: Run[Program], status: Annotated[RewardStatus | None, QueryParameter()] = None
    ) -> RewardList:
        async def list_all(work: Work[None]) -> RewardList:
            return RewardList(items=await service.list_all(work.conn, work.program_id, status))

        return await run.read(list_all)

    @get("/{reward_id:str}", guards=[requires(Permission.READ)], summary="One reward")
    async def get_reward(self, reward_id: FromPath[UUID], run: Run[Program]) -> RewardOut:
        return await run.read(lambda work: service.get(work.conn, work.program_id, reward_id))

    @put(
        "/{reward_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Replace a reward's definition; one that has issued codes gets a new version",
        description="Codes already issued keep what they were issued with.",
        opt=problems(409),
    )
    async def replace_reward(
        self, reward_id: FromPath[UUID], data: JSONBody[RewardIn], run: Run[Program]
    ) -> RewardOut:
        return await run.transaction(
            lambda work: service.replace(work.conn, work.program, reward_id, data, work.now), load="program"
        )

    @patch(
        "/{reward_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Pause, resume or archive a reward, or set its stock (codes left to issue)",
        opt=problems(409),
    )
    async def patch_reward(
        self, reward_id: FromPath[UUID], data: JSONBody[RewardPatch], run: Run[Program]
    ) -> RewardOut:
        return await run.transaction(
            lambda work: service.patch(work.conn, work.program_id, reward_id, data, work.now)
        )

    @delete(
        "/{reward_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        status_code=204,
        summary="Delete a reward that has never issued a code (else archive it)",
        opt=problems(409),
    )
    async def delete_reward(self, reward_id: FromPath[UUID], run: Run[Program]) -> None:
        await run.transaction(lambda work: service.delete(work.conn, work.program_id, reward_id))

    @get(
        "/{reward_id:str}/versions", guards=[requires(Permission.READ)], summary="Every version, newest first"
    )
    async def reward_versions(self, reward_id: FromPath[UUID], run: Run[Program]) -> RewardVersionList:
        async def versions(work: Work[None]) -> RewardVersionList:
            return RewardVersionList(items=await service.versions(work.conn, work.program_id, reward_id))

        return await run.read(versions)


class CustomerRewardController(Controller):
    path = "/v1/customers"
    tags = ["rewards"]

    @get(
        "/{external_id:str}/rewards",
        guards=[requires(Permission.READ)],
        summary="The catalogue as this customer sees it: affordable now, or what is missing",
        description="For a storefront widget, in one call: each active reward's state (`available`, "
        "`points_missing` with the points missing, `tier_locked`, `out_of_stock`, `limit_reached`, "
        "`customer_in_debt`) and a note in words. Names in `locale`, else the customer's, else English.",
    )
    async def customer_rewards(
        self,
        external_id: FromPath[str],
        run: Run[Program],
        locale: Annotated[Locale | None, QueryParameter()] = None,
    ) -> CustomerCatalogue:
        return await run.read(
            lambda work: service.catalogue(work.conn, work.program, external_id, locale, work.now),
            load="program",
        )

    @post(
        "/{external_id:str}/redemptions",
        guards=[requires(Permission.RECORD)],
        status_code=201,
        summary="Spend points on a reward: a code, its expiry and what it gives",
        description="Spends from available points, soonest-expiring first, under the customer's ledger "
        "lock: concurrent redemptions never overdraw. Refusals are 409 problems of their own types: "
        "`insufficient-points` (with `shortfall`), `out-of-stock`, `limit-reached`, `tier-too-low`, "
        "`reward-inactive`, `customer-in-debt`.",
        opt=problems(404, 409),
    )
    async def redeem(
        self,
        external_id: FromPath[str],
        data: JSONBody[RedemptionIn],
        run: Run[Program],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[RedemptionOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.redeem(work.conn, work.program, external_id, data, work.now, work.actor),
            load="program",
        )


class RedemptionController(Controller):
    path = "/v1/redemptions"
    tags = ["rewards"]

    @get("/", guards=[requires(Permission.READ)], summary="Redemptions, newest first (cursor pages)")
    async def list_redemptions(
        self,
        run: Run[Program],
        customer: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        status: Annotated[RedemptionStatus | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> RedemptionList:
        return await run.read(
            lambda work: service.list_redemptions(work.conn, work.program_id, customer, status, cursor, limit)
        )

    @get("/{redemption_id:str}", guards=[requires(Permission.READ)], summary="One redemption")
    async def get_redemption(self, redemption_id: FromPath[UUID], run: Run[Program]) -> RedemptionOut:
        return await run.read(lambda work: service.get_redemption(work.conn, work.program_id, redemption_id))

    @post(
        "/{redemption_id:str}/cancel",
        guards=[requires(Permission.RECORD)],
        status_code=200,
        summary="Cancel an unused code: its points go back to the lots they came from",
        description="Points go back with their original expiry; points whose lot has expired meanwhile "
        "expire again at once (they would have expired unspent). Stock and limits are restored. Cancelling a "
        "cancelled code again answers it as it is; a used or expired one is a 409. The body is optional.",
        opt={**problems(404, 409), **optional_body()},
    )
    async def cancel_redemption(
        self, redemption_id: FromPath[UUID], data: JSONBody[CancelIn], run: Run[Program]
    ) -> RedemptionOut:
        return await run.transaction(
            lambda work: service.cancel(work.conn, work.program, redemption_id, work.now, data.reason),
            load="program",
        )


class CodeController(Controller):
    path = "/v1/codes"
    tags = ["rewards"]

    @post(
        "/{code:str}/validate",
        guards=[requires(Permission.READ)],
        status_code=200,
        summary="What a code takes off this cart, or why not; writes nothing",
        description="Case and dashes do not matter. 409 problems: `code-used`, `code-expired`, "
        "`code-cancelled`, `code-not-applicable` (minimum not met, other currency, another customer's "
        "code, the free product not in the cart); 404 for a code this program never issued.",
        opt=problems(404, 409),
    )
    async def validate_code(
        self, code: FromPath[str], data: JSONBody[QuoteIn], run: Run[Program]
    ) -> CodeCheckOut:
        cart = cart_facts(data)
        return await run.read(lambda work: service.validate(work.conn, work.program_id, code, cart, work.now))

    @post(
        "/{code:str}/use",
        guards=[requires(Permission.RECORD)],
        status_code=200,
        summary="Mark a code used (for shops that report use on its own)",
        description="With `order_external_id`, the code must apply to that order, and a percent or free-item "
        "code takes its money value from it. 409 with the reason a code cannot be used.",
        opt={**problems(404, 409), **optional_body()},
    )
    async def use_code(
        self,
        code: FromPath[str],
        data: JSONBody[CodeUseIn],
        run: Run[Program],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[RedemptionOut]:
        order = data.order_external_id
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.use(work.conn, work.program, code, order, work.now),
            load="program",
            status_code=200,
        )
