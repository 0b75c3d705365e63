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

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Problem:
        """A problem from a problem body (as `validation_problem` builds one)."""
        problem = cls(body["detail"], field=body.get("field"))
        problem.status = body["status"]
        problem.slug = body["type"].rsplit(":", 1)[-1]
        problem.title = body["title"]
        return problem


class MalformedBody(Problem):
    slug = "malformed-json"
    title = "The body is not valid JSON"


class MissingHeader(Problem):
    slug = "missing-header"
    title = "A required header is missing"


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


_AT_PATH = re.compile(r"\s*-\s*at (?:`key` in )?`\$(?P<path>[^`]*)`")
_REGEX = re.compile(r'^Expected `str` matching regex "(?P<regex>.*)"$', re.DOTALL)
# What a pattern means, in words (`service.core.fields.matching` registers them): an address check's
# regex is no answer to give a person.
PATTERN_MEANINGS: dict[str, str] = {}


def _in_words(detail: str) -> str:
    match = _REGEX.match(detail)
    if match is None:
        return detail
    regex = match.group("regex").encode().decode("unicode_escape")
    meaning = PATTERN_MEANINGS.get(regex)
    return f"expected {meaning}" if meaning else detail


def _json_path(path: str) -> str:
    """msgspec's `$.lines[0].quantity` becomes `lines[0].quantity`."""
    return path[1:] if path.startswith(".") else path


def validation_problem(message: str, default_field: str | None = None) -> dict[str, Any]:
    """Turn a msgspec validation message into a problem naming the field (a JSON path like `lines[0].sku`)."""
    if "malformed" in message.lower():
        return problem_body(MalformedBody.status, MalformedBody.slug, MalformedBody.title, message)
    match = _AT_PATH.search(message)
    path = _json_path(match.group("path")) if match else ""
    detail = _in_words(_AT_PATH.sub("", message).strip())
    if "at `key` in `$" in message:
        detail = f"a key: {detail}"
    named = re.search(r"(?:missing required field|unknown field) `([^`]+)`", detail)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    field = path or default_field
    if field and field.startswith("data."):
        field = field[len("data.") :]
    return problem_body(422, "invalid-input", "The request is not valid", detail, field)


_MISSING = re.compile(r"^Missing required (?P<source>\w+) parameter '(?P<key>[^']+)'")


def _param_field(source: str, key: str) -> str:
    # Header names are case-insensitive; name them as the documentation writes them.
    return (
        f"header:{'-'.join(p.capitalize() for p in key.split('-'))}"
        if source == "header"
        else f"{source}:{key}"
    )


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's own checks of path, query and header parameters (bodies are decoded in strict_input)."""
    missing = _MISSING.match(str(exc.detail))
    if missing:
        source, key = missing.group("source"), missing.group("key")
        field = _param_field(source, key)
        if source == "header":
            body = problem_body(
                400, MissingHeader.slug, MissingHeader.title, f"send the {field[7:]} header", field
            )
        else:
            body = problem_body(
                422, InvalidInput.slug, InvalidInput.title, "this parameter is required", field
            )
        return _response(request, body)
    item: dict[str, Any] = {}
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        item = exc.extra[0]
    message = str(item.get("message") or exc.detail)
    key, source = item.get("key"), item.get("source")
    source = getattr(source, "value", source)  # a ParamType, or a plain string
    if not key or not source or source == "body":
        return _response(request, validation_problem(message, key))
    body = problem_body(
        422, InvalidInput.slug, InvalidInput.title, _in_words(message), _param_field(source, key)
    )
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
