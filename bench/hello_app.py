"""The HTTP ceiling: a bare Litestar JSON route, served by uvicorn exactly like the API.

`uvicorn bench.hello_app:app --workers N --no-access-log --log-level warning`
"""

from __future__ import annotations

from litestar import Litestar, get


@get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[hello, healthz], logging_config=None, debug=False)
