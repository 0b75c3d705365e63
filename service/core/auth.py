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


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("Send the API key as `Authorization: Bearer <key>`.")
        async with db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT id, program_id, scope FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL",
                hash_key(token.strip()),
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
