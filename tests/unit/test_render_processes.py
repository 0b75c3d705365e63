"""Render processes, the backstop behind the render budget: a job that runs past its time is stopped by
killing its process, one that takes too much memory fails, and the next job gets a fresh process."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from service.messaging import service
from service.messaging.bounds import RenderLimit
from service.messaging.processes import RenderProcesses
from tests.support.messages import batch

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _pid() -> int:
    return os.getpid()


def _sleep(seconds: float) -> str:
    time.sleep(seconds)  # one step no in-process check can interrupt
    return "woke"


def _allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


@pytest.fixture
def processes() -> Any:
    made = RenderProcesses(1)
    yield made
    made.close()


def test_a_job_past_its_time_is_stopped_and_the_next_gets_a_new_process(processes: RenderProcesses) -> None:
    first = processes.run(_pid, timeout=30)
    assert first != os.getpid()
    started = time.monotonic()
    with pytest.raises(RenderLimit) as stopped:
        processes.run(_sleep, 30.0, timeout=0.5)
    assert stopped.value.limit == "cpu_time" and "stopped after 0.5 s" in stopped.value.detail
    assert time.monotonic() - started < 5
    second = processes.run(_pid, timeout=30)
    assert second != first  # the stopped one was killed and replaced
    assert processes.run(_sleep, 0.0, timeout=30) == "woke"


def test_a_job_over_the_memory_limit_fails_and_its_process_lives_on(processes: RenderProcesses) -> None:
    before = processes.run(_pid, timeout=30)
    with pytest.raises(RenderLimit) as refused:
        processes.run(_allocate, 2048, timeout=30)
    assert refused.value.limit == "memory"
    assert processes.run(_allocate, 16, timeout=30) == 16 * 1024 * 1024
    assert processes.run(_pid, timeout=30) == before


def test_a_batch_whose_process_is_stopped_fails_only_what_stopped_it(monkeypatch: Any) -> None:
    # Timeouts shorter than the slow template's own CPU limit, so that its process is the one stopping it.
    monkeypatch.setattr(service, "BATCH_RENDER_MARGIN_SECONDS", 0.0)
    monkeypatch.setattr(service, "PROGRAM_RENDER_SECONDS_PER_BATCH", 0.3)
    monkeypatch.setattr(service, "MESSAGE_RENDER_SECONDS", 0.3)
    slow, fine = uuid4(), uuid4()
    rows, facts = batch(NOW, [slow, fine, slow], slow)
    outcomes = {
        p.row["id"]: p.outcome
        for p in service.prepare_isolated(rows, facts, NOW, b"k" * 32, "https://e.example")
    }
    assert outcomes[1]["status"] == "failed"
    assert outcomes[1]["reason"].startswith("could not render: over the render limit: stopped after 0.3 s")
    assert outcomes[2].get("status") is None and outcomes[2]["subject"]  # the other program's: rendered
    assert outcomes[3]["status"] == "deferred"  # the slow program's next one waits a minute
