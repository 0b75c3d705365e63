"""API keys: `Authorization: Bearer <key>`; keys are stored as SHA-256 only; scopes admin ⊃ server ⊃ read."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from service.core import db

Scope = Literal["admin", "server", "read"]
SCOPE_RANK: dict[str, int] = {"read": 1, "server": 2, "admin": 3}
# Paths served without a key (patterns, as the authentication middleware takes them).
PUBLIC_PATHS = ["^/healthz", "^/readyz", "^/metrics", "^/schema", "^/v1/unsubscribe/"]


@dataclass(frozen=True, slots=True)
class Principal:
    program_id: UUID
    key_id: UUID
    scope: Scope


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
                "SELECT id, program_id, scope FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL",
                hash_key(token),
            )
        if row is None:
            raise NotAuthorizedException("The API key is not valid or has been revoked.")
        principal = Principal(row["program_id"], row["id"], row["scope"])
        return AuthenticationResult(user=principal, auth=principal)


def requires(scope: Scope) -> Any:
    """A guard: the key's scope must be at least `scope`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if SCOPE_RANK[principal.scope] < SCOPE_RANK[scope]:
            raise PermissionDeniedException(
                f"This needs a key with the `{scope}` scope; this key has `{principal.scope}`."
            )

    return guard
