"""create_app(settings) -> Litestar. No module-level app: tests and servers build their own."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar._openapi.plugin import OpenAPIPlugin  # the document it serves is completed once
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig

from service.core import db
from service.core.auth import PUBLIC_PATHS, ApiKeyAuthentication, Principal
from service.core.clock import Clock, SystemClock
from service.core.errors import EXCEPTION_HANDLERS
from service.core.http_headers import security_headers
from service.core.limits import RequestLimits
from service.core.logging import configure_logging, request_logging
from service.core.openapi import finish as finish_openapi
from service.core.secrets import SecretBox
from service.core.strict_input import check_request
from service.core.work import Runner
from service.customers.controller import CustomerController
from service.earning.controller import EventEarningController, OrderEarningController, SimulationController
from service.feedback.controller import AnswerController, FeedbackController, SurveyController
from service.gifts.controller import GiftController, GiftKeyController, GiftRuleController
from service.ledger import service as ledger
from service.ledger.controller import LedgerController
from service.messaging.controller import MessagingController, UnsubscribeController
from service.orders.controller import OrderController
from service.outreach.controller import JourneyController
from service.programs import service as programs
from service.programs.controller import ApiKeyController, ProgramController
from service.programs.service import Program, RescheduleExpiry
from service.recovery.controller import CaseController, RecoveryController
from service.reports.controller import ReportController
from service.rewards.controller import (
    CodeController,
    CustomerRewardController,
    RedemptionController,
    RewardController,
)
from service.rules.controller import RuleController
from service.scheduler.controller import SystemJobsController
from service.settings import Settings
from service.status.controller import CustomerStatusController
from service.stripe.controller import StripeController, StripeWebhookController
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


class CustomerRoutes(CustomerController, CustomerStatusController):
    """`/v1/customers/{external_id}`: PUT writes the profile (customers), GET reads the whole status
    (status, which sits above customers). Litestar takes one controller per path, so they meet here."""


def create_app(
    settings: Settings | None = None,
    clock: Clock | None = None,
    rate_limit_clock: Callable[[], int] | None = None,
) -> Litestar:
    """`rate_limit_clock`: nanoseconds for the rate limits (monotonic time; tests step their own)."""
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

    boxes: list[SecretBox] = []

    @asynccontextmanager
    async def secret_box(_: Litestar) -> AsyncIterator[None]:
        # At start-up, not at the first request: a bad ENCORE_ENCRYPTION_KEYS stops the API at once. (Not
        # in create_app: the OpenAPI document is made without keys.)
        boxes[:] = [settings.secret_box()]
        yield

    @asynccontextmanager
    async def responsive(_: Litestar) -> AsyncIterator[None]:
        # Renders (template checks, previews) run in threads beside the event loop; a 1 ms switch interval
        # (Python's default: 5 ms) hands the loop the interpreter soon enough to answer in milliseconds
        # while they work. It costs nothing when the loop is alone.
        before = sys.getswitchinterval()
        sys.setswitchinterval(0.001)
        try:
            yield
        finally:
            sys.setswitchinterval(before)

    prometheus = PrometheusConfig(app_name="encore", group_path=True, exclude=["/metrics"])
    # Before authentication: a huge header is refused before it is hashed, a throttled key before a lookup.
    limits = RequestLimits(settings, rate_limit_clock) if rate_limit_clock else RequestLimits(settings)
    docs = openapi_config()
    # OPTIONS too: Litestar answers it with the route's guards, which need the key's scope.
    auth = DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS, exclude_http_methods=[])

    def provide_clock() -> Clock:
        return clock

    def provide_settings() -> Settings:
        return settings

    def provide_secret_box() -> SecretBox:
        return boxes[0]

    def provide_run(request: Request[Principal, Any, Any]) -> Runner[Program]:
        # The request helper of every handler: core knows no feature, so it is handed the program loader.
        return Runner(request, clock.now(), programs.load)

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
            CustomerRoutes,
            LedgerController,
            OrderController,
            OrderEarningController,
            RuleController,
            SimulationController,
            EventEarningController,
            TierController,
            CustomerTierController,
            WebhookEndpointController,
            SystemJobsController,
            MessagingController,
            UnsubscribeController,
            JourneyController,
            RewardController,
            CustomerRewardController,
            RedemptionController,
            CodeController,
            StripeController,
            StripeWebhookController,
            GiftRuleController,
            GiftController,
            GiftKeyController,
            RecoveryController,
            CaseController,
            SurveyController,
            FeedbackController,
            AnswerController,
            ReportController,
        ],
        dependencies={
            "clock": Provide(provide_clock, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "secret_box": Provide(provide_secret_box, sync_to_thread=False),
            "reschedule_expiry": Provide(provide_reschedule_expiry, sync_to_thread=False),
            "run": Provide(provide_run, sync_to_thread=False),
        },
        middleware=[request_logging, prometheus.middleware, limits.middleware, auth],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=check_request,
        before_send=[security_headers(docs)],
        lifespan=[secret_box, database, responsive],
        openapi_config=docs,
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
