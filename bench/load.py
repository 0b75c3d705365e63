"""A light closed-loop HTTP load generator: N connections, N tasks, one process, aiohttp on uvloop.

Each task sends a request, waits for the whole response, records its latency and sends the next one,
until the deadline. Requests started during the warm-up are sent but not recorded. Every response is
counted: 2xx as ok, anything else (and every exception) as an error, with a few bodies kept as samples.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

MAX_ERROR_SAMPLES = 5


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


async def run_phase(
    name: str,
    make_request: Callable[[int], Request],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    on_ok: Callable[[Any], None] | None = None,
    timeout: float = 30.0,
) -> PhaseResult:
    result = PhaseResult(name)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + seconds
    last_done = measure_from

    async def worker(index: int) -> None:
        nonlocal last_done
        while True:
            request = make_request(index)
            sent = time.perf_counter()
            if sent >= deadline:
                return
            status: int | None = None
            body = b""
            failure: str | None = None
            try:
                async with session.request(
                    request.method, request.url, headers=request.headers, data=request.body
                ) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
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

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await session.close()
    result.seconds = last_done - measure_from
    return result
