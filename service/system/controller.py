from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from service.core import db


@get("/healthz", tags=["system"], summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    tags=["system"],
    summary="The database answers",
    responses={
        503: ResponseSpec(dict[str, str], description="The database does not answer", generate_examples=False)
    },
)
async def readyz() -> Response[dict[str, str]]:
    try:
        await db.ping()
    except Exception as exc:  # any failure to reach the database means not ready
        return Response({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
    return Response({"status": "ready"}, status_code=200)


# Litestar adds the charset to a text media type itself.
@get(
    "/metrics",
    tags=["system"],
    summary="Prometheus metrics of this process",
    media_type=CONTENT_TYPE_LATEST.replace("; charset=utf-8", ""),
)
async def metrics() -> bytes:
    return generate_latest(REGISTRY)
