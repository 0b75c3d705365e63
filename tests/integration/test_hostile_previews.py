"""Ten hostile previews at once against a real `encore serve`: each is refused within its CPU limit, and
the API keeps answering meanwhile (renders never run on the event loop; `make bench` measures how fast)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from service.messaging import bounds
from tests.conftest import Api, make_program
from tests.support.messages import EXPONENTIAL
from tests.support.server import encore_serve

# About a second of CPU each (the limit), in every part the save check renders.
HOSTILE_DRAFT = {
    "message_type": "win_back",
    "locale": "en",
    "parts": {"subject": "Hi", "text": "Hi", "html": EXPONENTIAL},
}


async def test_healthz_answers_in_under_100_ms_while_ten_hostile_previews_run(
    api: Api, database_url: str
) -> None:
    with encore_serve(database_url) as base:
        async with httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=20)
        ) as http:
            previews = [
                asyncio.create_task(
                    http.post("/v1/templates/preview", json=HOSTILE_DRAFT, headers=api.headers())
                )
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
    # A render on the event loop would hold a probe for a whole render (1 s of CPU). The latency target
    # itself (every probe under 100 ms) is measured by `make bench` (bench/previews.py), not here: a
    # timed test on a shared 2-core machine would fail on the machine's noise, not on the code.
    assert max(latencies) < bounds.MAX_CPU_SECONDS / 2, sorted(latencies)[-5:]


async def test_one_programs_hostile_previews_queue_behind_each_other_not_in_front_of_another_program(
    api: Api, client: Any, database_url: str
) -> None:
    other = make_program(client, "Other shop")
    fine = {"message_type": "win_back", "locale": "en", "count": 3}
    with encore_serve(database_url, ENCORE_DB_POOL_MAX="4") as base:
        async with httpx.AsyncClient(
            base_url=base, timeout=120, limits=httpx.Limits(max_connections=20)
        ) as http:
            theirs = [
                asyncio.create_task(
                    http.post("/v1/templates/preview", json=HOSTILE_DRAFT, headers=api.headers())
                )
                for _ in range(8)  # more than the API's database pool: waiting requests must hold none
            ]
            await asyncio.sleep(0.5)
            started = time.monotonic()
            program = await http.get("/v1/program", headers=other.headers())
            preview = await http.post("/v1/templates/preview", json=fine, headers=other.headers())
            waited = time.monotonic() - started
            still_running = sum(not t.done() for t in theirs)
            answers = await asyncio.gather(*theirs)
    assert program.status_code == 200 and preview.status_code == 200, preview.text
    assert still_running > 4, "the hostile previews run one at a time: most were still waiting"
    assert waited < 5 * bounds.MAX_CPU_SECONDS, waited  # at most one render's wait, not thirty
    assert {a.status_code for a in answers} == {422}
