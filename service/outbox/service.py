"""Write domain events to the outbox inside the caller's transaction (delivery is the worker's job).

The only SQL that writes `outbox`: `emit` for a use case's events, `insert_events` for a set-based
sweep's. Both go through `_insert`, so the envelope (`{"id", "type", ...payload}`) is built in one place.
Consumers read the events through service.outbox.consumers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection


@dataclass(slots=True)
class Event:
    topic: str
    payload: dict[str, Any]
    id: UUID = field(default_factory=uuid4)


def _insert(rows: str, at: str) -> str:
    """The INSERT of one event per row of `rows` (id, program_id, topic, payload: a jsonb object of the
    event's own fields), stamped `at`. The payload gets the event's id and type; a field of the same
    name in the payload wins, as `{"id": ..., "type": ..., **payload}` would. No braces in here:
    callers may `.format()` a statement this is part of."""
    return f"""
        INSERT INTO outbox (id, program_id, topic, payload, created_at)
        SELECT e.id, e.program_id, e.topic, jsonb_build_object('id', e.id, 'type', e.topic) || e.payload, {at}
        FROM ({rows}) AS e
    """


def insert_events(rows: str, at: str) -> str:
    """The set-based emit: a statement (alone, or a data-modifying CTE of the caller's statement) writing
    one event per row of `rows`, a SELECT yielding `program_id`, `topic` and `payload` (a jsonb object of
    the event's own fields, without id and type), each with a new id, stamped `at` (an SQL expression,
    usually the statement's `now` parameter)."""
    # gen_random_uuid() in a subquery's select list runs once per row, and PostgreSQL does not flatten a
    # subquery with a volatile output: the outbox row and its payload get the same id.
    return _insert(f"SELECT gen_random_uuid() AS id, r.program_id, r.topic, r.payload FROM ({rows}) AS r", at)


_EMIT = _insert(
    """
    SELECT u.id, $1::uuid AS program_id, u.topic, u.payload::jsonb AS payload
    FROM unnest($3::uuid[], $4::text[], $5::text[]) AS u(id, topic, payload)
    """,
    "$2",
)


async def emit(conn: Connection, program_id: UUID, events: list[Event], now: datetime) -> None:
    """One INSERT for all events of a use case. Each event has its own id, which receivers dedupe on.
    `now` stamps the events; consumers take them as soon as the transaction commits, whatever `now` was."""
    if not events:
        return
    await conn.execute(
        _EMIT,
        program_id,
        now,
        [e.id for e in events],
        [e.topic for e in events],
        [msgspec.json.encode(e.payload).decode() for e in events],
    )
