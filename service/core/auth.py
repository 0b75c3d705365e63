"""API keys: `Authorization: Bearer <key>`; keys are stored as SHA-256 only.

A key has one scope, and a scope is a set of permissions: what its holder may do. Each handler's guard
names the one permission it needs (`guards=[requires(Permission.CONFIGURE)]`); a key passes when its
scope holds it. The README's "Scopes" table says the same in words, and a test holds every handler to it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from service.core import db


class Permission(StrEnum):
    """What a key may do."""

    READ = "read"  # every GET of the program's loyalty data, and the quote (it writes nothing)
    RECORD = "record"  # what a shop's backend does: customers, orders, refunds, events
    ADJUST = "adjust"  # corrections outside any budget: ledger adjustments, a tier set by hand
    RECOVER = "recover"  # customer care: recovery actions from the recovery budget, cases and their notes
    CONFIGURE = (
        "configure"  # the programme's design: rules, tiers, templates, journeys, previews, simulations
    )
    ADMINISTER = "administer"  # API keys, webhooks, program and messaging settings, suppressions, jobs


Scope = Literal["read", "server", "agent", "marketer", "admin"]
SCOPE_NAMES: tuple[Scope, ...] = get_args(Scope)
SCOPES: dict[Scope, frozenset[Permission]] = {
    "read": frozenset({Permission.READ}),
    "server": frozenset({Permission.READ, Permission.RECORD}),
    # An agent is its key: recovery spends a budget per agent, so agents make no adjustments outside it.
    "agent": frozenset({Permission.READ, Permission.RECOVER}),
    "marketer": frozenset({Permission.READ, Permission.CONFIGURE}),
    "admin": frozenset(Permission),
}


def scopes_with(permission: Permission) -> tuple[Scope, ...]:
    """The scopes that hold `permission`, in SCOPE_NAMES' order."""
    return tuple(scope for scope in SCOPE_NAMES if permission in SCOPES[scope])


# Paths served without a key (patterns, as the authentication middleware takes them).
PUBLIC_PATHS = [
    "^/healthz",
    "^/readyz",
    "^/metrics",
    "^/schema",
    "^/v1/unsubscribe/",
    "^/v1/answer/",  # a survey's signed answer link
    "^/v1/stripe/webhooks/",  # the signature is the authentication
]


@dataclass(frozen=True, slots=True)
class Principal:
    program_id: UUID
    key_id: UUID
    scope: Scope
    name: str = ""  # the key's name: an agent key's is the agent's ("Recovery by Mira")


def new_key() -> tuple[str, str, str]:
    """A fresh key: (plaintext shown once, display prefix, hash stored)."""
    plaintext = "enc_" + secrets.token_urlsafe(30)
    return plaintext, plaintext[:12], hash_key(plaintext)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def bearer_token(header: str) -> str | None:
    """The key in an Authorization header's value (`Bearer <key>`, decoded as latin-1 as Litestar does),
    or None when it holds none. The one reading of the header: the rate limit keys on what this returns,
    so a header that authentication accepts cannot reach a count of its own."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        # The first of several: the rate limit refuses a request with more than one before this runs.
        token = bearer_token(connection.headers.get("authorization", ""))
        if token is None:
            raise NotAuthorizedException("Send the API key as `Authorization: Bearer <key>`.")
        async with db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT id, program_id, scope, name FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL",
                hash_key(token),
            )
        if row is None:
            raise NotAuthorizedException("The API key is not valid or has been revoked.")
        principal = Principal(row["program_id"], row["id"], row["scope"], row["name"])
        return AuthenticationResult(user=principal, auth=principal)


@dataclass(frozen=True, slots=True)
class Requires:
    """A guard: the key's scope must hold `permission` (tests read the permission off the guard)."""

    permission: Permission

    def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if self.permission not in SCOPES.get(principal.scope, frozenset()):
            would_do = " or ".join(f"`{scope}`" for scope in scopes_with(self.permission))
            raise PermissionDeniedException(
                f"This needs a key with the {would_do} scope; this key has `{principal.scope}`."
            )


def requires(permission: Permission) -> Requires:
    """The guard of a handler that needs `permission`."""
    return Requires(permission)
