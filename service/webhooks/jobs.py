"""The worker's webhook sweeps: fan outbox events out to endpoints, then deliver them, signed.

Two stages, because each endpoint needs its own retry state:
- dispatch: the webhooks' outbox consumer (service/outbox/consumers.py): one statement takes the next
  events after its position, inserts one delivery per subscribed endpoint (unique per event and
  endpoint) and moves the position past them. No network in it, so no lease is needed: a killed
  worker's transaction simply rolls back, position and all.
- deliver: a short transaction claims due deliveries with a lease (claimed_by, claimed_until, and
  next_attempt_at moved to the lease's end, so a killed worker's rows fall due again by themselves);
  the HTTP calls run outside any transaction, many at once; results are written in batches, each
  only if the row's lease is still ours. At least once, and `webhook-id` (the event id) lets the
  receiver drop a repeat.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import aiohttp
import structlog
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.resolver import ThreadedResolver
from prometheus_client import Counter as MetricCounter
from prometheus_client import Histogram

from service.core import db
from service.core.clock import Clock
from service.core.secrets import CannotOpen, SecretBox
from service.outbox import consumers
from service.outbox.service import Event, emit
from service.settings import Settings
from service.webhooks import domain, repository

log = structlog.get_logger("encore.webhooks")

DELIVERIES = MetricCounter(
    "encore_webhook_deliveries", "Webhook delivery attempts by result", ["result"]
)  # succeeded | failed (will retry) | dead
DELIVERY_SECONDS = Histogram(
    "encore_webhook_delivery_seconds",
    "Latency of webhook attempts",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DISPATCHED = MetricCounter("encore_outbox_dispatched_events", "Outbox events handed to webhook deliveries")

USER_AGENT = "Encore-Webhooks/0.1 (+https://www.standardwebhooks.com)"
RESPONSE_EXCERPT_BYTES = 512  # what we keep of a failed answer; a huge answer is never read in full
SUCCESS_BODY_BYTES = 64 * 1024  # read a small success body to the end, so the connection is reused

# Active in a program with an enabled endpoint. A delivery reads its event's payload, and goes with it
# (cascade): the event stays while one is not finished (pending, or paused with its endpoint) and, so a
# shop sees its deliveries for the retention period, until its deliveries are older than the cutoff ($1).
CONSUMER = consumers.register(
    "webhooks",
    active_programs="SELECT program_id FROM webhook_endpoint WHERE enabled",
    holds="EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.event_id = o.id"
    " AND (d.status IN ('pending', 'paused') OR d.created_at >= $1))",
)

# Every committed event is due, whatever time it carries: a sweep run at a simulated time (`--now`)
# stamps its events with that time, and they must not wait for the real date.
_DISPATCH = f"""
    WITH {consumers.batch(CONSUMER, "$2")}, fanned AS (
        INSERT INTO webhook_delivery (program_id, endpoint_id, event_id, topic, next_attempt_at,
                                      window_started_at, created_at)
        SELECT c.program_id, e.id, c.id, c.topic, $1, $1, $1
        FROM batch c JOIN webhook_endpoint e ON e.program_id = c.program_id AND e.enabled
        -- A test goes to one endpoint only: its delivery is written with the event (service.send_test).
        WHERE c.topic <> 'webhook.test'
          -- `*`: every event; `group.*` matches the group's topics.
          AND ('*' = ANY(e.event_types) OR EXISTS (
            SELECT 1 FROM unnest(e.event_types) p
            WHERE p = c.topic OR (right(p, 2) = '.*' AND starts_with(c.topic, left(p, -1)))))
        ON CONFLICT (event_id, endpoint_id) DO NOTHING
        RETURNING 1
    )
    SELECT {consumers.COUNTS}, (SELECT count(*) FROM fanned) AS deliveries
"""


async def dispatch(now: datetime, chunk_size: int = 1000, budget_seconds: float = 10.0) -> int:
    """Fan outbox events out to subscribed, enabled endpoints; returns the events handled."""
    handled = 0
    stop_at = time.monotonic() + budget_seconds
    while True:
        async with db.transaction() as conn:
            row = await consumers.take(conn, CONSUMER, _DISPATCH, now, chunk_size)
        handled += int(row["events"])
        DISPATCHED.inc(row["events"])
        if row["events"] < chunk_size or time.monotonic() > stop_at:
            return handled


_CLAIM = """
    WITH due AS (
        SELECT id FROM webhook_delivery
        WHERE status = 'pending' AND next_attempt_at <= $1 AND NOT (endpoint_id = ANY($4::uuid[]))
        ORDER BY next_attempt_at, id LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_delivery d SET claimed_by = $3, claimed_until = $5, next_attempt_at = $5
    FROM due, webhook_endpoint e, outbox o
    WHERE d.id = due.id AND e.id = d.endpoint_id AND o.id = d.event_id
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.window_started_at, d.claimed_until,
              e.url, e.secret, e.previous_secret, e.previous_secret_until,
              -- The Standard Webhooks payload shape: type, timestamp, data.
              jsonb_build_object('type', o.topic, 'timestamp', o.created_at, 'data', o.payload)::text AS body
"""

_RECORD = """
    UPDATE webhook_delivery d SET
        -- An endpoint disabled while this attempt was in flight: the retry waits with its peers (paused).
        status = CASE WHEN r.status = 'pending' AND NOT e.enabled THEN 'paused' ELSE r.status END,
        attempts = d.attempts + 1,
        next_attempt_at = coalesce(r.next_at, d.next_attempt_at),
        claimed_by = NULL, claimed_until = NULL,
        last_attempt_at = r.at, last_status_code = r.code, last_latency_ms = r.ms, last_error = r.error,
        finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE r.at END
    FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::int[],
                $7::text[], $8::timestamptz[]) AS r(id, status, next_at, at, code, ms, error, lease),
         webhook_endpoint e
    WHERE d.id = r.id AND d.claimed_by = $9 AND d.claimed_until = r.lease AND e.id = d.endpoint_id
    RETURNING d.endpoint_id
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    event_id: UUID
    endpoint_id: UUID
    attempts: int
    window_started_at: datetime
    lease: datetime
    url: str
    keys: list[str]  # the signing secrets, decrypted
    body: str
    unsigned: str | None = None  # why it can't be signed (a secret no key opens): failed without a request


@dataclass(frozen=True, slots=True)
class Outcome:
    claimed: Claimed
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class RefusedAddress(OSError):
    """A connection the worker will not make: its address is not public. strerror is the reason (aiohttp
    shows only an OSError's strerror)."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)


class PublicOnlyResolver(ThreadedResolver):
    """Resolves names but drops private addresses, at connect time (no DNS-rebinding window)."""

    def __init__(self, allow_loopback: bool) -> None:
        super().__init__()
        self.allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        problems = [domain.connect_problem(r["host"], self.allow_loopback) for r in found]
        usable = [r for r, problem in zip(found, problems, strict=True) if problem is None]
        if not usable:
            refused = "; ".join(dict.fromkeys(p for p in problems if p is not None))
            raise RefusedAddress(
                f"refused: {host} resolves only to addresses webhooks are not sent to: {refused}"
            )
        return usable


class PublicOnlyConnector(aiohttp.TCPConnector):
    """Connects only to public addresses (with allow_loopback, also 127.0.0.1 and ::1), however the
    address was reached: a name (the resolver drops private results too), an IP literal (for which aiohttp
    skips the resolver, e.g. one yarl made of `127。0。0。1`), DNS rebinding, anything. Each socket's address
    is checked before it connects, so nothing, not a SYN nor a TLS hello, is sent anywhere else; the
    connection's peer is checked again once it is made."""

    def __init__(self, allow_loopback: bool, **options: Any) -> None:
        self.allow_loopback = allow_loopback
        super().__init__(
            resolver=PublicOnlyResolver(allow_loopback), socket_factory=self._open_socket, **options
        )

    def _refusal(self, address: str, verb: str) -> RefusedAddress | None:
        problem = domain.connect_problem(address, self.allow_loopback)
        return None if problem is None else RefusedAddress(f"refused: the connection {verb} {problem}")

    def _open_socket(self, addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, address = addr_info
        refused = self._refusal(str(address[0]), "would reach")
        if refused is not None:
            raise refused
        return socket.socket(family, kind, proto)

    async def _wrap_create_connection(
        self, *args: Any, req: aiohttp.ClientRequest, **kwargs: Any
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        transport, protocol = await super()._wrap_create_connection(*args, req=req, **kwargs)
        peer = transport.get_extra_info("peername")
        refused = self._refusal(str(peer[0]) if peer else "an unknown peer", "reached")  # fails closed
        if refused is not None:  # a socket made some other way: closed before the request is written
            transport.abort()
            raise aiohttp.ClientConnectorError(req.connection_key, refused)
        return transport, protocol


class Deliverer:
    """Delivers due webhook deliveries: many requests in flight, results written in batches."""

    def __init__(self, settings: Settings, clock: Clock, worker_id: str) -> None:
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id
        self.stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._box: SecretBox | None = None

    async def __aenter__(self) -> Deliverer:
        self._box = self.settings.secret_box()  # here, not in __init__: `encore jobs list` makes one too
        connector = PublicOnlyConnector(
            self.settings.webhooks_allow_local_http,
            limit=self.settings.webhook_concurrency,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds),
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
            trust_env=False,  # no proxy from the environment: the connector must see the real peer
        )
        return self

    async def __aexit__(self, *_: Any) -> None:
        if self._session is not None:
            await self._session.close()

    def stop(self) -> None:
        """Claim nothing more; what is in flight finishes and is recorded."""
        self.stopping.set()

    async def run(self, budget_seconds: float | None = None) -> int:
        """Deliver until nothing is due (or the budget is spent, or stop()); returns attempts made."""
        budget = self.settings.worker_run_budget_seconds if budget_seconds is None else budget_seconds
        stop_claiming_at = time.monotonic() + budget
        capacity = self.settings.webhook_concurrency
        per_endpoint_cap = self.settings.webhook_endpoint_concurrency
        inflight: dict[asyncio.Task[Outcome], UUID] = {}
        per_endpoint: Counter[UUID] = Counter()  # this run's tasks per endpoint: busy ones aren't claimed for
        # At most `per_endpoint_cap` requests in flight per endpoint; a claim may bring more, which wait.
        gates: dict[UUID, asyncio.Semaphore] = {}
        results: list[Outcome] = []
        attempts = 0
        nothing_due_until = 0.0
        last_flush = time.monotonic()
        while True:
            now_mono = time.monotonic()
            claiming = not self.stopping.is_set() and now_mono < stop_claiming_at
            free = capacity - len(inflight)
            if claiming and free >= max(1, capacity // 4) and now_mono >= nothing_due_until:
                busy = [e for e, n in per_endpoint.items() if n >= per_endpoint_cap]
                claimed = await self._claim(min(free, per_endpoint_cap * 2), busy)
                if not claimed and not busy:
                    nothing_due_until = now_mono + 0.2  # nothing due: don't ask again at once
                # (With busy endpoints left out, the next claim waits for a request to finish instead.)
                for item in claimed:
                    gate = gates.setdefault(item.endpoint_id, asyncio.Semaphore(per_endpoint_cap))
                    task = asyncio.create_task(self._attempt(item, gate))
                    inflight[task] = item.endpoint_id
                    per_endpoint[item.endpoint_id] += 1
            if results and (len(results) >= 200 or not inflight or now_mono - last_flush > 0.1):
                await self._record(results)
                attempts += len(results)
                results = []
                last_flush = now_mono
            if not inflight:
                if not claiming or now_mono < nothing_due_until:
                    return attempts
                continue
            done, _ = await asyncio.wait(inflight, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                endpoint_id = inflight.pop(task)
                per_endpoint[endpoint_id] -= 1
                if per_endpoint[endpoint_id] == 0:
                    del per_endpoint[endpoint_id], gates[endpoint_id]
                results.append(task.result())

    async def _claim(self, limit: int, busy: list[UUID]) -> list[Claimed]:
        now = self.clock.now()
        lease = now + timedelta(seconds=self.settings.worker_lease_seconds)
        async with db.transaction() as conn:
            rows = await conn.fetch(_CLAIM, now, limit, self.worker_id, busy, lease)
        opened: dict[str, str | CannotOpen] = {}  # an endpoint's many deliveries: each secret opened once
        claimed = []
        for r in rows:
            sealed = domain.signing_secrets(
                r["secret"], r["previous_secret"], r["previous_secret_until"], now
            )
            keys = [self._open(secret, opened, r["endpoint_id"]) for secret in sealed]
            problems = [key for key in keys if isinstance(key, CannotOpen)]
            claimed.append(
                Claimed(
                    id=r["id"],
                    event_id=r["event_id"],
                    endpoint_id=r["endpoint_id"],
                    attempts=r["attempts"],
                    window_started_at=r["window_started_at"],
                    lease=r["claimed_until"],
                    url=r["url"],
                    keys=[key for key in keys if isinstance(key, str)],
                    body=r["body"],
                    unsigned=f"the signing secret {problems[0]}" if problems else None,
                )
            )
        return claimed

    def _open(self, sealed: str, opened: dict[str, str | CannotOpen], endpoint_id: UUID) -> str | CannotOpen:
        """A signing secret in plain text, or why it can't be had (logged once per claim, without it)."""
        if sealed not in opened:
            assert self._box is not None, "a Deliverer is used inside `async with`"
            try:
                opened[sealed] = self._box.open(sealed)
            except CannotOpen as exc:
                opened[sealed] = exc
                log.warning("webhook_secret_unreadable", endpoint=str(endpoint_id), problem=str(exc))
        return opened[sealed]

    async def _attempt(self, item: Claimed, gate: asyncio.Semaphore) -> Outcome:
        async with gate:
            return await self._post(item)

    async def _post(self, item: Claimed) -> Outcome:
        assert self._session is not None
        at = self.clock.now()
        if item.unsigned is not None:
            return Outcome(item, at, None, 0, item.unsigned)
        refused = domain.url_problem(item.url, self.settings.webhooks_allow_local_http)
        if refused is not None:
            return Outcome(item, at, None, 0, f"not sent: {refused}")
        # The signature's timestamp is the wall clock: receivers check it against theirs (replay window).
        signed_at = datetime.now(UTC)
        message_id = str(item.event_id)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": domain.signature_header(item.keys, message_id, signed_at, item.body),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                item.url, data=item.body.encode(), headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                limit = SUCCESS_BODY_BYTES if 200 <= status < 300 else RESPONSE_EXCERPT_BYTES
                excerpt = await _read_at_most(response, limit)
                if not 200 <= status < 300:
                    text = excerpt.decode("utf-8", "replace").strip()
                    error = f"HTTP {status}" + (f": {text[:RESPONSE_EXCERPT_BYTES]}" if text else "")
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_seconds:g} s"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                error = str(exc.os_error.strerror)
                # Endpoint and address only: the URL may carry a token.
                log.warning("webhook_connection_refused", endpoint=str(item.endpoint_id), reason=error)
            else:
                error = f"{type(exc).__name__}: {exc}"[:RESPONSE_EXCERPT_BYTES]
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:RESPONSE_EXCERPT_BYTES]
        elapsed = time.perf_counter() - started
        DELIVERY_SECONDS.observe(elapsed)
        return Outcome(item, at, status, round(elapsed * 1000), error)

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Write a batch of results, then each endpoint's health (disabling one failing for 5 days)."""
        statuses: list[str] = []
        next_at: list[datetime | None] = []
        for o in outcomes:
            if o.succeeded:
                statuses.append("succeeded")
                next_at.append(None)
                DELIVERIES.labels("succeeded").inc()
                continue
            retry_at = domain.next_attempt(
                o.claimed.attempts + 1, o.claimed.window_started_at, o.at, random.random()
            )
            statuses.append("pending" if retry_at is not None else "dead")
            next_at.append(retry_at)
            DELIVERIES.labels("failed" if retry_at is not None else "dead").inc()
        by_endpoint: dict[UUID, list[tuple[datetime, bool]]] = {}
        for o in outcomes:
            by_endpoint.setdefault(o.claimed.endpoint_id, []).append((o.at, o.succeeded))
        async with db.transaction() as conn:
            # Endpoints first, in id order: the API locks an endpoint before its deliveries too.
            endpoints = await conn.fetch(
                "SELECT id, program_id, url, failing_since FROM webhook_endpoint WHERE id = ANY($1::uuid[])"
                " ORDER BY id FOR UPDATE",
                list(by_endpoint),
            )
            await conn.execute(
                _RECORD,
                [o.claimed.id for o in outcomes],
                statuses,
                next_at,
                [o.at for o in outcomes],
                [o.status_code for o in outcomes],
                [o.latency_ms for o in outcomes],
                [o.error for o in outcomes],
                [o.claimed.lease for o in outcomes],
                self.worker_id,
            )
            for endpoint in endpoints:
                await _record_health(conn, endpoint, by_endpoint[endpoint["id"]])


async def _record_health(conn: db.Connection, endpoint: Any, outcomes: list[tuple[datetime, bool]]) -> None:
    health = domain.health_after(endpoint["failing_since"], outcomes)
    successes = [at for at, ok in outcomes if ok]
    failures = [at for at, ok in outcomes if not ok]
    await conn.execute(
        """
        UPDATE webhook_endpoint SET failing_since = $2,
               last_success_at = greatest(last_success_at, $3), last_failure_at = greatest(last_failure_at, $4)
        WHERE id = $1
        """,
        endpoint["id"],
        health.failing_since,
        max(successes, default=None),
        max(failures, default=None),
    )
    if not health.disable:
        return
    now = max(failures)
    reason = f"disabled automatically: every delivery failed since {health.failing_since:%Y-%m-%d %H:%M} UTC"
    disabled = await conn.fetchval(
        "UPDATE webhook_endpoint SET enabled = false, disabled_reason = $2, updated_at = $3"
        " WHERE id = $1 AND enabled RETURNING id",
        endpoint["id"],
        reason,
        now,
    )
    if disabled is None:
        return
    paused = await repository.pause_deliveries(conn, endpoint["id"])
    log.warning("webhook_endpoint_disabled", endpoint=str(endpoint["id"]), reason=reason)
    event = {
        "endpoint_id": str(endpoint["id"]),
        "url": endpoint["url"],
        "failing_since": health.failing_since,
        "reason": reason,
        "paused_deliveries": paused,
    }
    await emit(conn, endpoint["program_id"], [Event("webhook_endpoint.disabled", event)], now)


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    while len(body) < limit:
        chunk = await response.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)
