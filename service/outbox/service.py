"""Write domain events to the outbox inside the caller's transaction (delivery is the worker's job)."""

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


async def emit(
    conn: Connection, program_id: UUID, events: list[Event], now: datetime, *, dispatched: bool = False
) -> None:
    """One INSERT for all events of a use case. Each event has its own id, which receivers dedupe on.
    `now` stamps the events; consumers take them as soon as the transaction commits, whatever `now` was.

    `dispatched`: the caller has created the events' deliveries itself (a webhook test goes to one
    endpoint only), so the dispatcher must not fan them out to every subscriber.
    """
    if not events:
        return
    await conn.execute(
        """
        INSERT INTO outbox (id, program_id, topic, payload, created_at, available_at, attempts, delivered_at)
        SELECT e.id, $1, e.topic, e.payload::jsonb, $2, $2, 0, CASE WHEN $6 THEN $2::timestamptz END
        FROM unnest($3::uuid[], $4::text[], $5::text[]) AS e(id, topic, payload)
        """,
        program_id,
        now,
        [e.id for e in events],
        [e.topic for e in events],
        [msgspec.json.encode({"id": str(e.id), "type": e.topic, **e.payload}).decode() for e in events],
        dispatched,
    )
