"""Ten hostile previews at once against a real `encore serve`: each is refused within its CPU limit, and
the API keeps answering meanwhile (renders never run on the event loop)."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import Api
from tests.support.server import encore_serve

# About a second of CPU each (the limit), in every part the save check renders.
EXPONENTIAL = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"


async def test_healthz_answers_in_under_100_ms_while_ten_hostile_previews_run(
    api: Api, database_url: str
) -> None:
    body = {
        "message_type": "win_back",
        "locale": "en",
        "parts": {"subject": "Hi", "text": "Hi", "html": EXPONENTIAL},
    }
    with encore_serve(database_url) as base:
        async with httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=20)
        ) as http:
            previews = [
                asyncio.create_task(http.post("/v1/templates/preview", json=body, headers=api.headers()))
                for _ in range(10)
            ]
            await asyncio.sleep(0.3)  # the renders have started
            latencies = []
            while not all(p.done() for p in previews):
                started = time.perf_counter()
                health = await http.get("/healthz")
                latencies.append(time.perf_counter() - started)
                assert health.status_code == 200
                await asyncio.sleep(0.05)
            answers = [p.result() for p in previews]
    assert [a.status_code for a in answers] == [422] * 10, answers[0].text
    assert {a.json()["limit"] for a in answers} == {"cpu_time"}
    assert len(latencies) >= 10, "the previews ran long enough to be measured against"
    assert max(latencies) < 0.1, sorted(latencies)[-5:]
