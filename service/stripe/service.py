"""Use cases of the Stripe integration seen by the API: the connection, receiving a signed event (stored,
never processed in the request), and the events' list and retry. The worker's side is in `inbound.py`
(events into orders and refunds) and `outbound.py` (codes into promotion codes)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import stripe
import structlog

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, MalformedBody, NotFound, Problem
from service.core.pagination import decode_position, encode_position
from service.core.secrets import CannotOpen, SecretBox
from service.core.strict_input import decode_body
from service.settings import Settings
from service.stripe import client as stripe_client
from service.stripe import domain, repository
from service.stripe.schemas import ConnectionIn, ConnectionOut, EventList, EventOut, EventStatus, Received

SIGNATURE_HEADER = "Stripe-Signature"
log = structlog.get_logger("encore.stripe")


class BadSignature(Problem):
    status = 400
    slug = "stripe-signature"
    title = "The Stripe signature does not verify"


class KeyRefused(InvalidInput):
    slug = "stripe-key-refused"
    title = "Stripe refused the key"


class SecretUnreadable(Problem):
    status = 503
    slug = "stripe-secret-unreadable"
    title = "The webhook secret cannot be read"


class StripeUnavailable(Problem):
    status = 503
    slug = "stripe-unavailable"
    title = "Stripe could not be reached"


class _Object(msgspec.Struct):
    object: dict[str, Any]


class EventIn(msgspec.Struct):
    """What Encore reads of an event's envelope (the rest is stored as it came)."""

    id: str
    type: str
    livemode: bool = False
    created: int = 0
    data: _Object | None = None
    api_version: str | None = None


def webhook_url(settings: Settings, program_id: UUID) -> str:
    return f"{settings.public_url}/v1/stripe/webhooks/{program_id}"


# --- connection ------------------------------------------------------------------------------------


async def check_key(settings: Settings, api_key: str) -> None:
    """Ask Stripe whether the key may read Checkout Sessions (the first thing the integration needs).
    422 if Stripe refuses it; 503 if Stripe cannot be reached. Outside any transaction."""
    async with stripe_client.stripe_for(settings) as made:
        try:
            await made.client(api_key).v1.checkout.sessions.list_async(params={"limit": 1})
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise KeyRefused(f"Stripe refused the key: {exc.user_message or exc}", field="api_key") from None
        except stripe.StripeError as exc:
            if stripe_client.is_passing(exc):
                raise StripeUnavailable(f"{stripe_client.describe(exc)}; try again") from None
            raise KeyRefused(stripe_client.describe(exc), field="api_key") from None


def _connection_out(
    row: dict[str, Any] | None, settings: Settings, program_id: UUID, counts: dict[str, int]
) -> ConnectionOut:
    if row is None:
        return ConnectionOut(connected=False, webhook_url=webhook_url(settings, program_id))
    return ConnectionOut(
        connected=True,
        mode=row["mode"],
        key_kind=row["key_kind"],
        key_last4=row["key_last4"],
        webhook_secret_last4=row.get("webhook_secret_last4"),
        create_orders=row["create_orders"],
        sku_metadata_key=row["sku_metadata_key"],
        category_metadata_key=row["category_metadata_key"],
        webhook_url=webhook_url(settings, program_id),
        connected_at=row["connected_at"],
        updated_at=row["updated_at"],
        last_event_at=row["last_event_at"],
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        events_waiting=counts.get("waiting", 0),
        events_failed=counts.get("failed", 0),
    )


async def connect(
    conn: Connection, program_id: UUID, data: ConnectionIn, settings: Settings, box: SecretBox, now: datetime
) -> ConnectionOut:
    """Store the connection (the key already checked with `check_key`), both secrets sealed."""
    facts = domain.key_facts(data.api_key)
    assert facts is not None  # the schema's pattern is the domain's
    kind, mode = facts
    row = await repository.put_connection(
        conn,
        program_id,
        {
            "secret_key": box.seal(data.api_key),
            "webhook_secret": box.seal(data.webhook_secret),
            "key_last4": data.api_key[-4:],
            "key_kind": kind,
            "mode": mode,
            "create_orders": data.create_orders,
            "sku_metadata_key": data.sku_metadata_key,
            "category_metadata_key": data.category_metadata_key,
        },
        now,
    )
    return _connection_out(
        {**row, "webhook_secret_last4": data.webhook_secret[-4:]},
        settings,
        program_id,
        await repository.event_counts(conn, program_id),
    )


async def connection(conn: Connection, program_id: UUID, settings: Settings, box: SecretBox) -> ConnectionOut:
    row = await repository.get_connection(conn, program_id)
    if row is not None:
        try:
            row["webhook_secret_last4"] = box.open(row["webhook_secret"])[-4:]
        except CannotOpen:  # a lost key: the state is still worth showing
            row["webhook_secret_last4"] = None
    return _connection_out(row, settings, program_id, await repository.event_counts(conn, program_id))


async def disconnect(conn: Connection, program_id: UUID) -> None:
    """Forget the keys. Events already received stay (and are processed: their orders stand); new ones
    are refused (404) until the program connects again."""
    if not await repository.delete_connection(conn, program_id):
        raise NotFound("this program has no Stripe connection")


# --- receiving -------------------------------------------------------------------------------------


async def receive(
    conn: Connection,
    program_id: UUID,
    body: bytes,
    signature: str | None,
    box: SecretBox,
    now: datetime,
) -> Received:
    """Verify an event Stripe sent on the raw body and store it (once: a replay finds the first). 400 for
    a missing or bad signature, a stale or future timestamp, or a body that is no event; 404 for a program
    without a connection. Nothing is stored then."""
    row = await repository.get_connection(conn, program_id)
    if row is None:
        raise NotFound("this program has no Stripe connection", field="path:program_id")
    if not signature:
        raise BadSignature(f"the {SIGNATURE_HEADER} header is missing", field=f"header:{SIGNATURE_HEADER}")
    if not signature.isascii():  # the SDK's comparison of non-ASCII text raises instead of refusing
        raise BadSignature(f"the {SIGNATURE_HEADER} header is not ASCII", field=f"header:{SIGNATURE_HEADER}")
    try:
        text = body.decode("utf-8")  # the signature is over this text: verify exactly what is stored
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the body is not valid UTF-8 (byte {exc.start})") from None
    # Against the wall clock, as the SDK measures the age: freshness is the network's, not a test's clock.
    problem = domain.timestamp_problem(domain.signature_timestamp(signature), time.time())
    if problem is not None:
        raise BadSignature(problem, field=f"header:{SIGNATURE_HEADER}")
    try:
        secret = box.open(row["webhook_secret"])
    except CannotOpen as exc:  # the server's keys, not the request: Stripe retries, an admin reconnects
        log.error("stripe_webhook_secret_unreadable", program=str(program_id), problem=str(exc))
        raise SecretUnreadable(
            f"the webhook secret {exc}: connect Stripe again (PUT /v1/stripe/connection)"
        ) from None
    try:
        # The SDK's check (what StripeClient.construct_event runs first): HMAC-SHA256 of `t.body`, the
        # timestamp within 300 s. The body is then decoded strictly, as every body the API takes.
        stripe.WebhookSignature.verify_header(text, signature, secret, domain.TOLERANCE_SECONDS)
    except (stripe.SignatureVerificationError, TypeError, ValueError) as exc:
        raise BadSignature(
            "the signature does not verify with this program's webhook secret "
            f"({getattr(exc, 'user_message', None) or exc})",
            field=f"header:{SIGNATURE_HEADER}",
        ) from None
    event = _event(body)
    return await store(conn, program_id, event, body, row, source="webhook", now=now)


def _event(body: bytes) -> EventIn:
    try:
        event: EventIn = decode_body(body, EventIn)
    except Problem as problem:
        # The API's problems name fields without Litestar's `data.` prefix, but an event's `data` is its
        # own field (the envelope has no `object` of its own that Encore reads).
        if problem.field is not None and re.match(r"object(?:$|[.\[])", problem.field):
            problem.field = f"data.{problem.field}"
        raise
    if not event.id.startswith("evt_") or not 4 < len(event.id) <= 255:
        raise InvalidInput("an event id starts with evt_", field="id")
    if not 0 < len(event.type) <= 100:
        raise InvalidInput("an event has a type", field="type")
    if event.data is None:
        raise InvalidInput("an event carries data.object", field="data")
    if not 0 <= event.created <= 7_258_118_400:  # 2200-01-01
        raise InvalidInput("created is a Unix time", field="created")
    if event.api_version is not None and len(event.api_version) > 40:
        raise InvalidInput("api_version is at most 40 characters", field="api_version")
    return event


async def store(
    conn: Connection,
    program_id: UUID,
    event: EventIn,
    body: bytes,
    connection_row: dict[str, Any],
    *,
    source: str,
    now: datetime,
) -> Received:
    """Store an event for the worker; types it does not act on, and events of the other mode, are stored
    as ignored at once (with the reason)."""
    live = connection_row["mode"] == "live"
    ignored: str | None = None
    if event.livemode != live:
        ignored = domain.act_on(event.type, {}, connection_live=live, event_live=event.livemode).why
    elif event.type not in domain.HANDLED:
        ignored = f"Encore does not act on {event.type}"
    status: EventStatus = "ignored" if ignored else "received"
    stored = await repository.insert_event(
        conn,
        program_id,
        stripe_id=event.id,
        type_=event.type,
        livemode=event.livemode,
        api_version=event.api_version,
        created=datetime.fromtimestamp(event.created, UTC),
        payload=body,
        source=source,
        status=status,
        outcome=ignored,
        now=now,
    )
    if stored is not None:
        return Received(received=True, id=stored, status=status, duplicate=False)
    first = await repository.event_by_stripe_id(conn, program_id, event.id)
    assert first is not None
    return Received(received=True, id=first["id"], status=first["status"], duplicate=True)


def parse_saved(body: bytes) -> EventIn:
    """A saved event (`encore stripe replay`), checked as a received one is."""
    return _event(body)


async def replay(conn: Connection, program_id: UUID, event: EventIn, body: bytes, now: datetime) -> Received:
    """Store a saved event as a received one (`encore stripe replay`: no signature, a person feeds it)."""
    row = await repository.get_connection(conn, program_id)
    if row is None:
        raise NotFound("this program has no Stripe connection (PUT /v1/stripe/connection)")
    return await store(conn, program_id, event, body, row, source="replay", now=now)


# --- events ----------------------------------------------------------------------------------------


def event_out(row: dict[str, Any]) -> EventOut:
    return EventOut(
        id=row["id"],
        stripe_id=row["stripe_id"],
        type=row["type"],
        livemode=row["livemode"],
        api_version=row["api_version"],
        created=row["created"],
        source=row["source"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if row["status"] in ("received", "waiting") else None,
        outcome=row["outcome"],
        last_error=row["last_error"],
        received_at=row["received_at"],
        processed_at=row["processed_at"],
    )


async def list_events(
    conn: Connection, program_id: UUID, status: str | None, type_: str | None, cursor: str | None, limit: int
) -> EventList:
    rows = await repository.list_events(conn, program_id, status, type_, decode_position(cursor), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return EventList(
        items=[event_out(row) for row in rows],
        next_cursor=encode_position(rows[-1]["received_at"], rows[-1]["id"]) if more else None,
    )


async def get_event(conn: Connection, program_id: UUID, event_id: UUID) -> EventOut:
    row = await repository.get_event(conn, program_id, event_id)
    if row is None:
        raise NotFound("no such Stripe event in this program", field="path:event_id")
    return event_out(row)


async def retry(conn: Connection, program_id: UUID, event_id: UUID, now: datetime) -> EventOut:
    """Process a failed, waiting or ignored event again, now (the worker picks it up)."""
    row = await repository.retry_event(conn, program_id, event_id, now)
    if row is not None:
        return event_out(row)
    found = await repository.get_event(conn, program_id, event_id)
    if found is None:
        raise NotFound("no such Stripe event in this program", field="path:event_id")
    if found["status"] == "processed":
        raise Conflict("this event was processed already", field="path:event_id")
    if found["status"] == "received" and found["next_attempt_at"] <= now:
        return event_out(found)  # queued and due already (a claim would have moved it to its lease's end)
    raise Conflict("this event is being processed now", field="path:event_id")
