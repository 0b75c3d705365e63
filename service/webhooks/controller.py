from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db, idempotency
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.fields import RowId
from service.core.idempotency import IdempotencyKeyHeader
from service.core.openapi import problems
from service.core.secrets import SecretBox
from service.core.strict_input import optional_body
from service.settings import Settings
from service.webhooks import service
from service.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    DeliveryStatus,
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
    RotateSecret,
)


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]
    guards = [requires("admin")]

    @post(
        "/",
        status_code=201,
        summary="Subscribe a URL to events (its signing secret is shown only in this response)",
        description="Deliveries are signed per the Standard Webhooks specification (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`); verify them with any Standard Webhooks library.",
    )
    async def create_endpoint(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[EndpointCreate],
        clock: NamedDependency[Clock],
        settings: NamedDependency[Settings],
        secret_box: NamedDependency[SecretBox],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[EndpointWithSecret]:
        program_id = request.user.program_id
        now = clock.now()

        async def operation(conn: db.Connection) -> EndpointWithSecret:
            return await service.create(
                conn,
                program_id,
                data,
                now,
                allow_local_http=settings.webhooks_allow_local_http,
                box=secret_box,
            )

        return await idempotency.respond(  # type: ignore[return-value]
            request,
            program_id=program_id,
            key=idempotency_key,
            body=data,
            now=now,
            operation=operation,
            sealed_with=secret_box,  # the answer holds the secret: kept for replays, sealed too
        )

    @get("/", summary="The program's webhook endpoints (never their secrets)")
    async def list_endpoints(
        self, request: Request[Principal, Any, Any], clock: NamedDependency[Clock]
    ) -> EndpointList:
        async with db.connection() as conn:
            return EndpointList(items=await service.list_all(conn, request.user.program_id, clock.now()))

    @get("/{endpoint_id:str}", summary="One webhook endpoint and its health")
    async def get_endpoint(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        clock: NamedDependency[Clock],
    ) -> EndpointOut:
        async with db.connection() as conn:
            return await service.get(conn, request.user.program_id, endpoint_id, clock.now())

    @patch(
        "/{endpoint_id:str}",
        summary="Change the URL, event types or description; disable (deliveries pause) or enable (they resume)",
    )
    async def update_endpoint(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        data: JSONBody[EndpointPatch],
        clock: NamedDependency[Clock],
        settings: NamedDependency[Settings],
    ) -> EndpointOut:
        async with db.transaction() as conn:
            return await service.update(
                conn,
                request.user.program_id,
                endpoint_id,
                data,
                clock.now(),
                allow_local_http=settings.webhooks_allow_local_http,
            )

    @delete("/{endpoint_id:str}", status_code=204, summary="Delete an endpoint with its delivery history")
    async def delete_endpoint(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        clock: NamedDependency[Clock],
    ) -> None:
        async with db.transaction() as conn:
            await service.delete(conn, request.user.program_id, endpoint_id, clock.now())

    @post(
        "/{endpoint_id:str}/rotate-secret",
        status_code=200,
        summary="New signing secret (shown once); the old one also signs during the overlap",
        opt=optional_body(),
    )
    async def rotate_secret(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        data: JSONBody[RotateSecret],
        clock: NamedDependency[Clock],
        secret_box: NamedDependency[SecretBox],
    ) -> EndpointWithSecret:
        async with db.transaction() as conn:
            return await service.rotate_secret(
                conn,
                request.user.program_id,
                endpoint_id,
                timedelta(seconds=data.overlap_seconds),
                clock.now(),
                box=secret_box,
            )

    @get("/{endpoint_id:str}/deliveries", summary="Deliveries to this endpoint, newest first")
    async def deliveries(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[DeliveryStatus | None, QueryParameter()] = None,
    ) -> DeliveryList:
        async with db.connection() as conn:
            return await service.deliveries(conn, request.user.program_id, endpoint_id, cursor, limit, status)

    @post(
        "/{endpoint_id:str}/deliveries/{delivery_id:str}/retry",
        status_code=202,
        summary="Deliver again now (also a dead-lettered or succeeded one), with a fresh retry window",
        opt=problems(409),
    )
    async def retry(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        delivery_id: FromPath[RowId],
        clock: NamedDependency[Clock],
    ) -> DeliveryOut:
        async with db.transaction() as conn:
            return await service.retry(conn, request.user.program_id, endpoint_id, delivery_id, clock.now())

    @post(
        "/{endpoint_id:str}/test",
        status_code=202,
        summary="Send a `webhook.test` event to this endpoint; follow it in its deliveries",
        opt=problems(409),
    )
    async def send_test(
        self,
        request: Request[Principal, Any, Any],
        endpoint_id: FromPath[UUID],
        clock: NamedDependency[Clock],
    ) -> DeliveryOut:
        async with db.transaction() as conn:
            return await service.send_test(conn, request.user.program_id, endpoint_id, clock.now())
