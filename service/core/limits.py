"""Request limits: how large a request's headers may be, and how many requests a key or an address may send.

Headers: a request whose headers are larger than ENCORE_MAX_HEADER_BYTES in all, or than
ENCORE_MAX_HEADER_FIELD_BYTES in one, is answered 431 before anything else reads them (the rate limit
hashes the bearer token, authentication looks it up). `encore serve` also bounds the head at the HTTP
parser (`server_options`): uvicorn's httptools parser has no limit of its own and reads a 100 MB header
(12 s of CPU and 240 MB of memory, measured), so an answer from the app would come too late.

Rates: GCRA (the generic cell rate algorithm: a token bucket kept as one time per key). A limit of N a
minute lets N requests through at once after a quiet minute, then one every 60/N seconds. Counted:
- on routes that need an API key, per key, identified by a hash of the bearer token as authentication
  reads it (`auth.bearer_token`: the same function), without a lookup (an invalid key is limited too); a
  request without a bearer token counts per client address against the same limit (it is answered 401
  without a lookup);
- on routes without a key (the unsubscribe pages, /schema), per client address, method and route, and
  per program where the path names one (`program_id`; an unsubscribe link names none);
- Stripe's webhooks (`/v1/stripe/webhooks/{program_id}`), per program against a limit of their own
  (ENCORE_RATE_LIMIT_PER_STRIPE_PROGRAM): Stripe sends a sale's bursts from a handful of addresses;
- /healthz, /readyz and /metrics are not limited.
A request with more than one Authorization header is answered 400, on any path: authentication reads the
first, so a second one could otherwise pick a count of its own.
Refused requests do not count. The counters are in this process's memory: each API process counts on
its own, so behind a balancer over N processes a client gets up to N times the limit. A shared store
(Redis with a GCRA script) would replace `RateLimiter.hit`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.core.auth import PUBLIC_PATHS, bearer_token
from service.core.errors import PROBLEM_MEDIA_TYPE, problem_body
from service.settings import Settings

# Probes and scrapes: a monitoring system must never be refused.
EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")
EXEMPT_PATTERNS = [f"^{path}" for path in EXEMPT_PATHS]
PERIOD_SECONDS = 60
# Keys kept per limit. Beyond it the least recently seen key is forgotten (it starts afresh): random
# bearer tokens can cost memory only up to this.
MAX_KEYS = 100_000
# What `encore serve` reads of a request line and headers, beyond the header limit, before it refuses the
# request: room for the request line and each header's ": " and CRLF.
HEAD_ALLOWANCE = 16_384
_NS = 1_000_000_000
_PUBLIC = re.compile("|".join(PUBLIC_PATHS))
STRIPE_WEBHOOKS = "/v1/stripe/webhooks/"
_JSON = msgspec.json.Encoder()
log = structlog.get_logger("encore.http")


def _seconds(ns: int) -> int:
    """Whole seconds, rounded up: `Retry-After: 0` would invite a retry that is refused again."""
    return max(1, -(-ns // _NS))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int  # requests that would be allowed now, after this one
    reset_ns: int  # until the whole limit is available again
    retry_after_ns: int  # until one more request is allowed (0 when this one was)


class RateLimiter:
    """GCRA over `limit` requests per `period_seconds`: for each key the time at which its bucket is
    empty again (its "theoretical arrival time"), in nanoseconds of `clock`, monotonic time by default."""

    def __init__(
        self,
        limit: int,
        period_seconds: int = PERIOD_SECONDS,
        clock: Callable[[], int] = time.monotonic_ns,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if limit < 1:
            raise ValueError("a rate limit is at least 1 request")
        self.limit = limit
        self.period_seconds = period_seconds
        self.clock = clock
        self._period = period_seconds * _NS
        # Integers, not floats: N requests at one instant must be exactly N × interval.
        self._interval = self._period // limit
        self._max_keys = max_keys
        # Ordered by last update, oldest first: the front holds the keys that expire first.
        self._tats: OrderedDict[Hashable, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def hit(self, key: Hashable) -> Verdict:
        now = self.clock()
        tats = self._tats
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        new_tat = tat + self._interval
        allow_at = new_tat - self._period
        if allow_at > now:
            return Verdict(False, 0, tat - now, allow_at - now)
        tats[key] = new_tat
        tats.move_to_end(key)
        self._forget(now)
        return Verdict(True, (now - allow_at) // self._interval, new_tat - now, 0)

    def _forget(self, now: int) -> None:
        """Drop up to two keys from the front that are full again (or too many): amortised O(1)."""
        tats = self._tats
        for _ in range(2):
            oldest, tat = next(iter(tats.items()))
            if tat > now and len(tats) <= self._max_keys:
                return
            del tats[oldest]


class RequestLimits:
    """The header size check and the rate limits of one app, as ASGI middleware (`middleware`)."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.max_header_bytes = settings.max_header_bytes
        self.max_header_field_bytes = settings.max_header_field_bytes
        self.per_key = (
            RateLimiter(settings.rate_limit_per_key, clock=clock) if settings.rate_limit_per_key else None
        )
        self.per_address = (
            RateLimiter(settings.rate_limit_per_address, clock=clock)
            if settings.rate_limit_per_address
            else None
        )
        self.per_stripe_program = (
            RateLimiter(settings.rate_limit_per_stripe_program, clock=clock)
            if settings.rate_limit_per_stripe_program
            else None
        )
        # Built once per limit, not per answer.
        self._fixed = {
            id(limiter): (
                (b"ratelimit-limit", str(limiter.limit).encode()),
                (b"ratelimit-policy", f"{limiter.limit};w={limiter.period_seconds}".encode()),
            )
            for limiter in (self.per_key, self.per_address, self.per_stripe_program)
            if limiter is not None
        }

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar builds the middleware stack once per route: every route shares these limiters."""

        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            total = largest = authorizations = 0
            largest_name = authorization = b""
            for name, value in scope["headers"]:
                size = len(name) + len(value)
                total += size
                if size > largest:
                    largest, largest_name = size, name
                # In any case, as Litestar's headers read it (ASGI servers send names in lower case).
                if len(name) == 13 and name.lower() == b"authorization":
                    authorizations += 1
                    if authorizations == 1:  # the one authentication reads
                        authorization = value
            if (self.max_header_bytes and total > self.max_header_bytes) or (
                self.max_header_field_bytes and largest > self.max_header_field_bytes
            ):
                await self._too_large(scope, send, total, largest, largest_name)
                return
            if authorizations > 1:
                await self._ambiguous(scope, send, authorizations)
                return
            path: str = scope["path"]
            if path.startswith(EXEMPT_PATHS):
                await app(scope, receive, send)
                return
            client = scope.get("client")
            address = client[0] if client else ""
            key: Hashable
            if path.startswith(STRIPE_WEBHOOKS):
                limiter, whose = self.per_stripe_program, "to this program's Stripe webhook"
                key = ("stripe", scope.get("path_params", {}).get("program_id"))
            elif _PUBLIC.match(path):
                limiter, whose = self.per_address, "from this address to this page"
                program = scope.get("path_params", {}).get("program_id")
                key = (address, scope["method"], scope.get("path_template", path), program)
            else:
                limiter, whose = self.per_key, "with this API key"
                # Decoded as Litestar decodes headers; any other reading would let some form of a valid
                # key count apart from it (`bytes.strip` keeps the NBSP that `str.strip` drops).
                token = bearer_token(authorization.decode("latin-1"))
                if token is not None:
                    key = hashlib.sha256(token.encode()).digest()
                else:
                    key, whose = ("no key", address), "without an API key from this address"
            if limiter is None:
                await app(scope, receive, send)
                return
            verdict = limiter.hit(key)
            headers = [
                *self._fixed[id(limiter)],
                (b"ratelimit-remaining", str(verdict.remaining).encode()),
                (b"ratelimit-reset", str(_seconds(verdict.reset_ns)).encode()),
            ]
            if not verdict.allowed:
                await self._too_many(scope, send, limiter, whose, verdict, headers)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *headers]
                await send(message)

            await app(scope, receive, send_with_headers)

        return limited

    async def _too_many(
        self,
        scope: Scope,
        send: Send,
        limiter: RateLimiter,
        whose: str,
        verdict: Verdict,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        retry = _seconds(verdict.retry_after_ns)
        body = problem_body(
            429,
            "too-many-requests",
            "Too many requests",
            f"more than {limiter.limit:,} requests a minute {whose}; retry in {retry} s",
            instance=scope["path"],
        )
        await _send_problem(send, body, [(b"retry-after", str(retry).encode()), *headers])

    async def _ambiguous(self, scope: Scope, send: Send, count: int) -> None:
        body = problem_body(
            400,
            "duplicate-header",
            "A header is sent more than once",
            f"send one Authorization header; this request has {count}",
            "header:Authorization",
            instance=scope["path"],
        )
        await _send_problem(send, body, [])

    async def _too_large(self, scope: Scope, send: Send, total: int, largest: int, name: bytes) -> None:
        if self.max_header_field_bytes and largest > self.max_header_field_bytes:
            header = "-".join(part.capitalize() for part in name.decode("latin-1").split("-"))
            detail = (
                f"the {header} header is {largest:,} bytes; at most {self.max_header_field_bytes:,} are read"
            )
            body = problem_body(
                431, "headers-too-large", "Request headers too large", detail, f"header:{header}"
            )
        else:
            detail = f"the headers are {total:,} bytes in all; at most {self.max_header_bytes:,} are read"
            body = problem_body(431, "headers-too-large", "Request headers too large", detail)
        body["instance"] = scope["path"]
        # The client sent far more than it should: no further request on this connection.
        await _send_problem(send, body, [(b"connection", b"close")])


async def _send_problem(send: Send, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    """Sent from here, not raised: the request log and the metrics see the status (an exception raised in
    a middleware reaches the exception handler outside them)."""
    payload = _JSON.encode(body)
    start: Message = {
        "type": "http.response.start",
        "status": body["status"],
        "headers": [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(payload)).encode()),
            *headers,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": payload, "more_body": False})


# --- the HTTP server ---------------------------------------------------------------------------------


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run options that bound a request's head where it is parsed: httptools (uvicorn's default
    parser, which has no limit) with a byte count, or h11 with its own limit when httptools is missing."""
    if not settings.max_header_bytes:
        return {}
    limit = settings.max_header_bytes + HEAD_ALLOWANCE
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        return {"http": "h11", "h11_max_incomplete_event_size": limit}

    class HeadLimitedHttpTools(HttpToolsProtocol):
        """Counts what arrives while a request's head is incomplete; past `limit` it answers 431 and
        reads no more of it. A chunk that completes the head is not counted (its body may follow)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._refused = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head_bytes = 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            if self._refused:  # drained, so that the client reads the answer instead of a reset
                return
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > limit:
                self._refuse()

        def _refuse(self) -> None:
            self._refused = True
            # Never reaches the app, so the request log would not show it.
            log.warning(
                "request_head_too_large",
                client=self.client[0] if self.client else None,
                bytes_read=self._head_bytes,
                limit=limit,
            )
            body = problem_body(
                431,
                "headers-too-large",
                "Request headers too large",
                f"the request line and headers are over {limit:,} bytes; at most "
                f"{settings.max_header_bytes:,} bytes of headers are read",
            )
            payload = _JSON.encode(body)
            head = (
                "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                f"content-type: {PROBLEM_MEDIA_TYPE}\r\n"
                f"content-length: {len(payload)}\r\n"
                "connection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + payload)
            # Closed a moment later: closing with unread input would reset the connection, and the
            # client would not see the answer.
            asyncio.get_running_loop().call_later(1.0, self.transport.close)

    return {"http": HeadLimitedHttpTools}
