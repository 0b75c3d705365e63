from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db
from service.core.auth import Permission, requires
from service.core.clock import Clock
from service.core.openapi import problems
from service.core.secrets import SecretBox
from service.core.work import Run, Work
from service.programs.service import Program
from service.settings import Settings
from service.stripe import service
from service.stripe.schemas import ConnectionIn, ConnectionOut, EventList, EventOut, EventStatus, Received


class StripeController(Controller):
    """The connection and its events: an admin's (the GETs too: they show the account's state)."""

    path = "/v1/stripe"
    tags = ["stripe"]
    guards = [requires(Permission.ADMINISTER)]

    @put(
        "/connection",
        summary="Connect Stripe: the API key (checked against Stripe) and the webhook signing secret",
        description="The key needs to read Checkout Sessions and write Coupons and Promotion Codes; it is "
        "checked by listing Checkout Sessions (422 when Stripe refuses it, 503 when Stripe cannot be reached). "
        "Both secrets are stored encrypted and never returned (their last four characters are shown). Point a "
        "Stripe webhook endpoint at `webhook_url` for checkout.session.completed, "
        "checkout.session.async_payment_succeeded, refund.created, refund.updated, charge.refunded and "
        "charge.dispute.closed. Putting again replaces the keys and settings.",
        opt=problems(503),
    )
    async def connect(
        self,
        data: JSONBody[ConnectionIn],
        run: Run[Program],
        settings: NamedDependency[Settings],
        secret_box: NamedDependency[SecretBox],
    ) -> ConnectionOut:
        await service.check_key(settings, data.api_key)  # outside the transaction: a network call
        return await run.transaction(
            lambda work: service.connect(work.conn, work.program_id, data, settings, secret_box, work.now)
        )

    @get(
        "/connection",
        summary="The Stripe connection's state: mode, key's last four, last event, last error",
    )
    async def connection(
        self, run: Run[Program], settings: NamedDependency[Settings], secret_box: NamedDependency[SecretBox]
    ) -> ConnectionOut:
        return await run.read(
            lambda work: service.connection(work.conn, work.program_id, settings, secret_box)
        )

    @delete(
        "/connection",
        status_code=204,
        summary="Disconnect Stripe: the keys are forgotten; events received already stay",
        opt=problems(404),
    )
    async def disconnect(self, run: Run[Program]) -> None:
        await run.transaction(lambda work: service.disconnect(work.conn, work.program_id))

    @get("/events", summary="Events Stripe sent, newest first")
    async def events(
        self,
        run: Run[Program],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[EventStatus | None, QueryParameter()] = None,
        type: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> EventList:
        return await run.read(
            lambda work: service.list_events(work.conn, work.program_id, status, type, cursor, limit)
        )

    @get(
        "/events/{event_id:str}",
        summary="One Stripe event and its outcome",
    )
    async def event(self, event_id: FromPath[UUID], run: Run[Program]) -> EventOut:
        return await run.read(lambda work: service.get_event(work.conn, work.program_id, event_id))

    @post(
        "/events/{event_id:str}/retry",
        status_code=202,
        summary="Process a failed, waiting or ignored event again now (the worker picks it up)",
        opt=problems(409),
    )
    async def retry(self, event_id: FromPath[UUID], run: Run[Program]) -> EventOut:
        async def again(work: Work[None]) -> EventOut:
            return await service.retry(work.conn, work.program_id, event_id, work.now)

        return await run.transaction(again)


class StripeWebhookController(Controller):
    """Stripe's own calls: no API key, the signature is the authentication."""

    path = "/v1/stripe/webhooks"
    tags = ["stripe"]

    @post(
        "/{program_id:str}",
        status_code=200,
        summary="Receive a Stripe event (signed with the connection's webhook secret)",
        description="Verifies `Stripe-Signature` on the raw body (HMAC-SHA256, a timestamp within 300 s "
        "either way), stores the event once (a replay is 200 and changes nothing) and answers at once; the "
        "worker processes it. 400 for a missing or bad signature or a body that is no event; 404 for a "
        "program without a Stripe connection. Nothing is stored then.",
        opt=problems(400, 404, 503),
    )
    async def receive(
        self,
        program_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        secret_box: NamedDependency[SecretBox],
        clock: NamedDependency[Clock],
    ) -> Received:
        body = await request.body()
        # One statement writes (the insert, unique on the event): no transaction around it.
        async with db.connection() as conn:
            return await service.receive(
                conn, program_id, body, request.headers.get(service.SIGNATURE_HEADER), secret_box, clock.now()
            )
