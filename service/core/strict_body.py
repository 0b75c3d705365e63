"""Strict JSON bodies: Litestar converts request bodies in msgspec's lax mode (it would take "9000" for
9000); a loyalty API must refuse a string where a number belongs. This hook decodes the body strictly
against the handler's `data` type before Litestar does, and names the offending field."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from service.core.errors import Problem, validation_problem


class BodyProblem(Problem):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["detail"], field=body.get("field"))
        self.status = body["status"]
        self.slug = body["type"].rsplit(":", 1)[-1]
        self.title = body["title"]


async def decode_strictly(request: Request[Any, Any, Any]) -> None:
    data_field = request.route_handler.parsed_data_field
    if data_field is None or request.method in ("GET", "HEAD", "DELETE"):
        return
    raw = await request.body()
    try:
        msgspec.json.decode(raw, type=data_field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        raise BodyProblem(validation_problem(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise BodyProblem(
            {
                "status": 400,
                "type": "urn:encore:problem:malformed-json",
                "title": "The body is not valid JSON",
                "detail": str(exc),
            }
        ) from exc
