"""Encore's codes as Stripe promotion codes: with Stripe connected, a redemption of an `amount_off`,
`percent_off` or `points_for_discount` reward becomes a coupon (once, one redemption, redeemed by the
code's expiry) and a promotion code whose `code` is Encore's code as the customer sees it (Stripe takes
letters, digits and dashes, and matches regardless of case), restricted to the customer's Stripe
customer when known and to the reward's minimum order. What a coupon cannot express (free shipping, a capped percentage, a share of the order, a
product) stays an Encore-only code, and the `redemption.synced` event says so.

Two steps, as webhooks do: the `stripe` outbox consumer queues a row per new code (and marks the rows
of codes cancelled, expired or used elsewhere for deactivation) in the transaction that moves its
position; the sync claims due rows with a lease and calls Stripe outside any transaction, with
idempotency keys derived from the redemption id, so a retry after a crash creates nothing twice. The
code is announced (`reward_issued`) only once Stripe has it: journeys wait for `redemption.synced`. A
refusal that will not change (a 4xx), or a day of passing failures, cancels the redemption and gives
its points back (`redemption.stripe_failed`). A deactivation is retried until Stripe takes it (a code
closed in Encore must not stay usable there). A program disconnected before its code reached Stripe
keeps the code as Encore-only (announced so), not cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import msgspec
import stripe
import structlog

from service.core import db
from service.core.clock import Clock
from service.core.db import Connection
from service.core.errors import Problem
from service.customers import service as customers
from service.outbox import consumers
from service.outbox.service import Event, emit
from service.programs import service as programs
from service.rewards import service as rewards
from service.settings import Settings
from service.stripe import client as stripe_client
from service.stripe import domain, repository

log = structlog.get_logger("encore.stripe")

CHUNK = 1_000

CONSUMER = consumers.register("stripe", active_programs="SELECT program_id FROM stripe_connection")
DISCONNECTED = "Stripe was disconnected before the code reached it: it works in Encore only"

# $1 now. Every code of a program connected when it was issued is queued: the sync decides what Stripe
# gets, and its `redemption.synced` announces the code either way (journeys wait for it: see
# `published.held_for_stripe`, the same condition). A row another worker holds keeps its due time when
# its code closes (the holder finishes it; taking it over would lose what the holder is making in Stripe).
_QUEUE = f"""
    WITH {consumers.batch(CONSUMER, str(CHUNK))}, queued AS (
        INSERT INTO stripe_code (redemption_id, program_id, status, next_attempt_at, created_at, updated_at)
        SELECT (b.payload ->> 'redemption_id')::uuid, b.program_id, 'pending', $1, $1, $1
        FROM batch b JOIN stripe_connection sc ON sc.program_id = b.program_id AND sc.connected_at <= b.created_at
        WHERE b.topic = 'redemption.created'
        ON CONFLICT (redemption_id) DO NOTHING
        RETURNING 1
    ), closed AS (
        -- A code created and closed in the same batch is not seen here: the sync looks at the code first.
        UPDATE stripe_code s SET active_wanted = false, updated_at = $1,
               next_attempt_at = CASE WHEN s.claimed_until > $1 THEN s.next_attempt_at
                                      ELSE least(s.next_attempt_at, $1) END
        FROM batch b
        WHERE b.topic IN ('redemption.cancelled', 'redemption.expired', 'redemption.used')
          AND s.redemption_id = (b.payload ->> 'redemption_id')::uuid AND s.active_wanted
        RETURNING 1
    )
    SELECT {consumers.COUNTS}, (SELECT count(*) FROM queued) AS queued, (SELECT count(*) FROM closed) AS closed
"""


async def queue(now: datetime) -> int:
    """New codes queued for Stripe (and closed ones marked); returns the rows touched."""
    touched = 0
    while True:
        async with db.transaction() as conn:
            row = await consumers.take(conn, CONSUMER, _QUEUE, now)
        touched += int(row["queued"]) + int(row["closed"])
        if row["events"] < CHUNK:
            return touched


@dataclass(slots=True)
class Synced:
    created: int = 0  # promotion codes created
    encore_only: int = 0
    deactivated: int = 0
    retrying: int = 0
    failed: int = 0  # given up: redemption cancelled, points back


@dataclass(slots=True)
class Syncer:
    settings: Settings
    clock: Clock
    worker_id: str
    _connections: stripe_client.Connections = field(init=False)

    def __post_init__(self) -> None:
        self._connections = stripe_client.Connections(self.settings)

    async def run(self) -> Synced:
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.stripe_lease_seconds)
        async with db.transaction() as conn:
            rows = await repository.claim_codes(
                conn, now, self.settings.stripe_batch_size, self.worker_id, lease
            )
        result = Synced()
        if not rows:
            return result
        self._connections.clear()
        async with stripe_client.stripe_for(self.settings) as api:
            slots = asyncio.Semaphore(self.settings.stripe_concurrency)

            async def one(row: dict[str, Any]) -> str:
                async with slots:
                    return await self._one(api, row)

            for outcome in await asyncio.gather(*(one(row) for row in rows)):
                setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    async def _one(self, api: stripe_client.Stripe, row: dict[str, Any]) -> str:
        redemption_id: UUID = row["redemption_id"]
        program_id: UUID = row["program_id"]
        try:
            async with db.connection() as conn:
                redemption = await rewards.get_redemption(conn, program_id, redemption_id)
                customer = await customers.find(conn, program_id, redemption.customer_external_id)
            connection = await self._connections.get(program_id)
            if connection is None:
                if row["status"] == "synced":
                    raise _Permanent("the program has no Stripe connection any more")
                # Disconnected before the code reached Stripe: it still works in Encore.
                await self._finish(
                    row,
                    {"status": "encore_only", "last_error": None},
                    synced={"status": "encore_only", "reason": DISCONNECTED},
                )
                return "encore_only"
            if connection.api_key is None:
                raise _Permanent(connection.key_problem or "")
            client = api.client(connection.api_key)
            if row["status"] == "synced":  # a promotion code to deactivate
                await client.v1.promotion_codes.update_async(
                    row["promotion_code_id"], params={"active": False}
                )
                await self._finish(row, {"active": False, "last_error": None})
                return "deactivated"
            if redemption.status != "issued":
                await self._finish(
                    row,
                    {"status": "encore_only", "last_error": f"{redemption.status} before it reached Stripe"},
                )
                return "encore_only"
            discount = msgspec.to_builtins(redemption.discount)
            params = domain.coupon_for(discount, redemption.expires_at)
            if isinstance(params, str):
                await self._finish(
                    row,
                    {"status": "encore_only", "last_error": None},
                    synced={"status": "encore_only", "reason": params},
                )
                return "encore_only"
            # Stripe keeps an idempotency key's first answer for a day, a 500 too: each attempt has a key of
            # its own, and what an earlier attempt made is found instead (the coupon by its id, the
            # promotion code by its code and its redemption's id), so nothing is made twice.
            key = f"encore-{redemption_id}"
            attempt = row["attempts"]
            coupon_id = key
            try:
                coupon = await client.v1.coupons.create_async(
                    params=cast(
                        Any,
                        {**params, "id": coupon_id, "metadata": {"encore_redemption_id": str(redemption_id)}},
                    ),
                    options={"idempotency_key": f"{key}-coupon-{attempt}"},
                )
            except stripe.InvalidRequestError as exc:
                if exc.code != "resource_already_exists":
                    raise
                coupon = await client.v1.coupons.retrieve_async(coupon_id)
            code = redemption.code  # as the customer sees it: Stripe takes letters, digits and dashes
            try:
                promotion = await client.v1.promotion_codes.create_async(
                    params=cast(
                        Any,
                        domain.promotion_code_for(
                            code,
                            coupon.id,
                            str(redemption_id),
                            discount,
                            redemption.expires_at,
                            None if customer is None else customer["stripe_customer_id"],
                        ),
                    ),
                    options={"idempotency_key": f"{key}-promotion-{attempt}"},
                )
            except stripe.InvalidRequestError as exc:
                made = await _made_before(client, code, str(redemption_id)) if exc.param == "code" else None
                if made is None:
                    raise
                promotion = made
            await self._finish(
                row,
                {
                    "status": "synced",
                    "active": True,
                    "coupon_id": coupon.id,
                    "promotion_code_id": promotion.id,
                    "last_error": None,
                },
                synced={
                    "status": "synced",
                    "promotion_code": promotion.id,
                    "coupon": coupon.id,
                    "code": code,
                },
            )
            return "created"
        except _Permanent as exc:
            return await self._give_up(row, str(exc))
        except Problem as exc:  # the redemption is gone (a 404 of ours)
            return await self._give_up(row, exc.detail)
        except Exception as exc:
            if isinstance(exc, stripe.StripeError) and not stripe_client.is_passing(exc):
                return await self._give_up(row, stripe_client.describe(exc))
            if not isinstance(exc, stripe.StripeError):
                log.exception("stripe_code_error", redemption=str(redemption_id))
            error = stripe_client.describe(exc)
            # A promotion code to deactivate is retried for as long as it takes (a code closed in Encore
            # must not stay usable in Stripe); one to create is given up after a while.
            if row["status"] != "synced" and self.clock.now() - row["created_at"] > domain.SYNC_GIVE_UP:
                return await self._give_up(row, f"gave up after {domain.SYNC_GIVE_UP}: {error}")
            retry = self.clock.now() + timedelta(seconds=domain.backoff_seconds(row["attempts"]))
            await self._finish(row, {"last_error": error, "next_attempt_at": retry})
            return "retrying"

    async def _finish(
        self, row: dict[str, Any], values: dict[str, Any], synced: dict[str, Any] | None = None
    ) -> None:
        now = self.clock.now()
        values.setdefault("next_attempt_at", now)
        async with db.transaction() as conn:
            if not await repository.finish_code(conn, row["redemption_id"], self.worker_id, values, now):
                return  # the lease ran out: another worker has it
            if synced is not None:
                await _announce(
                    conn, row, {"stripe": synced}, now, topic="redemption.synced", only_issued=True
                )

    async def _give_up(self, row: dict[str, Any], error: str) -> str:
        """A code Stripe will not take: the redemption is cancelled and its points given back (a promotion
        code that will not deactivate is only noted: the code is closed in Encore already)."""
        now = self.clock.now()
        async with db.transaction() as conn:
            if row["status"] == "synced":
                await repository.finish_code(
                    conn,
                    row["redemption_id"],
                    self.worker_id,
                    {"active": False, "last_error": error, "next_attempt_at": now},
                    now,
                )
                return "failed"
            if not await repository.finish_code(
                conn,
                row["redemption_id"],
                self.worker_id,
                {"status": "failed", "last_error": error, "next_attempt_at": now},
                now,
            ):
                return "failed"
            program = await programs.load(conn, row["program_id"])
            with contextlib.suppress(Problem):  # used or expired meanwhile: nothing to give back
                await rewards.cancel(
                    conn, program, row["redemption_id"], now, reason=f"Stripe refused it: {error}"
                )
            await _announce(conn, row, {"error": error}, now, topic="redemption.stripe_failed")
        log.warning("stripe_code_failed", redemption=str(row["redemption_id"]), error=error)
        return "failed"


async def _made_before(client: stripe.StripeClient, code: str, redemption_id: str) -> Any:
    """The promotion code an earlier attempt made for this redemption (Stripe refuses a second active one
    with its code), or None: the code is someone else's."""
    found = await client.v1.promotion_codes.list_async(params={"code": code, "limit": 10})
    for promotion in found.data:
        if (promotion.to_dict().get("metadata") or {}).get("encore_redemption_id") == redemption_id:
            return promotion
    return None


class _Permanent(Exception):
    pass


async def _announce(
    conn: Connection,
    row: dict[str, Any],
    extra: dict[str, Any],
    now: datetime,
    *,
    topic: str,
    only_issued: bool = False,
) -> None:
    """Emit `topic` for the row's redemption; with `only_issued`, not for a code closed meanwhile (cancelled
    while Stripe was making it: `reward_issued` must not announce it, and its deactivation follows)."""
    if only_issued:
        with contextlib.suppress(Problem):
            current = await rewards.get_redemption(conn, row["program_id"], row["redemption_id"])
            if current.status != "issued":
                return
    payload = await rewards.event_payload(conn, row["program_id"], row["redemption_id"])
    if payload is not None:
        await emit(conn, row["program_id"], [Event(topic, {**payload, **extra})], now)
