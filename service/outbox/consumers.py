"""Every outbox event, once per consumer: each consumer (webhooks, journeys, and the next ones) keeps a
position in the outbox and moves it in the transaction that handles the events it passed.

An event's position is (tx, seq): the transaction that wrote it (`pg_current_xact_id()`) and a sequence
number. A consumer takes the events after its position, in that order, but only those of transactions
older than every transaction of this database still in progress (the *horizon*): those transactions are
over, so all their events are visible, and no event can appear later behind a position — a transaction
that commits late is not skipped, it holds the horizon back until it commits. (A rolled-back one just
leaves nothing.) Then, in one statement with the consumer's own work, the position moves to the last
event taken; its row is locked (`FOR UPDATE SKIP LOCKED`), so one worker at a time moves a consumer and
another worker finds nothing to do instead of waiting. A killed worker's transaction rolls back with
its position: nothing is lost, and nothing is handled twice in committed state.

The horizon counts only this database's transactions: an XID of a session in another database on the
same server (seen in pg_stat_activity) cannot write our outbox, so it does not hold consumers back. An
XID whose database is not known (a prepared transaction, a role that may not see other sessions) is
counted, which is safe, only slower. A long transaction that wrote something here delays every
consumer until it ends (an import's big chunk, say): events are late, never lost.

Housekeeping (service.outbox.jobs) deletes an event once every consumer that is *active* for its
program has passed it: each consumer says, as it registers, which programs it has something to do in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from asyncpg import Record

from service.core.db import Connection

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class Consumer:
    """A reader of every outbox event.

    - `active_programs`: a SELECT of `program_id`s where it has something to do (webhooks: an enabled
      endpoint). Elsewhere it does not hold events back from housekeeping.
    - `holds`: a condition on an event `o` it has passed but still needs, whatever the program
      (webhooks: deliveries read the event's payload); `$1` in it is housekeeping's retention cutoff.
    """

    name: str
    active_programs: str
    holds: str = "false"


_REGISTERED: dict[str, Consumer] = {}


def register(name: str, *, active_programs: str, holds: str = "false") -> Consumer:
    """Declare a consumer (once, at import of its module). Its position row is made the first time it
    takes events, at the start of the outbox; a migration may seed it elsewhere."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"an outbox consumer's name is lower snake case: {name!r}")  # it goes into SQL
    consumer = Consumer(name, active_programs, holds)
    if _REGISTERED.setdefault(name, consumer) != consumer:
        raise ValueError(f"two outbox consumers are called {name!r}")
    return consumer


def registered() -> list[Consumer]:
    return sorted(_REGISTERED.values(), key=lambda c: c.name)


def position(consumer: Consumer) -> str:
    """The consumer's position as a row value (uncorrelated subqueries: run once, usable as an index
    bound). No row yet: before every event."""
    row = f"FROM outbox_consumer WHERE name = '{consumer.name}'"
    return f"(coalesce((SELECT tx {row}), '0'::xid8), coalesce((SELECT seq {row}), 0))"


def waiting(consumer: Consumer, event: str = "o") -> str:
    """A condition: the outbox row `event` is one the consumer has not passed yet."""
    return f"({event}.tx, {event}.seq) > {position(consumer)}"


# Every transaction older than this is over (see the module's docstring). Our own transaction counts
# too: what it wrote so far is visible to it, but it may write more before it commits.
HORIZON = """least(
    pg_snapshot_xmax(pg_current_snapshot()),
    pg_current_xact_id_if_assigned(),
    (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
     WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                       WHERE a.backend_xid = x::xid AND a.datname <> current_database())))"""


def batch(consumer: Consumer, limit: str) -> str:
    """The common table expressions of a consumer's statement: `position` (its row, locked; none while
    another worker holds it), `known` (whether it has a row), `batch` (the next events: id, program_id,
    topic, payload, created_at, tx, seq; at most `limit`, an SQL expression) and `advanced` (the position
    moved past the batch). The consumer adds its own CTEs over `batch`, ends with `SELECT {COUNTS}, ...`
    and runs it with `take`, in a transaction that holds nothing else:

        WITH {batch(CONSUMER, "$2")}, done AS (INSERT ... SELECT ... FROM batch b ...)
        SELECT {COUNTS}, (SELECT count(*) FROM done) AS done
    """
    return f"""
        position AS MATERIALIZED (
            SELECT tx, seq FROM outbox_consumer WHERE name = '{consumer.name}' FOR UPDATE SKIP LOCKED
        ), known AS (
            SELECT count(*) AS n FROM outbox_consumer WHERE name = '{consumer.name}'
        ), batch AS MATERIALIZED (
            SELECT o.id, o.program_id, o.topic, o.payload, o.created_at, o.tx, o.seq
            FROM outbox o
            WHERE (o.tx, o.seq) > ((SELECT tx FROM position), (SELECT seq FROM position))
              AND o.tx < (SELECT {HORIZON})
            ORDER BY o.tx, o.seq
            LIMIT {limit}
        ), advanced AS (
            UPDATE outbox_consumer c SET tx = last.tx, seq = last.seq
            FROM (SELECT tx, seq FROM batch ORDER BY tx DESC, seq DESC LIMIT 1) AS last
            WHERE c.name = '{consumer.name}'
        )"""


# `positioned`: whether the statement held the position (0: another worker has it, or it has no row);
# `known`: whether the row exists (a plain read: a row another worker holds counts).
COUNTS = (
    "(SELECT count(*) FROM position) AS positioned, (SELECT n FROM known) AS known,"
    " (SELECT count(*) FROM batch) AS events"
)


async def take(conn: Connection, consumer: Consumer, statement: str, *args: Any) -> Record:
    """Run a consumer's statement (built with `batch`, selecting `COUNTS`) once; returns its row, whose
    `events` says how many events it passed. A consumer without a position row gets one here (at the
    start of the outbox) and the statement runs again; one whose row another worker holds passes none."""
    row = await conn.fetchrow(statement, *args)
    assert row is not None
    if row["positioned"] or row["known"]:
        return row
    # No row yet. (Not for a row another worker holds: an insert would wait on its update.) Two workers
    # here at once: the second waits for the first's insert, then does nothing.
    created = await conn.fetchval(
        "INSERT INTO outbox_consumer (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING true",
        consumer.name,
    )
    if not created:
        return row
    row = await conn.fetchrow(statement, *args)
    assert row is not None
    return row
