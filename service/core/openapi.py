"""The OpenAPI document as the API really behaves: every problem status an operation can answer, with
the problem+json schema; defaults as JSON values; integers as integers.

Litestar documents what a handler returns and a generic 400 of its own shape. The statuses that come
from the request pipeline are the same for every operation of a kind, so they are derived here from the
handler (a key needed: 401; a scope guard: 403; a body: 400, 413; path parameters: 404; an
Idempotency-Key: 409; any parameter or body: 422; headers over the size limit: 431; a rate limit,
outside /healthz, /readyz and /metrics: 429 with Retry-After and the RateLimit headers). What a use
case adds (a 404 for a customer named in the body, a 409 for a duplicate) the route declares with
`opt=problems(...)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from service.core.errors import PROBLEM_MEDIA_TYPE
from service.core.limits import EXEMPT_PATTERNS
from service.core.strict_input import INT64_MAX, TIME_RANGE, body_is_optional

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:encore:problem:<slug>, stable for programs to test"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what went wrong, for a person"},
        "field": {
            "type": "string",
            "description": "what was wrong: a JSON path into the body (`lines[0].sku`), or "
            "`path:<name>`, `query:<name>`, `header:<Name>`",
        },
        "instance": {"type": "string", "description": "the request's path"},
    },
    "additionalProperties": True,
}
PROBLEM_DESCRIPTIONS = {
    400: "The body is not JSON (or is empty where one is needed), or a required header is missing",
    401: "No API key, or one that is not valid or has been revoked",
    403: "The API key's scope does not allow this",
    404: "Not found in this program",
    409: "In conflict with the current state, or an Idempotency-Key reused for another request",
    413: "The body is larger than the limit",
    422: "A field, parameter or header is not valid, or an unknown query parameter was sent (`field` names it)",
    429: "Too many requests with this key (or from this address, without a key): wait `Retry-After` seconds",
    431: "The request's headers are larger than the limit (in all, or one of them: `field` names it)",
    503: "A service Encore asks on the way (Stripe) could not be reached: nothing changed, try again",
}
_RATE_HEADERS = {
    "Retry-After": "Seconds until a request is allowed again",
    "RateLimit-Limit": "Requests allowed a minute",
    "RateLimit-Remaining": "Requests allowed now",
    "RateLimit-Reset": "Seconds until the whole limit is available again",
    "RateLimit-Policy": "The limit and its window in seconds: `120;w=60`",
}
_OPT_KEY = "problems"


def problems(*statuses: int) -> dict[str, Any]:
    """`opt=problems(404, 409)` on a route: the statuses its use case can answer besides the pipeline's."""
    unknown = set(statuses) - set(PROBLEM_DESCRIPTIONS)
    if unknown:
        raise ValueError(f"no description for {sorted(unknown)}")
    return {_OPT_KEY: frozenset(statuses)}


_PAGES_KEY = "html_pages"


def html_pages(**statuses: str) -> dict[str, Any]:
    """`opt=html_pages(s404="...", s410="...")` on a page's route: the statuses it answers with a page
    (text/html) of its own, besides any problem the pipeline answers with the same status."""
    return {_PAGES_KEY: {int(name.removeprefix("s")): text for name, text in statuses.items()}}


def _statuses(
    handler: HTTPRouteHandler, method: str, has_path_params: bool, public: bool, headers: Iterable[str]
) -> set[int]:
    statuses: set[int] = {422, 431, *handler.opt.get(_OPT_KEY, ())}
    if not public:
        statuses.add(401)
    if handler.resolve_guards():
        statuses.add(403)
    if handler.parsed_data_field is not None and method not in ("GET", "HEAD", "DELETE"):
        statuses |= {400, 413}
    if has_path_params:
        statuses.add(404)
    lowered = {h.lower() for h in headers}
    if "idempotency-key" in lowered:
        statuses.add(409)
    return statuses


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": PROBLEM_DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 429:
        response["headers"] = {
            name: {
                "description": text,
                "required": True,
                "schema": {"type": "integer" if name != "RateLimit-Policy" else "string"},
            }
            for name, text in _RATE_HEADERS.items()
        }
    return response


def _json_value(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=None)


TIME_NOTE = f"RFC 3339; a time sent is accepted {TIME_RANGE}"


def _tidy(node: Any) -> Any:
    """Defaults as JSON values, integer bounds as integers, single-choice `oneOf`s folded in, the
    accepted range of times said where a time is."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _tidy(value) for key, value in node.items()}
    one_of = node.get("oneOf")
    if isinstance(one_of, list) and len(one_of) == 1 and isinstance(one_of[0], dict):
        only = one_of[0]
        if not set(only) & (set(node) - {"oneOf"}):
            node = {**{k: v for k, v in node.items() if k != "oneOf"}, **only}
    if "default" in node:
        node["default"] = _json_value(node["default"])
    if node.get("format") == "date-time" and node.get("type") == "string":
        node["description"] = f"{node['description']} ({TIME_NOTE})" if node.get("description") else TIME_NOTE
    if node.get("type") == "integer":
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(node.get(bound), float):
                node[bound] = min(int(node[bound]), INT64_MAX)
    return node


def finish(app: Litestar, document: dict[str, Any], public_paths: list[str]) -> dict[str, Any]:
    """The document Litestar generated, completed (see the module's doc)."""
    document = _tidy(document)
    document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    public = [re.compile(p) for p in public_paths]
    unlimited = [re.compile(p) for p in EXEMPT_PATTERNS]
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path_item = document["paths"].get(route.path_format)
        if path_item is None:  # not in the schema
            continue
        for method, (handler, kwargs_model) in route.route_handler_map.items():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            headers = [p.field_alias for p in kwargs_model.expected_header_params]
            is_public = any(p.match(route.path_format) for p in public)
            if is_public:
                operation["security"] = []  # the document's default is the bearer key
            statuses = _statuses(handler, method, bool(route.path_parameters), is_public, headers)
            if not any(p.match(route.path_format) for p in unlimited):
                statuses.add(429)
            responses = operation.setdefault("responses", {})
            responses.pop("400", None)  # Litestar's own validation shape, which this API never sends
            for status in sorted(statuses):
                responses[str(status)] = _problem_response(status)
            for status, text in handler.opt.get(_PAGES_KEY, {}).items():
                page = {"text/html": {"schema": {"type": "string"}}}
                if str(status) in responses:
                    responses[str(status)]["content"].update(page)
                    responses[str(status)]["description"] += f"; or a page: {text}"
                else:
                    responses[str(status)] = {"description": text, "content": page}
            body = operation.get("requestBody")
            if body is not None and handler.parsed_data_field is not None:
                body["required"] = not body_is_optional(handler)
    return document
