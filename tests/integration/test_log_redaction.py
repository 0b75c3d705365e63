"""Logs carry no full e-mail address, secret or token: request paths that hold them are redacted, and
so is anything any code logs. (The whole run's logs are scanned at its end as well: tests/conftest.py.)"""

from __future__ import annotations

from uuid import uuid4

import structlog

from service.messaging import delivery
from service.settings import Settings
from tests.conftest import LOG_FILE, Api
from tests.support.logscan import leaks


def _logged_since(offset: int) -> str:
    with LOG_FILE.open(encoding="utf-8") as file:
        file.seek(offset)
        return file.read()


def _offset() -> int:
    return LOG_FILE.stat().st_size if LOG_FILE.exists() else 0


async def test_request_lines_name_the_path_without_the_address_or_the_token(api: Api) -> None:
    start = _offset()
    token = delivery.unsubscribe_token(Settings().signing_key(), 12345, uuid4(), "marketing")
    assert (
        await api.client.delete("/v1/suppressions/bounce@example.com", headers=api.headers())
    ).status_code in (
        204,
        404,
    )
    await api.client.get(f"/v1/unsubscribe/{token}")
    logged = _logged_since(start)
    assert "/v1/suppressions/b…@example.com" in logged
    assert "/v1/unsubscribe/…" in logged
    assert "bounce@example.com" not in logged and token not in logged
    assert leaks(logged) == []


async def test_whatever_code_logs_is_redacted_too() -> None:
    start = _offset()
    secret = "whsec_" + "A" * 40
    try:
        raise RuntimeError(f"550 mailbox jane.doe@example.org unknown (signed with {secret})")
    except RuntimeError:
        structlog.get_logger("encore.test").exception(
            "send_failed",
            to="jane.doe@example.org",
            key="enc_" + "b" * 30,
            nested={"emails": ["x.y@z.example"]},
        )
    logged = _logged_since(start)
    assert "send_failed" in logged
    assert "j…@example.org" in logged and "x…@z.example" in logged
    assert "jane.doe" not in logged and secret not in logged and "enc_bbbb" not in logged
    assert leaks(logged) == []


def test_the_scan_finds_what_it_looks_for() -> None:
    # The run-wide scan would be worthless if it could not fail: planted leaks are found.
    planted = "\n".join(
        [
            "request path=/v1/suppressions/bounce@example.com",
            "request path=/v1/suppressions/bounce%40example.com",
            "secret=whsec_abcdefghijkl",
            "key=enc_abcdefghijkl",
            "path=/v1/unsubscribe/MTIzLmFiYy5tYXJrZXRpbmc.c2lnbmF0dXJl",
            "authorization=Bearer abcdefghijkl",
            "key_whsec_abcdefghijkl",
            "path=/V1/UNSUBSCRIBE/MTIzLmFiYy5tYXJrZXRpbmc",
            "next=%2Fv1%2Funsubscribe%2FMTIzLmFiYy5tYXJrZXRpbmc",
            "header=authorization%3DBearer%20abcdefghijkl",
            "fine: b…@example.com /v1/unsubscribe/… whsec_… enc_… %2Fv1%2Funsubscribe%2F… Bearer%20…",
        ]
    )
    assert [what for what, _ in leaks(planted)] == [
        "e-mail address",
        "e-mail address",
        "webhook secret",
        "API key",
        "unsubscribe token",
        "bearer token",
        "webhook secret",
        "unsubscribe token",
        "unsubscribe token",
        "bearer token",
    ]


async def test_keys_are_redacted_too() -> None:
    start = _offset()
    secret = "whsec_" + "K" * 40
    structlog.get_logger("encore.test").info(
        "keyed", **{secret: 1}, answers={"jane.doe@example.org": {"/V1/UNSUBSCRIBE/" + "t" * 30: 2}}
    )
    logged = _logged_since(start)
    assert "keyed" in logged and "whsec_…" in logged and "j…@example.org" in logged, logged
    assert secret not in logged and "jane.doe" not in logged and "t" * 30 not in logged
    assert leaks(logged) == []


async def test_a_request_refused_by_authentication_is_logged_with_its_status(api: Api) -> None:
    start = _offset()
    assert (
        await api.client.get("/v1/customers/c-1", headers=api.headers("enc_not-a-key"))
    ).status_code == 401
    logged = _logged_since(start)
    assert "status=401" in logged and "path=/v1/customers/c-1" in logged, logged
