from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core.auth import Permission, requires
from service.core.fields import RowId
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.secrets import SecretBox
from service.core.strict_input import optional_body
from service.core.work import Run, Work
from service.programs.service import Program
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
    guards = [requires(Permission.ADMINISTER)]

    @post(
        "/",
        status_code=201,
        summary="Subscribe a URL to events (its signing secret is shown only in this response)",
        description="Deliveries are signed per the Standard Webhooks specification (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`); verify them with any Standard Webhooks library.",
    )
    async def create_endpoint(
        self,
        data: JSONBody[EndpointCreate],
        run: Run[Program],
        settings: NamedDependency[Settings],
        secret_box: NamedDependency[SecretBox],
        idempotency_key: RequiredIdempotencyKeyHeader,
    ) -> Response[EndpointWithSecret]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create(
                work.conn,
                work.program_id,
                data,
                work.now,
                allow_local_http=settings.webhooks_allow_local_http,
                box=secret_box,
            ),
            sealed_with=secret_box,  # the answer holds the secret: kept for replays, sealed too
        )

    @get("/", summary="The program's webhook endpoints (never their secrets)")
    async def list_endpoints(self, run: Run[Program]) -> EndpointList:
        async def endpoints(work: Work[None]) -> EndpointList:
            return EndpointList(items=await service.list_all(work.conn, work.program_id, work.now))

        return await run.read(endpoints)

    @get("/{endpoint_id:str}", summary="One webhook endpoint and its health")
    async def get_endpoint(self, endpoint_id: FromPath[UUID], run: Run[Program]) -> EndpointOut:
        return await run.read(lambda work: service.get(work.conn, work.program_id, endpoint_id, work.now))

    @patch(
        "/{endpoint_id:str}",
        summary="Change the URL, event types or description; disable (deliveries pause) or enable (they resume)",
    )
    async def update_endpoint(
        self,
        endpoint_id: FromPath[UUID],
        data: JSONBody[EndpointPatch],
        run: Run[Program],
        settings: NamedDependency[Settings],
    ) -> EndpointOut:
        return await run.transaction(
            lambda work: service.update(
                work.conn,
                work.program_id,
                endpoint_id,
                data,
                work.now,
                allow_local_http=settings.webhooks_allow_local_http,
            )
        )

    @delete("/{endpoint_id:str}", status_code=204, summary="Delete an endpoint with its delivery history")
    async def delete_endpoint(self, endpoint_id: FromPath[UUID], run: Run[Program]) -> None:
        await run.transaction(lambda work: service.delete(work.conn, work.program_id, endpoint_id, work.now))

    @post(
        "/{endpoint_id:str}/rotate-secret",
        status_code=200,
        summary="New signing secret (shown once); the old one also signs during the overlap",
        opt=optional_body(),
    )
    async def rotate_secret(
        self,
        endpoint_id: FromPath[UUID],
        data: JSONBody[RotateSecret],
        run: Run[Program],
        secret_box: NamedDependency[SecretBox],
    ) -> EndpointWithSecret:
        return await run.transaction(
            lambda work: service.rotate_secret(
                work.conn,
                work.program_id,
                endpoint_id,
                timedelta(seconds=data.overlap_seconds),
                work.now,
                box=secret_box,
            )
        )

    @get("/{endpoint_id:str}/deliveries", summary="Deliveries to this endpoint, newest first")
    async def deliveries(
        self,
        endpoint_id: FromPath[UUID],
        run: Run[Program],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[DeliveryStatus | None, QueryParameter()] = None,
    ) -> DeliveryList:
        return await run.read(
            lambda work: service.deliveries(work.conn, work.program_id, endpoint_id, cursor, limit, status)
        )

    @post(
        "/{endpoint_id:str}/deliveries/{delivery_id:str}/retry",
        status_code=202,
        summary="Deliver again now (also a dead-lettered or succeeded one), with a fresh retry window",
        opt=problems(409),
    )
    async def retry(
        self, endpoint_id: FromPath[UUID], delivery_id: FromPath[RowId], run: Run[Program]
    ) -> DeliveryOut:
        return await run.transaction(
            lambda work: service.retry(work.conn, work.program_id, endpoint_id, delivery_id, work.now)
        )

    @post(
        "/{endpoint_id:str}/test",
        status_code=202,
        summary="Send a `webhook.test` event to this endpoint; follow it in its deliveries",
        opt=problems(409),
    )
    async def send_test(self, endpoint_id: FromPath[UUID], run: Run[Program]) -> DeliveryOut:
        return await run.transaction(
            lambda work: service.send_test(work.conn, work.program_id, endpoint_id, work.now)
        )
