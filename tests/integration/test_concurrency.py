"""Concurrency against a real `encore serve` process (uvicorn) on the same database: retries, duplicate
order ids and competing debits must never double-award or overdraw."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Api, fetch, idempotency, order_body, verify_ledger
from tests.support.server import encore_serve


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with encore_serve(database_url) as base:
        yield base


async def _burst(
    base: str, requests: list[tuple[str, str, dict[str, object], dict[str, str]]]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        return list(
            await asyncio.gather(
                *(http.request(m, url, json=body, headers=h) for m, url, body, h in requests)
            )
        )


async def test_fifty_concurrent_replays_of_one_order_award_once(api: Api, server: str) -> None:
    body = order_body("o-race")
    headers = api.headers(**{"Idempotency-Key": "same-key"})
    responses = await _burst(server, [("POST", "/v1/orders", body, headers)] * 50)
    assert [r.status_code for r in responses] == [201] * 50, {r.status_code: r.text for r in responses}
    assert len({r.content for r in responses}) == 1
    assert fetch(api.client, "SELECT count(*) AS n FROM orders")[0]["n"] == 1
    assert fetch(api.client, "SELECT count(*) AS n FROM points_entry")[0]["n"] == 1
    assert _held(await api.status()) == 90
    verify_ledger(api.client)


def _held(status: dict[str, Any]) -> int:
    # The server runs on the real clock, so the March order's return window is over: points are available.
    return int(status["points"]["available"] + status["points"]["pending"])


async def test_fifty_concurrent_posts_of_one_order_id_with_different_keys(api: Api, server: str) -> None:
    requests = [
        ("POST", "/v1/orders", order_body("o-dup"), api.headers(**{"Idempotency-Key": f"k-{i}"}))
        for i in range(50)
    ]
    responses = await _burst(server, requests)
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 49, codes
    assert _held(await api.status()) == 90
    verify_ledger(api.client)


async def test_concurrent_debits_never_overdraw(api: Api, server: str) -> None:
    await api.client.patch("/v1/program", json={"pending_days": 0}, headers=api.headers())
    await api.order("o-1", lines=[{"sku": "A", "quantity": 1, "unit_amount": 10000}])  # 100 points
    body = {"points": -15, "reason": "voucher"}
    # Twenty different debits (a key each), all at once.
    debits = [
        ("POST", "/v1/customers/c-1/adjustments", body, api.headers(**idempotency())) for _ in range(20)
    ]
    responses = await _burst(server, debits)
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 6 + [409] * 14, codes
    assert (await api.status())["points"]["available"] == 10
    verify_ledger(api.client)


async def test_concurrent_refunds_of_one_order_reverse_at_most_once(api: Api, server: str) -> None:
    await api.order("o-1", lines=[{"sku": "A", "quantity": 4, "unit_amount": 2500}])
    requests = [
        (
            "POST",
            "/v1/orders/o-1/refunds",
            {"external_id": f"r-{i}", "lines": [{"sku": "A", "quantity": 1}]},
            api.headers(),
        )
        for i in range(10)
    ]
    codes = sorted(r.status_code for r in await _burst(server, requests))
    assert codes == [201] * 4 + [422] * 6, codes
    status = await api.status()
    assert status["points"]["pending"] == 0 and status["points"]["debt"] == 0
    verify_ledger(api.client)
