"""The `encore` command as a real process: one-shot calls, and long-running ones whose output is read
line by line while they run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.cli import stop_process

ROOT = Path(__file__).resolve().parents[2]
# `encore worker` for tests: quick rounds of the event-driven jobs, local http webhooks allowed.
FAST_WORKER = {
    "ENCORE_LOG_LEVEL": "WARNING",
    "ENCORE_WEBHOOKS_ALLOW_LOCAL_HTTP": "1",
    "ENCORE_DISPATCH_INTERVAL_SECONDS": "0.2",
    "ENCORE_DELIVER_INTERVAL_SECONDS": "0.2",
    "ENCORE_JOURNEYS_INTERVAL_SECONDS": "0.2",
    "ENCORE_MESSAGE_SEND_INTERVAL_SECONDS": "0.2",
}


def encore(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`encore ARGS` on the test database; `env` adds ENCORE_* settings."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**os.environ, "ENCORE_DATABASE_URL": database_url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class Output:
    """What a running process has printed so far (stdout and stderr, one line each)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, needle: str, seconds: float = 20.0) -> str:
        """The output once it contains `needle`; fails when the process exits or time runs out first."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if needle in (text := self.text()):
                return text
            if self.process.poll() is not None:
                time.sleep(0.2)  # the reader may still be taking the last lines
                raise AssertionError(f"exited ({self.process.returncode}) before {needle!r}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} within {seconds} s:\n{self.text()}")


@contextmanager
def running(database_url: str, *args: str, **env: str) -> Iterator[Output]:
    """`encore ARGS` running for the block (stopped with SIGTERM after it, killed if it won't stop)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**os.environ, "ENCORE_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Output(process)
    finally:
        stop_process(process)
