"""Use cases for webhook endpoints: CRUD, secret rotation, deliveries, retry, test."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from service.core import idempotency
from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.pagination import decode_cursor, encode_cursor
from service.core.secrets import SecretBox, reseal
from service.outbox.service import Event, emit
from service.outbox.topics import is_known
from service.webhooks import domain, repository
from service.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
)


def _out(row: dict[str, Any], now: datetime) -> EndpointOut:
    until = row["previous_secret_until"]
    return EndpointOut(
        id=row["id"],
        url=row["url"],
        event_types=list(row["event_types"]),
        description=row["description"],
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        previous_secret_valid_until=until if until is not None and until > now else None,
        failing_since=row["failing_since"],
        last_success_at=row["last_success_at"],
        last_failure_at=row["last_failure_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _with_secret(row: dict[str, Any], now: datetime, secret: str) -> EndpointWithSecret:
    """The endpoint with its new secret in plain text: the one answer that shows it (the row holds it sealed)."""
    out = _out(row, now)
    return EndpointWithSecret(**{f: getattr(out, f) for f in out.__struct_fields__}, secret=secret)


def delivery_out(row: dict[str, Any]) -> DeliveryOut:
    return DeliveryOut(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        event_type=row["topic"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_latency_ms=row["last_latency_ms"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


def _check_url(url: str, allow_local_http: bool) -> None:
    problem = domain.url_problem(url, allow_local_http)
    if problem is not None:
        raise InvalidInput(problem, field="url")


def _check_event_types(event_types: list[str]) -> list[str]:
    """The patterns as stored; `*` (every event) only alone, so a list never means more than it says."""
    for i, pattern in enumerate(event_types):
        if pattern == domain.EVERY_EVENT:
            if len(set(event_types)) > 1:
                raise InvalidInput(
                    "`*` already means every event: give it alone, or only the topics and groups you want",
                    field=f"event_types[{i}]",
                )
        elif not is_known(pattern):
            raise InvalidInput(
                f"unknown event type {pattern!r}; use a topic such as `order.created`, a group such as "
                "`points.*`, or `*` alone for every event",
                field=f"event_types[{i}]",
            )
    return sorted(set(event_types))


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "endpoint_id": str(row["id"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
    }


async def _load(
    conn: Connection, program_id: UUID, endpoint_id: UUID, *, lock: bool = False
) -> dict[str, Any]:
    row = await repository.get_endpoint(conn, program_id, endpoint_id, lock=lock)
    if row is None:
        raise NotFound("no such webhook endpoint in this program", field="path:endpoint_id")
    return row


async def create(
    conn: Connection,
    program_id: UUID,
    data: EndpointCreate,
    now: datetime,
    *,
    allow_local_http: bool,
    box: SecretBox,
) -> EndpointWithSecret:
    _check_url(data.url, allow_local_http)
    event_types = _check_event_types(data.event_types)
    secret = domain.new_secret()
    row = await repository.insert_endpoint(
        conn,
        program_id,
        uuid4(),
        data.url,
        event_types,
        data.description,
        data.enabled,
        box.seal(secret),
        now,
    )
    await emit(conn, program_id, [Event("webhook_endpoint.created", _public(row))], now)
    return _with_secret(row, now, secret)


async def get(conn: Connection, program_id: UUID, endpoint_id: UUID, now: datetime) -> EndpointOut:
    return _out(await _load(conn, program_id, endpoint_id), now)


async def list_all(conn: Connection, program_id: UUID, now: datetime) -> list[EndpointOut]:
    return [_out(row, now) for row in await repository.list_endpoints(conn, program_id)]


async def update(
    conn: Connection,
    program_id: UUID,
    endpoint_id: UUID,
    data: EndpointPatch,
    now: datetime,
    *,
    allow_local_http: bool,
) -> EndpointOut:
    row = await _load(conn, program_id, endpoint_id, lock=True)
    changes: dict[str, Any] = {}
    if isinstance(data.url, str):
        _check_url(data.url, allow_local_http)
        changes["url"] = data.url
    if isinstance(data.event_types, list):
        changes["event_types"] = _check_event_types(data.event_types)
    if isinstance(data.description, str):
        changes["description"] = data.description
    if isinstance(data.enabled, bool) and data.enabled != row["enabled"]:
        changes["enabled"] = data.enabled
        if data.enabled:
            changes.update(disabled_reason=None, failing_since=None)
            await repository.resume_deliveries(conn, endpoint_id, now)
        else:
            changes["disabled_reason"] = "disabled by an admin"
            await repository.pause_deliveries(conn, endpoint_id)
    if not changes:
        return _out(row, now)
    changes["updated_at"] = now
    row = await repository.update_endpoint(conn, endpoint_id, changes)
    event = _public(row) | {"changed": sorted(set(changes) - {"updated_at"}), "enabled": row["enabled"]}
    await emit(conn, program_id, [Event("webhook_endpoint.updated", event)], now)
    return _out(row, now)


async def delete(conn: Connection, program_id: UUID, endpoint_id: UUID, now: datetime) -> None:
    row = await _load(conn, program_id, endpoint_id, lock=True)
    await repository.delete_endpoint(conn, endpoint_id)
    await emit(conn, program_id, [Event("webhook_endpoint.deleted", _public(row))], now)


async def rotate_secret(
    conn: Connection,
    program_id: UUID,
    endpoint_id: UUID,
    overlap: timedelta,
    now: datetime,
    *,
    box: SecretBox,
) -> EndpointWithSecret:
    """A new secret signs from now on; the old one also signs until `now + overlap`, so a shop can
    deploy the new secret without rejecting deliveries in between."""
    row = await _load(conn, program_id, endpoint_id, lock=True)
    overlap = min(overlap, domain.MAX_ROTATION_OVERLAP)
    secret = domain.new_secret()
    row = await repository.update_endpoint(
        conn,
        endpoint_id,
        {
            "secret": box.seal(secret),
            # Moved as stored (sealed): the old secret need not be decrypted here.
            "previous_secret": row["secret"] if overlap > timedelta(0) else None,
            "previous_secret_until": now + overlap if overlap > timedelta(0) else None,
            "updated_at": now,
        },
    )
    event = _public(row) | {"changed": ["secret"], "enabled": row["enabled"]}
    await emit(conn, program_id, [Event("webhook_endpoint.updated", event)], now)
    return _with_secret(row, now, secret)


async def deliveries(
    conn: Connection, program_id: UUID, endpoint_id: UUID, cursor: str | None, limit: int, status: str | None
) -> DeliveryList:
    await _load(conn, program_id, endpoint_id)
    rows = await repository.list_deliveries(conn, endpoint_id, decode_cursor(cursor), limit + 1, status)
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryList(
        items=[delivery_out(r) for r in rows], next_cursor=encode_cursor(rows[-1]["id"]) if more else None
    )


async def retry(
    conn: Connection, program_id: UUID, endpoint_id: UUID, delivery_id: int, now: datetime
) -> DeliveryOut:
    """Deliver again now (also a succeeded or dead-lettered one), with a fresh retry window."""
    endpoint = await _load(conn, program_id, endpoint_id)
    if not endpoint["enabled"]:
        raise Conflict("the endpoint is disabled; enable it first (its paused deliveries then resume)")
    row = await repository.get_delivery(conn, endpoint_id, delivery_id, lock=True)
    if row is None:
        raise NotFound("no such delivery for this endpoint", field="path:delivery_id")
    if row["status"] == "pending" and row["claimed_until"] is not None and row["claimed_until"] > now:
        raise Conflict("a worker is delivering it right now; its result will show here shortly")
    return delivery_out(await repository.reschedule_delivery(conn, delivery_id, now))


async def send_test(conn: Connection, program_id: UUID, endpoint_id: UUID, now: datetime) -> DeliveryOut:
    """A `webhook.test` event for this endpoint only (whatever it subscribes to), delivered by the worker."""
    endpoint = await _load(conn, program_id, endpoint_id)
    if not endpoint["enabled"]:
        raise Conflict("the endpoint is disabled; enable it first")
    event = Event("webhook.test", {"endpoint_id": str(endpoint_id), "message": "Encore webhook test"})
    await emit(conn, program_id, [event], now)  # the dispatcher leaves `webhook.test` to this delivery
    row = await repository.insert_delivery(conn, program_id, endpoint_id, event.id, event.topic, now)
    return delivery_out(row)


async def seal_plaintext_secrets(box: SecretBox) -> int:
    """After the migrations (`encore migrate`, and every command that migrates first): seal the secrets
    stored in plain text before secrets were sealed, and the stored answers of the creations that showed
    them (kept for idempotent replays). Its own transactions, in batches; returns the values sealed."""
    endpoints = await reseal(repository.SEALED_SECRETS, box.seal_plaintext, plaintext_only=True)
    # Always, not only after sealing some endpoints: a run that stopped between the two has sealed every
    # endpoint and no answer, and no later run would look again. It reads every stored answer once (they
    # are kept for the idempotency retention, 7 days): 0.15 s for 100,000 answers, 1.5 s for a million.
    answers = await reseal(idempotency.SEALED_RESPONSES, box.seal_plaintext, plaintext_only=True)
    return endpoints.changed + answers.changed
