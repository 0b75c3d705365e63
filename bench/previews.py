"""Hostile previews: how fast `/healthz` answers while ten previews of a template that spends its whole
render budget (1 s of CPU each) run at once, against the same probe with nothing else running.

On the API server of bench.run (the production uvicorn, after the status phase): `/healthz` is asked
every 20 ms for BENCH_PREVIEW_IDLE_SECONDS (3) with nothing else running (the baseline), then while ten
`POST /v1/templates/preview` of an exponential macro run at once (each answers 422, limit `cpu_time`).
Target: every probe under 100 ms while they run (renders run beside the event loop, never on it).

Run alone: `python -m bench.previews BASE_URL ADMIN_KEY`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

import httpx

TARGET_MAX_MS = 100.0
PREVIEWS = 10
PROBE_INTERVAL = 0.02
# Doubles its work at every level: it runs until the render's CPU limit stops it.
EXPONENTIAL = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"


def _summary(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "probes": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1)
        if ordered
        else None,
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
    }


async def _probe(http: httpx.AsyncClient, until: Any) -> list[float]:
    latencies = []
    while not until():
        started = time.perf_counter()
        response = await http.get("/healthz")
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"/healthz answered {response.status_code}")
        await asyncio.sleep(PROBE_INTERVAL)
    return latencies


async def measure(base: str, api_key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {
        "message_type": "win_back",
        "locale": "en",
        "parts": {"subject": "Hi", "text": "Hi", "html": EXPONENTIAL},
    }
    limits = httpx.Limits(max_connections=PREVIEWS + 2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        idle_seconds = float(os.environ.get("BENCH_PREVIEW_IDLE_SECONDS", "3"))
        idle_until = time.monotonic() + idle_seconds
        idle = await _probe(http, lambda: time.monotonic() > idle_until)
        started = time.monotonic()
        previews = [
            asyncio.create_task(http.post("/v1/templates/preview", json=body, headers=headers))
            for _ in range(PREVIEWS)
        ]
        busy = await _probe(http, lambda: all(p.done() for p in previews))
        answers = [p.result() for p in previews]
        seconds = time.monotonic() - started
    limits_hit = sorted({a.json().get("limit", "?") for a in answers if a.status_code == 422})
    result = {
        "idle": _summary(idle),
        "busy": _summary(busy),
        "previews": PREVIEWS,
        "preview_seconds": round(seconds, 2),
        "preview_statuses": sorted({a.status_code for a in answers}),
        "limits": limits_hit,
        "target_max_ms": TARGET_MAX_MS,
    }
    result["met"] = (
        result["busy"]["max_ms"] is not None
        and result["busy"]["max_ms"] < TARGET_MAX_MS
        and result["preview_statuses"] == [422]
    )
    return result


def format_results(result: dict[str, Any]) -> str:
    idle, busy = result["idle"], result["busy"]
    return "\n".join(
        [
            f"/healthz while {result['previews']} hostile previews run ({result['preview_seconds']} s, answers "
            f"{result['preview_statuses']}, limit {', '.join(result['limits'])}):",
            f"  idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, max {idle['max_ms']} ms ({idle['probes']} probes)",
            f"  busy: p50 {busy['p50_ms']} ms, p99 {busy['p99_ms']} ms, max {busy['max_ms']} ms ({busy['probes']} probes)"
            f"  target: max < {TARGET_MAX_MS:g} ms {'met' if result['met'] else 'MISSED'}",
        ]
    )


if __name__ == "__main__":
    print(format_results(asyncio.run(measure(sys.argv[1], sys.argv[2]))))
