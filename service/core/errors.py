"""RFC 9457 problem details: every error the API returns names what went wrong and where."""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger("encore.errors")


class Problem(Exception):
    """A domain or request error shaped as problem details. `field` is a JSON path such as `lines[0].sku`."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}


class InvalidInput(Problem):
    status = 422
    slug = "invalid-input"
    title = "The request is not valid"


class NotFound(Problem):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class IdempotencyMismatch(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class InsufficientPoints(Conflict):
    slug = "insufficient-points"
    title = "Not enough points"


def problem_body(
    status: int, slug: str, title: str, detail: str, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:encore:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update(extra)
    return body


def _response(request: Request[Any, Any, Any], body: dict[str, Any]) -> Response[dict[str, Any]]:
    body.setdefault("instance", request.url.path)
    return Response(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE)


def handle_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return _response(
        request, problem_body(exc.status, exc.slug, exc.title, exc.detail, exc.field, **exc.extra)
    )


_AT_PATH = re.compile(r"\s*-\s*at `\$(?P<path>[^`]*)`")


def _json_path(path: str) -> str:
    """msgspec's `$.lines[0].quantity` becomes `lines[0].quantity`."""
    return path[1:] if path.startswith(".") else path


def validation_problem(message: str, default_field: str | None = None) -> dict[str, Any]:
    """Turn a msgspec validation message into a problem naming the field (a JSON path like `lines[0].sku`)."""
    if "malformed" in message.lower():
        return problem_body(400, "malformed-json", "The body is not valid JSON", message)
    match = _AT_PATH.search(message)
    path = _json_path(match.group("path")) if match else ""
    detail = _AT_PATH.sub("", message).strip()
    named = re.search(r"(?:missing required field|unknown field) `([^`]+)`", detail)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    field = path or default_field
    if field and field.startswith("data."):
        field = field[len("data.") :]
    return problem_body(422, "invalid-input", "The request is not valid", detail, field)


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    extra = exc.extra
    messages: list[str] = []
    keys: list[str | None] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                messages.append(str(item.get("message", "")))
                key = item.get("key")
                source = item.get("source")
                keys.append(f"{source}:{key}" if source and source != "body" and key else key)
    detail = messages[0] if messages else str(exc.detail)
    body = validation_problem(detail, keys[0] if keys else None)
    if keys and keys[0] and ":" in keys[0]:
        # A query parameter or header: name it as such.
        body["field"] = keys[0]
    return _response(request, body)


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        return handle_unexpected(request, exc)
    if isinstance(exc, NotAuthorizedException):
        body = problem_body(status, "unauthorized", "Authentication required", str(exc.detail))
        response = _response(request, body)
        response.headers["WWW-Authenticate"] = 'Bearer realm="encore"'
        return response
    if isinstance(exc, PermissionDeniedException):
        return _response(request, problem_body(status, "forbidden", "Not allowed", str(exc.detail)))
    slug = {
        404: "not-found",
        405: "method-not-allowed",
        413: "body-too-large",
        415: "unsupported-media-type",
        429: "too-many-requests",
    }.get(status, "http-error")
    title = {413: "The request body is too large"}.get(status, str(exc.detail))
    return _response(request, problem_body(status, slug, title, str(exc.detail)))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error(
        "unhandled_error", path=request.url.path, error=repr(exc), cause=repr(exc.__cause__), exc_info=exc
    )
    body = problem_body(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal-error", "Internal error", "An unexpected error occurred."
    )
    return _response(request, body)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    Problem: handle_problem,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
