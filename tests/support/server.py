"""A real `encore serve` process (uvicorn) on the tests' database, for tests that need one over HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.cli import running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def encore_serve(database_url: str, **env: str) -> Iterator[str]:
    """`encore serve` on a free port for the block; yields its base URL (its output is shown if it fails
    to start)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"ENCORE_LOG_LEVEL": "WARNING", **env}
    with running(database_url, "serve", "--port", str(port), **settings) as output:
        deadline = time.monotonic() + 60
        while True:
            if output.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"encore serve did not start:\n{output.text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
