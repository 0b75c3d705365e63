"""`encore webhooks listen`: the local receiver for README step 6, fed by the real worker process."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tests.conftest import Api, idempotency
from tests.support.cli import FAST_WORKER, Output, encore, running


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _subscribe(api: Api, port: int) -> dict[str, Any]:
    body = {"url": f"http://127.0.0.1:{port}/hooks", "event_types": ["order.*"]}
    response = await api.client.post("/v1/webhook-endpoints", json=body, headers=api.headers(**idempotency()))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _until(output: Output, needle: str, seconds: float = 20.0) -> str:
    return await asyncio.to_thread(output.wait_for, needle, seconds)


async def test_listen_prints_each_delivery_and_checks_its_signature(api: Api, database_url: str) -> None:
    right, wrong = _free_port(), _free_port()
    endpoint = await _subscribe(api, right)
    other = await _subscribe(api, wrong)
    secret = endpoint["secret"]
    assert secret.startswith("whsec_") and other["secret"] != secret
    # The second listener is given the first endpoint's secret: its deliveries must not verify.
    with (
        running(database_url, "webhooks", "listen", "--port", str(right), "--secret", secret) as listener,
        running(database_url, "webhooks", "listen", "--port", str(wrong), "--secret", secret) as impostor,
    ):
        await _until(listener, "listening on http://127.0.0.1:")
        await _until(impostor, "listening on http://127.0.0.1:")
        assert (await api.order("1001", "cust-42")).status_code == 201
        with running(database_url, "worker", **FAST_WORKER) as worker:
            try:
                printed = await _until(listener, "signature verified")
                refused = await _until(impostor, "SIGNATURE INVALID")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nworker:\n{worker.text()}") from exc
    assert "/hooks order.created webhook-id=" in printed
    assert '"order": "1001"' in printed and '"customer": "cust-42"' in printed  # a short payload
    assert "/hooks order.created" in refused and "No matching signature found" in refused
    deliveries = await api.client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=api.headers()
    )
    [delivery] = deliveries.json()["items"]
    assert delivery["status"] == "succeeded" and delivery["last_status_code"] == 200


def test_listen_refuses_a_secret_that_is_not_one(database_url: str) -> None:
    refused = encore(database_url, "webhooks", "listen", "--secret", "whsec_not base64!")
    assert refused.returncode == 2 and "--secret" in refused.stderr
