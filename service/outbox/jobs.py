"""Outbox housekeeping: forget events past retention that no consumer needs any more."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.core import db
from service.outbox import consumers
from service.outbox.consumers import Consumer


def prune_statement(registered: Sequence[Consumer]) -> str:
    """The chunked delete of events created before $1 that every consumer active for their program has
    passed and none holds. $2: the registered consumers' names, $3: the chunk size.

    A consumer not active for a program does not hold that program's events back. A position row of a
    consumer this process does not know (registered by code not loaded here, or retired) holds every
    event it has not passed, wherever: delete its row to retire it."""
    needed = [
        f"({c.holds}) OR (o.program_id IN ({c.active_programs}) AND {consumers.waiting(c)})"
        for c in registered
    ]
    needed.append(
        "EXISTS (SELECT 1 FROM outbox_consumer u"
        " WHERE u.name <> ALL($2::text[]) AND (o.tx, o.seq) > (u.tx, u.seq))"
    )
    held = "\n               OR ".join(f"({condition})" for condition in needed)
    return f"""
        WITH old AS (
            SELECT o.id FROM outbox o
            WHERE o.created_at < $1
              AND NOT ({held})
            LIMIT $3
        ), gone AS (DELETE FROM outbox o USING old WHERE o.id = old.id RETURNING 1)
        SELECT count(*) FROM gone
    """


async def prune(cutoff: datetime) -> int:
    """Forget the events created before `cutoff` that no consumer needs (webhook deliveries go with
    them, by cascade); returns the events removed."""
    registered = consumers.registered()
    return await db.delete_in_chunks(prune_statement(registered), cutoff, [c.name for c in registered])
