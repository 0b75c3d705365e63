"""A light closed-loop HTTP load generator: N connections, N tasks, one process, on uvloop.

Each task owns one keep-alive connection: it sends a request, waits for the whole response, records
its latency and sends the next one, until the deadline. Requests started during the warm-up are sent but
not recorded. Every response is counted: 2xx as ok, anything else (and every exception) as an error,
with a few bodies kept as samples.

Two clients: "raw" (default) writes HTTP/1.1 requests on an asyncio transport and parses responses with
httptools, the parser uvicorn itself uses; it costs a fraction of the CPU of a general-purpose client,
which matters on a 2-core machine where the load generator competes with the server. "aiohttp" is the
same loop over an aiohttp session, to cross-check the raw client.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import httptools
from yarl import URL

MAX_ERROR_SAMPLES = 5
CLIENTS = ("raw", "aiohttp")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: URL
    headers: dict[str, str]
    body: bytes | None = None
    tag: Any = None  # handed to on_ok when the response is 2xx


@dataclass(slots=True)
class PhaseResult:
    name: str
    seconds: float = 0.0
    ok: int = 0
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    error_samples: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # of the 2xx responses
    # pgbench reports its own figures; for HTTP phases these are computed from the latencies.
    rps_override: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        if self.rps_override is not None:
            return self.rps_override
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float | None:
        return percentile(sorted(self.latencies_ms), p)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "seconds": round(self.seconds, 3),
            "requests": self.ok + self.errors,
            "ok": self.ok,
            "errors": self.errors,
            "statuses": dict(sorted(self.statuses.items())),
            "rps": round(self.rps, 1),
            "latency_ms": {
                "mean": round(sum(ordered) / len(ordered), 3) if ordered else None,
                "p50": _round(percentile(ordered, 50)),
                "p90": _round(percentile(ordered, 90)),
                "p99": _round(percentile(ordered, 99)),
                "max": _round(ordered[-1] if ordered else None),
            },
            "error_samples": self.error_samples,
            "notes": self.notes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def encode_request(request: Request) -> bytes:
    url = request.url
    lines = [f"{request.method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines.extend(f"{name}: {value}" for name, value in request.headers.items())
    body = request.body or b""
    if request.body is not None or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _RawConnection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> _RawConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: cls(loop), host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))
        self.chunks = []
        if not self.parser.should_keep_alive():
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _time_out(self, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        if not waiter.done():
            self._fail(TimeoutError("no complete response in time"))
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def request(self, payload: bytes, time_limit: float) -> tuple[int, bytes]:
        assert self.transport is not None and self.waiter is None
        waiter: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        self.waiter = waiter
        self.transport.write(payload)
        handle = self.loop.call_later(time_limit, self._time_out, waiter)
        try:
            return await waiter
        finally:
            handle.cancel()


Send = Callable[[Request], Awaitable[tuple[int, bytes]]]


def _raw_sender(request_timeout: float) -> tuple[Send, Callable[[], None]]:
    connection: _RawConnection | None = None

    async def send(request: Request) -> tuple[int, bytes]:
        nonlocal connection
        if connection is None or connection.closed:
            connection = await _RawConnection.open(request.url.host or "127.0.0.1", request.url.port or 80)
        try:
            return await connection.request(encode_request(request), request_timeout)
        except BaseException:
            connection.close()
            connection = None
            raise

    def close() -> None:
        if connection is not None:
            connection.close()

    return send, close


async def run_phase(
    name: str,
    make_request: Callable[[int], Request],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    on_ok: Callable[[Any], None] | None = None,
    client: str = "raw",
    request_timeout: float = 30.0,
) -> PhaseResult:
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    result = PhaseResult(name)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        timeout=aiohttp.ClientTimeout(total=request_timeout),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )

    async def aiohttp_send(request: Request) -> tuple[int, bytes]:
        async with session.request(
            request.method, request.url, headers=request.headers, data=request.body
        ) as response:
            return response.status, await response.read()

    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + seconds
    last_done = measure_from

    async def worker(index: int) -> None:
        nonlocal last_done
        send, close = _raw_sender(request_timeout) if client == "raw" else (aiohttp_send, lambda: None)
        try:
            while True:
                request = make_request(index)
                sent = time.perf_counter()
                if sent >= deadline:
                    return
                status: int | None = None
                body = b""
                failure: str | None = None
                try:
                    status, body = await send(request)
                except (aiohttp.ClientError, httptools.HttpParserError, TimeoutError, OSError) as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                done = time.perf_counter()
                if sent < measure_from:
                    if failure is not None:
                        await asyncio.sleep(0.05)  # don't spin on a server that is down
                    continue
                last_done = max(last_done, done)
                if status is not None and 200 <= status < 300:
                    result.ok += 1
                    result.statuses[str(status)] += 1
                    result.latencies_ms.append((done - sent) * 1000)
                    if on_ok is not None:
                        on_ok(request.tag)
                    continue
                result.errors += 1
                key = str(status) if status is not None else (failure or "error").split(":", 1)[0]
                result.statuses[key] += 1
                if len(result.error_samples) < MAX_ERROR_SAMPLES:
                    result.error_samples.append(
                        {
                            "status": status,
                            "request": f"{request.method} {request.url.path}",
                            "body": body[:2000].decode(errors="replace") if failure is None else failure,
                        }
                    )
                if failure is not None:
                    await asyncio.sleep(0.05)
        finally:
            close()

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await session.close()
    result.seconds = last_done - measure_from
    return result
