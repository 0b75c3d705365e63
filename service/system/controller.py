from __future__ import annotations

from litestar import Response, get

from service.core import db


@get("/healthz", tags=["system"], summary="The process is up", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["system"], summary="The database answers", include_in_schema=True)
async def readyz() -> Response[dict[str, str]]:
    try:
        await db.ping()
    except Exception as exc:  # any failure to reach the database means not ready
        return Response({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
    return Response({"status": "ready"}, status_code=200)
