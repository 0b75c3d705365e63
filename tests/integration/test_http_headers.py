"""Header size limits (431 before anything reads a header) and the security headers of every answer and
every HTML page."""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.http_headers import PAGE_POLICY, script_hash
from service.messaging.delivery import unsubscribe_token
from tests.conftest import START, Api, fetch, in_app, settings_for
from tests.support.server import encore_serve

MEGABYTE = 1 << 20


def assert_headers_too_large(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 431, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["type"] == "urn:encore:problem:headers-too-large"
    assert problem["status"] == 431 and problem["title"] == "Request headers too large"
    assert response.headers["x-content-type-options"] == "nosniff"
    return problem


async def test_a_megabyte_authorization_header_is_refused_before_it_is_hashed_or_looked_up(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[int] = []
    looked_up: list[bool] = []
    real_sha256, real_connection = hashlib.sha256, db.connection

    def sha256(data: bytes = b"", **kwargs: Any) -> Any:
        hashed.append(len(data))
        return real_sha256(data, **kwargs)

    def connection(*args: Any, **kwargs: Any) -> Any:
        looked_up.append(True)
        return real_connection(*args, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", sha256)
    monkeypatch.setattr(db, "connection", connection)
    response = await api.client.get(
        "/v1/customers/c-1", headers={"Authorization": "Bearer enc_" + "a" * MEGABYTE}
    )
    problem = assert_headers_too_large(response)
    assert problem["field"] == "header:Authorization" and problem["instance"] == "/v1/customers/c-1"
    assert "1,048," in problem["detail"] and "at most 8,192" in problem["detail"]
    assert response.headers["connection"] == "close"
    assert not [size for size in hashed if size > 8_192], "the header was hashed"
    assert not looked_up, "a key was looked up"


async def test_headers_too_large_in_all_are_refused_and_below_the_limits_are_read(api: Api) -> None:
    many = {f"X-Pad-{n}": "p" * 6_000 for n in range(3)}  # 6 KB each, 18 KB in all
    problem = assert_headers_too_large(await api.client.get("/v1/program", headers=api.headers(**many)))
    assert "field" not in problem and "in all; at most 16,384" in problem["detail"]
    # Below both limits: read as usual (an unknown key is a 401, the right one answers).
    near = {"X-Pad": "p" * 7_000}
    assert (await api.client.get("/v1/program", headers=api.headers(**near))).status_code == 200
    wrong = {"Authorization": "Bearer enc_" + "a" * 7_000}
    assert (await api.client.get("/v1/program", headers=wrong)).status_code == 401
    # On the probes and the pages without a key too.
    assert_headers_too_large(await api.client.get("/healthz", headers={"Cookie": "c" * 9_000}))


def _message(api: Api) -> tuple[int, UUID]:
    """A message row for the tests' customer: enough for its unsubscribe link to work."""

    async def insert() -> tuple[int, UUID]:
        async with db.transaction() as conn:
            row = await conn.fetchrow(
                """
                INSERT INTO message (program_id, customer_id, message_type, category, dedupe_key, context,
                                     status, due_at, created_at, updated_at)
                SELECT program_id, id, 'review_request', 'marketing', 'headers-test', '{}', 'sent', $2, $2, $2
                FROM customer WHERE program_id = $1::uuid AND external_id = 'ada'
                RETURNING id, customer_id
                """,
                api.program_id,
                START,
            )
            assert row is not None
            return int(row["id"]), row["customer_id"]

    return in_app(api.client, insert)


def assert_page_headers(response: httpx.Response, policy: str) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_unsubscribe_pages_load_nothing_and_cannot_be_framed(api: Api, database_url: str) -> None:
    put = await api.client.put(
        "/v1/customers/ada",
        json={"email": "ada@example.com", "marketing_consent": True},
        headers=api.headers(),
    )
    assert put.status_code in (200, 201), put.text
    message_id, customer_id = _message(api)
    key = settings_for(database_url).signing_key()
    path = f"/v1/unsubscribe/{unsubscribe_token(key, message_id, customer_id, 'marketing')}"
    page = await api.client.get(path)
    assert page.status_code == 200 and "<form" in page.text
    assert_page_headers(page, PAGE_POLICY)
    assert "default-src 'none'" in PAGE_POLICY and "form-action 'self'" in PAGE_POLICY
    done = await api.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    assert_page_headers(done, PAGE_POLICY)
    assert fetch(api.client, "SELECT marketing_consent FROM customer WHERE id = $1", customer_id) == [
        {"marketing_consent": False}
    ]
    # An invalid link's answer is problem+json: not a page, but never sniffed as one.
    refused = await api.client.get(path[:-3] + "AAA")
    assert refused.status_code == 422 and refused.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in refused.headers


async def test_the_api_reference_may_load_exactly_what_scalar_needs(
    client: AsyncTestClient[Litestar],
) -> None:
    page = await client.get("/schema")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert_page_headers(page, policy)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    # What the page itself names: the script, the stylesheet, the icon.
    html = page.text
    script = _attribute(html, "<script src=")
    stylesheet = _attribute(html, '<link rel="stylesheet" type="text/css" href=')
    icon = _attribute(html, "<link rel='icon' type='image/png' href=")
    # The script, and the page's inline scripts by their hashes (Litestar's page has one, empty).
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.DOTALL)
    assert inline and directives["script-src"] == " ".join(
        [script, *sorted({script_hash(i) for i in inline})]
    )
    assert directives["style-src"] == f"{stylesheet} 'unsafe-inline'"  # Scalar injects its styles
    assert icon in directives["img-src"].split()
    assert directives["font-src"] == "https://fonts.scalar.com"
    assert directives["connect-src"] == "'self'"  # the document; no request proxy, no telemetry
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert all(urlsplit(u).scheme == "https" for u in (script, stylesheet, icon))
    # Its other pages too; the document is JSON.
    for sub in ("/schema/scalar", "/schema/openapi.json"):
        answer = await client.get(sub)
        assert answer.status_code == 200 and answer.headers["x-content-type-options"] == "nosniff"
        if answer.headers["content-type"].startswith("text/html"):
            assert answer.headers["content-security-policy"] == policy


def _attribute(html: str, before: str) -> str:
    start = html.index(before) + len(before)
    quote = html[start]
    return html[start + 1 : html.index(quote, start + 1)]


async def test_every_answer_says_nosniff(api: Api) -> None:
    answers: list[Callable[[], Any]] = [
        lambda: api.client.get("/v1/program", headers=api.headers()),
        lambda: api.client.get("/v1/program"),  # 401
        lambda: api.client.get("/nowhere"),  # 404 from routing
        lambda: api.client.get("/healthz"),
    ]
    for answer in answers:
        response = await answer()
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert "content-security-policy" not in response.headers


def _send_head(base: str, header_bytes: int) -> tuple[bytes, float]:
    """A GET whose Authorization header is `header_bytes` long, written in pieces as a client would, the
    server's answer read as soon as there is one; (answer, seconds)."""
    address = urlsplit(base)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/program HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        sent = 0
        while sent < header_bytes and not select.select([sock], [], [], 0)[0]:
            sock.sendall(b"a" * 65_536)
            sent += 65_536
        answer = b""
        while chunk := sock.recv(65_536):
            answer += chunk
    return answer, time.monotonic() - started


def test_encore_serve_stops_reading_a_huge_head_where_it_is_parsed(database_url: str) -> None:
    """uvicorn's httptools parser reads a head of any size (100 MB took 12 s): `encore serve` counts it."""
    with encore_serve(database_url) as base:
        answer, seconds = _send_head(base, 64 * MEGABYTE)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), answer[:300]
        assert b"content-type: application/problem+json" in head
        problem = json.loads(body)
        assert problem["type"] == "urn:encore:problem:headers-too-large" and problem["status"] == 431
        assert seconds < 5
        # Within the limits the same server answers as usual.
        assert httpx.get(f"{base}/v1/program", headers={"Authorization": "Bearer x"}).status_code == 401
