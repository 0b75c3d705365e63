"""The official SDK's `StripeClient`, aimed at Stripe or, with ENCORE_STRIPE_API_BASE, at a local stand-in
(tests, the README's walk-through), and how its errors are told apart: passing (retry later) or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import stripe

from service.core import db
from service.core.secrets import CannotOpen, SecretBox
from service.settings import Settings
from service.stripe import repository

# The SDK retries a connection error, a 409 and a 5xx itself, with the same Idempotency-Key; a 429 and
# anything it gives up on come back to the worker, which retries later with backoff.
NETWORK_RETRIES = 2
TIMEOUT_SECONDS = 20


class Stripe:
    """One HTTP client (a connection pool) for the StripeClients of a run, one per API key."""

    def __init__(self, settings: Settings) -> None:
        self._base = settings.stripe_api_base
        self._http = stripe.AIOHTTPClient(timeout=TIMEOUT_SECONDS)  # aiohttp: less CPU per call than httpx
        self._clients: dict[str, stripe.StripeClient] = {}

    def client(self, api_key: str) -> stripe.StripeClient:
        found = self._clients.get(api_key)
        if found is None:
            options: dict[str, Any] = {"http_client": self._http, "max_network_retries": NETWORK_RETRIES}
            if self._base:
                options["base_addresses"] = {"api": self._base}
            found = self._clients[api_key] = stripe.StripeClient(api_key, **options)
        return found

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


@asynccontextmanager
async def stripe_for(settings: Settings) -> AsyncIterator[Stripe]:
    made = Stripe(settings)
    try:
        yield made
    finally:
        await made.close()


@dataclass(frozen=True, slots=True)
class Opened:
    row: dict[str, Any]  # the stripe_connection row (its secrets still sealed)
    api_key: str | None  # None: no key of ENCORE_ENCRYPTION_KEYS opens it
    key_problem: str | None = None  # why, then


class Connections:
    """The programs' connections as a worker's run reads them: each read and its key opened once a run
    (`clear` between runs). The box is made at the first use, not with the worker's job list (`encore
    jobs list` makes one too)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._box: SecretBox | None = None
        self._found: dict[UUID, Opened | None] = {}

    def clear(self) -> None:
        self._found.clear()

    async def get(self, program_id: UUID) -> Opened | None:
        if program_id not in self._found:
            async with db.connection() as conn:
                row = await repository.get_connection(conn, program_id)
            opened = None
            if row is not None:
                if self._box is None:
                    self._box = self._settings.secret_box()
                try:
                    opened = Opened(row, self._box.open(row["secret_key"]))
                except CannotOpen as exc:
                    opened = Opened(row, None, str(exc))
            self._found[program_id] = opened
        return self._found[program_id]


def verifier() -> stripe.StripeClient:
    """A client for `construct_event` only (it makes no request: the key is never used)."""
    return stripe.StripeClient("sk_test_signature_only")


def is_passing(error: Exception) -> bool:
    """Worth another try later: Stripe unreachable, rate-limited, a conflict or its own error (5xx). Not:
    a request Stripe refuses as it is (4xx), which fails the same way every time."""
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(error, stripe.StripeError):
        status = error.http_status
        return status is None or status >= 500 or status in (409, 429)
    return True  # a database error or a bug: retried, then failed with its message


def describe(error: Exception) -> str:
    if isinstance(error, stripe.StripeError):
        status = error.http_status
        message = error.user_message or str(error) or type(error).__name__
        return f"Stripe answered {status}: {message}"[:1000] if status else f"Stripe: {message}"[:1000]
    return f"{type(error).__name__}: {error}"[:1000]
