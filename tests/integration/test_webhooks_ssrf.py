"""SSRF: webhooks never reach this machine or a private network, whatever the URL says or DNS answers.

The worker's own checks are proven apart from the API's: the endpoint's URL is written into the database
directly (as an old row, or one written by hand, would be), the URL check is switched off where a test
says so, and the real delivery code, with production settings, is pointed at a real local receiver.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import pytest
from aiohttp.abc import ResolveResult
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.core.clock import FrozenClock
from service.webhooks import domain, jobs
from tests.conftest import Api, fetch, idempotency, settings_for
from tests.integration.test_webhooks import Hooks
from tests.support.receiver import Receiver

# The attack pass's findings (tests/unit/test_webhooks_domain.py has them with their kin).
FINDINGS = [
    "https://127。0。0。1/",
    "https://10．0．0．1/",
    "https://169。254。169。254/latest/meta-data/",
    "https://127｡0｡0｡1/",
    "https://１２７.０.０.１/",
    "https://[::ffff:0:7f00:1]/",
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def hooks(client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock) -> Hooks:
    return Hooks(client, database_url, clock)


@pytest.fixture
async def production(
    client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The API with production settings (no local http). It runs on the session app's event loop, where
    the connection pool lives: a second loop could not use that pool."""
    app = create_app(settings_for(database_url, webhooks_allow_local_http=False), clock=clock)
    production = AsyncTestClient(app=app, raise_server_exceptions=False)
    production.blocking_portal = client.blocking_portal  # AsyncTestClient uses a portal it is given
    async with production:
        yield production


def _port(receiver: Receiver) -> int:
    assert receiver.server is not None
    port: int = receiver.server.server_address[1]
    return port


async def _endpoint_with_url(api: Api, url: str) -> str:
    """An endpoint whose stored URL is `url`, written past the API's check; one delivery (a test event,
    the only event it gets) queued for it."""
    body = {"url": "https://hooks.example.com/x", "event_types": ["order.created"]}
    created = await api.client.post("/v1/webhook-endpoints", json=body, headers=api.headers(**idempotency()))
    assert created.status_code == 201, created.text
    endpoint_id: str = created.json()["id"]
    fetch(api.client, "UPDATE webhook_endpoint SET url = $2 WHERE id = $1", UUID(endpoint_id), url)
    sent = await api.client.post(f"/v1/webhook-endpoints/{endpoint_id}/test", headers=api.headers())
    assert sent.status_code == 202, sent.text
    return endpoint_id


def _delivery(api: Api, endpoint_id: str) -> dict[str, Any]:
    [row] = fetch(
        api.client,
        "SELECT status, attempts, last_error, last_status_code, next_attempt_at FROM webhook_delivery"
        " WHERE endpoint_id = $1",
        UUID(endpoint_id),
    )
    return row


def _no_url_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's URL check off, so only the connection checks stand between it and the address."""
    monkeypatch.setattr(domain, "url_problem", lambda url, allow_local_http: None)


def _assert_refused(api: Api, endpoint_id: str, reason: str) -> None:
    delivery = _delivery(api, endpoint_id)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1, delivery  # failed, will retry
    assert delivery["last_status_code"] is None
    assert delivery["last_error"] == reason, delivery


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1, a loopback address (this machine)"),
        ("https://127.0.0.1:{port}/hook", "127.0.0.1, a loopback address (this machine)"),  # before TLS
        ("https://127。0。0。1:{port}/hook", "127.0.0.1, a loopback address (this machine)"),  # a finding
        ("http://0.0.0.0:{port}/hook", "0.0.0.0, an unspecified address (this machine)"),
        (
            "http://[::ffff:127.0.0.1]:{port}/hook",
            "::ffff:7f00:1, an IPv6 form of 127.0.0.1, a loopback address (this machine)",
        ),
    ],
)
async def test_the_worker_refuses_to_connect_to_an_ip_literal_that_is_not_public(
    api: Api,
    receiver: Receiver,
    hooks: Hooks,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    address: str,
) -> None:
    """aiohttp skips the resolver for an IP literal: the socket's own address check refuses it."""
    endpoint_id = await _endpoint_with_url(api, url.format(port=_port(receiver)))
    _no_url_check(monkeypatch)

    assert hooks.run(webhooks_allow_local_http=False) == 1
    assert receiver.received == []
    _assert_refused(api, endpoint_id, f"refused: the connection would reach {address}")

    if url.startswith("http://127.0.0.1"):  # the same row, with loopback allowed, does reach the receiver
        clock.set(_delivery(api, endpoint_id)["next_attempt_at"])
        assert hooks.deliver(webhooks_allow_local_http=True) == 1
        assert len(receiver.received) == 1 and _delivery(api, endpoint_id)["status"] == "succeeded"


async def test_not_even_a_tcp_connection_is_made(
    api: Api, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address is checked before the socket connects: no SYN, so no TLS hello or request either."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # never accepts: connections wait in its backlog
        port = listener.getsockname()[1]
        endpoint_id = await _endpoint_with_url(api, f"https://127.0.0.1:{port}/hook")
        _no_url_check(monkeypatch)
        hooks.run(webhooks_allow_local_http=False)
        _assert_refused(
            api,
            endpoint_id,
            "refused: the connection would reach 127.0.0.1, a loopback address (this machine)",
        )
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


async def test_a_name_that_resolves_to_a_private_address_is_refused(
    api: Api, receiver: Receiver, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver drops private answers: `localhost` resolves only to loopback, so nothing is sent."""
    endpoint_id = await _endpoint_with_url(api, f"http://localhost:{_port(receiver)}/hook")
    _no_url_check(monkeypatch)
    hooks.run(webhooks_allow_local_http=False)
    assert receiver.received == []
    last_error = _delivery(api, endpoint_id)["last_error"]
    assert last_error.startswith("refused: localhost resolves only to addresses webhooks are not sent to: ")
    assert "127.0.0.1, a loopback address (this machine)" in last_error, last_error  # ::1 too, in any order


async def test_dns_rebinding_past_the_resolver_is_refused_at_the_socket(
    api: Api, receiver: Receiver, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A public name whose answer turns private after every name check (here the resolver's check is
    gone too): the socket's address check still refuses it. The URL check is the real one."""

    async def rebound(
        self: jobs.PublicOnlyResolver, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    monkeypatch.setattr(jobs.PublicOnlyResolver, "resolve", rebound)
    url = f"https://hooks.example.com:{_port(receiver)}/hook"
    assert domain.url_problem(url, allow_local_http=False) is None
    endpoint_id = await _endpoint_with_url(api, url)
    hooks.run(webhooks_allow_local_http=False)
    assert receiver.received == []
    _assert_refused(
        api, endpoint_id, "refused: the connection would reach 127.0.0.1, a loopback address (this machine)"
    )


async def test_the_connected_peer_is_checked_too(
    api: Api, receiver: Receiver, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: a socket made without the address check (here the check is gone) is connected,
    then its peer is read and the connection closed before the request is written."""

    def unchecked(self: jobs.PublicOnlyConnector, addr_info: Any) -> socket.socket:
        return socket.socket(addr_info[0], addr_info[1], addr_info[2])

    monkeypatch.setattr(jobs.PublicOnlyConnector, "_open_socket", unchecked)
    endpoint_id = await _endpoint_with_url(api, f"http://127.0.0.1:{_port(receiver)}/hook")
    _no_url_check(monkeypatch)
    hooks.run(webhooks_allow_local_http=False)
    assert receiver.received == []
    _assert_refused(
        api, endpoint_id, "refused: the connection reached 127.0.0.1, a loopback address (this machine)"
    )


@pytest.mark.parametrize("finding", FINDINGS)
async def test_a_stored_finding_url_is_not_sent(
    api: Api, receiver: Receiver, hooks: Hooks, finding: str
) -> None:
    """A finding URL already in the database (written before the check knew it, or by hand), pointed at
    the receiver's port: the worker's URL check, which normalises the host as the HTTP client does,
    refuses it before any connection."""
    parts = urlsplit(finding)
    url = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{_port(receiver)}"))
    endpoint_id = await _endpoint_with_url(api, url)
    hooks.run(webhooks_allow_local_http=False)
    assert receiver.received == []
    delivery = _delivery(api, endpoint_id)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["last_error"].startswith("not sent: "), delivery
    assert "webhook URLs may not point at" in delivery["last_error"], delivery


async def test_the_api_refuses_every_finding(
    api: Api, production: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar]
) -> None:
    """POST (and PATCH) with a finding URL: 422 problem+json naming `url`, in production and in local
    mode, and nothing is created or changed."""
    existing = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/encore"},
        headers=api.headers(**idempotency()),
    )
    assert existing.status_code == 201
    endpoint_id = existing.json()["id"]
    before = fetch(api.client, "SELECT count(*) AS n FROM outbox")[0]["n"]
    for http in (production, client):
        for url in FINDINGS:
            for response in (
                await http.post(
                    "/v1/webhook-endpoints", json={"url": url}, headers=api.headers(**idempotency())
                ),
                await http.patch(
                    f"/v1/webhook-endpoints/{endpoint_id}", json={"url": url}, headers=api.headers()
                ),
            ):
                assert response.status_code == 422, (url, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                problem = response.json()
                assert problem["field"] == "url", problem
                if http is production:  # local mode admits 127.0.0.1, so it asks for the IDNA form
                    assert "may not point at" in problem["detail"], problem
    assert [r["url"] for r in fetch(api.client, "SELECT url FROM webhook_endpoint")] == [
        "https://hooks.example.com/encore"
    ]
    assert fetch(api.client, "SELECT count(*) AS n FROM outbox")[0]["n"] == before
