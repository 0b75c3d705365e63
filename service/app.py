"""create_app(settings) -> Litestar. No module-level app: tests and servers build their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin  # the document it serves is completed once
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig

from service.core import db
from service.core.auth import PUBLIC_PATHS, ApiKeyAuthentication
from service.core.clock import Clock, SystemClock
from service.core.errors import EXCEPTION_HANDLERS
from service.core.logging import configure_logging, request_logging
from service.core.openapi import finish as finish_openapi
from service.core.strict_input import check_request
from service.customers.controller import CustomerController
from service.ledger import service as ledger
from service.ledger.controller import LedgerController
from service.messaging.controller import MessagingController, UnsubscribeController
from service.orders.controller import OrderController
from service.outreach.controller import JourneyController
from service.programs.controller import ApiKeyController, ProgramController
from service.programs.service import RescheduleExpiry
from service.rules.controller import EventController, RuleController
from service.scheduler.controller import SystemJobsController
from service.settings import Settings
from service.system.controller import healthz, metrics, readyz
from service.tiers.controller import CustomerTierController, TierController
from service.webhooks.controller import WebhookEndpointController

VERSION = "0.1.0"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Encore",
        version=VERSION,
        description="Loyalty and retention: a ledger that never double-awards, mis-refunds or overdraws.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="API key")}
        ),
        security=[{"bearer": []}],
    )


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    clock = clock or SystemClock()
    configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def database(_: Litestar) -> AsyncIterator[None]:
        # A pool opened by the host (tests open theirs on their own event loop) is left to it.
        if settings.database_url and db.DB.pool is None:
            db.configure(settings.database_url)
        opened = await db.open_pool(settings.db_pool_min, settings.db_pool_max)
        try:
            yield
        finally:
            if opened:
                await db.close_pool()

    prometheus = PrometheusConfig(app_name="encore", group_path=True, exclude=["/metrics"])
    # OPTIONS too: Litestar answers it with the route's guards, which need the key's scope.
    auth = DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS, exclude_http_methods=[])

    def provide_clock() -> Clock:
        return clock

    def provide_settings() -> Settings:
        return settings

    def provide_reschedule_expiry() -> RescheduleExpiry:
        # The ledger owns the lots and depends on programs: a program's change is handed its use case.
        return ledger.reschedule_expiry

    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            ProgramController,
            ApiKeyController,
            CustomerController,
            LedgerController,
            OrderController,
            RuleController,
            EventController,
            TierController,
            CustomerTierController,
            WebhookEndpointController,
            SystemJobsController,
            MessagingController,
            UnsubscribeController,
            JourneyController,
        ],
        dependencies={
            "clock": Provide(provide_clock, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "reschedule_expiry": Provide(provide_reschedule_expiry, sync_to_thread=False),
        },
        middleware=[request_logging, prometheus.middleware, auth],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=check_request,
        lifespan=[database],
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    openapi = app.plugins.get(OpenAPIPlugin)
    # Served at /schema and committed as openapi/openapi.json: the document completed once, here.
    openapi._openapi_schema = finish_openapi(app, openapi.provide_openapi().to_schema(), PUBLIC_PATHS)
    return app


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory service.app:app_from_env` (production: ENCORE_DATABASE_URL set)."""
    return create_app(Settings.from_env())


def openapi_document() -> bytes:
    """The OpenAPI document as committed in openapi/openapi.json (stable key order, trailing newline)."""
    import json

    app = create_app(Settings(database_url="postgresql:///unused"))
    schema = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
