"""Structured logs: key=value on a terminal, JSON lines when ENCORE_LOG_FORMAT=json; also appended to
ENCORE_LOG_FILE when set. No line carries a full e-mail address, a secret or a token: `redact` runs on
every value of every line, whoever logs it."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# A local part that starts with the address's first character: `b…@example.com` (the domain stays: it
# says which provider bounced without saying who).
_EMAIL = re.compile(r"([\w%+!#$&'*=?^`{|}~-])[\w.%+!#$&'*=?^`{|}~-]*?(@|%40)([\w-]+(?:\.[\w-]+)+)")
# Secrets by their prefix (webhook signing secrets, API keys, Stripe keys and signing secrets): the
# prefix stays, so a line still says which kind of secret was there. After anything (no `\b`: `key_whsec_…`,
# `token%3Denc_…`, `Bearer%20enc_…`), and with base64's +, / and = percent-encoded too.
_SECRET = re.compile(
    r"(whsec_|enc_|sk_live_|sk_test_|rk_live_|rk_test_)(?:[A-Za-z0-9+/=_-]|%2[BbFf]|%3[Dd])+"
)
# Paths whose last segment is a bearer token of its own (a working unsubscribe link, later survey links),
# in any case (a path a route refuses may still hold a working token) and with its slashes encoded.
_TOKEN_PATH = re.compile(r"(?i)((?:/|%2F)v1(?:/|%2F)(?:unsubscribe|answer)(?:/|%2F))[^/?#&\s]+")
_BEARER = re.compile(r"(?i)(bearer(?:\s|%20|\+)+)[^\s,;&]+")


def redact(text: str) -> str:
    """`text` without full e-mail addresses, secrets or tokens. A pattern runs only on a text that holds
    what it needs (checked as substrings): this runs on every value and key of every line."""
    if text.isalnum():  # most keys and many values: each pattern needs a character that is not
        return text
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(r"\1…\2\3", text)
    if "c_" in text or "k_" in text:  # every secret prefix ends so ("whsec_", "enc_", "sk_live_", ...)
        text = _SECRET.sub(r"\1…", text)
    # The token path and the bearer scheme match in any case: checked on a lower-case copy (cheaper than
    # checking each casing, and than running those patterns on every API path).
    folded = text.lower()
    if ("unsubscribe" in folded or "answer" in folded) and "v1" in folded:
        text = _TOKEN_PATH.sub(r"\1…", text)
    if "bearer" in folded:
        text = _BEARER.sub(r"\1…", text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted_key(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))  # exceptions, UUIDs, paths: as the renderer would print them


def _redacted_key(key: Any) -> Any:
    """A key is printed as a value is (`log.info(..., **headers)`, a dict of answers by address): redacted
    the same way, and text unless it is a number (a tuple key would be a list, and unhashable). Two keys
    that redact alike keep the later value: what is lost is what may not be logged."""
    if isinstance(key, str):
        return redact(key)
    if isinstance(key, int | float | bool) or key is None:
        return key
    return redact(str(key))


def _redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return {_redacted_key(key): _redacted(value) for key, value in event.items()}


class _Tee:
    """stderr and the log file, line by line (appends of whole lines: several processes can share it)."""

    def __init__(self, first: TextIO, path: str) -> None:
        self.first = first
        self.second = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the process

    def write(self, text: str) -> int:
        self.first.write(text)
        return self.second.write(text)

    def flush(self) -> None:
        self.first.flush()
        self.second.flush()


def configure_logging(log_format: str = "console", level: str = "INFO") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), 20)
        ),
        # stderr: stdout belongs to commands' own output (e.g. `--json`).
        logger_factory=structlog.PrintLoggerFactory(file=_log_file()),
        cache_logger_on_first_use=True,
    )


_LOG_FILES: dict[str, _Tee] = {}


def _log_file() -> TextIO:
    path = os.environ.get("ENCORE_LOG_FILE")
    if not path:
        return sys.stderr
    if path not in _LOG_FILES:
        _LOG_FILES[path] = _Tee(sys.stderr, path)
    return cast(TextIO, _LOG_FILES[path])  # what a print logger needs of a file: write and flush


def request_logging(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: one structured line per HTTP request (method, path, status, duration)."""
    log = structlog.get_logger("encore.http")

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not log.is_enabled_for(logging.INFO):
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        except HTTPException as exc:  # raised by a middleware inside (authentication): answered outside
            status = exc.status_code
            raise
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )

    return middleware
