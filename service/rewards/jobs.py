"""Code sweeps (worker jobs): unused codes past their date expire, and unused codes get one notice
7 days before they do.

- `expire_codes`: in chunks of due codes, one transaction per chunk, each code through
  `service.expire` (it takes the customer's ledger lock, gives the points back only when the program
  says so, and writes `redemption.expired`); a chunk takes its customers' ledger locks first, in
  customer order as the ledger's sweeps do, so it deadlocks with neither them nor a redemption.
- `code_expiry_notices`: set-based, like the ledger's expiry notices: each code marks its notice
  (`expiry_notice = 7`) in the statement that writes its `redemption.expiring_soon` event, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from service.core import db
from service.ledger import service as ledger
from service.outbox.service import insert_events
from service.programs import service as programs
from service.programs.service import Program
from service.rewards import service

NOTICE_DAYS = 7
_START = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))

# The next due codes in (expires_at, id) order after the previous chunk's last one (a keyset over the
# partial index redemption_due: no chunk rescans what an earlier one left behind).
_DUE = """
    SELECT id, program_id, customer_id, expires_at FROM redemption
    WHERE status = 'issued' AND expires_at IS NOT NULL AND expires_at <= $1 AND (expires_at, id) > ($3, $4)
    ORDER BY expires_at, id LIMIT $2
"""


@dataclass(slots=True)
class ExpiryResult:
    codes: int = 0  # expired by this run
    chunks: int = 0


async def expire_codes(now: datetime, chunk_size: int = 1_000) -> ExpiryResult:
    """Every issued code whose `expires_at` is past becomes expired (a code used or cancelled meanwhile
    is left as it is)."""
    result = ExpiryResult()
    after = _START
    loaded: dict[UUID, Program] = {}
    while True:
        async with db.transaction() as conn:
            rows = await conn.fetch(_DUE, now, chunk_size, *after)
            if not rows:
                return result
            after = (rows[-1]["expires_at"], rows[-1]["id"])
            # Every customer's ledger lock first, in order: expiring a code of a limited reward takes its
            # row, which a redemption takes after its own customer's lock (see ledger.lock_all).
            await ledger.lock_all(
                conn,
                [ledger.Customer(r["program_id"], r["customer_id"], "") for r in rows],
                now,
            )
            for row in sorted(rows, key=lambda r: (r["customer_id"], r["id"])):
                program = loaded.get(row["program_id"])
                if program is None:
                    program = loaded[row["program_id"]] = await programs.load(conn, row["program_id"])
                if await service.expire(conn, program, row["id"], now):
                    result.codes += 1
            result.chunks += 1
        if len(rows) < chunk_size:
            return result


# One event per code noticed ($1: now), with what `redemption.*` events carry.
_EXPIRING = insert_events(
    f"""
    SELECT n.program_id, 'redemption.expiring_soon' AS topic,
           jsonb_build_object(
               'customer', c.external_id, 'redemption_id', n.id::text, 'code', n.code,
               'reward', jsonb_build_object('id', n.reward_id::text, 'version', n.reward_version,
                                            'name', n.discount -> 'name', 'kind', n.discount ->> 'kind'),
               'points', n.points, 'expires_at', n.expires_at,
               'value', CASE WHEN n.value_amount IS NOT NULL
                             THEN jsonb_build_object('amount', n.value_amount, 'currency', n.currency) END,
               'source', n.source, 'days', {NOTICE_DAYS}) AS payload
    FROM noticed n JOIN customer c ON c.id = n.customer_id
    """,
    at="$1",
)
# $1 now, $2 the chunk's size. Codes still issued that expire within NOTICE_DAYS and have had no notice;
# SKIP LOCKED: a code being used or cancelled right now is left for the next run (it may need none).
_NOTICE = f"""
    WITH noticed AS (
        UPDATE redemption r SET expiry_notice = {NOTICE_DAYS}
        FROM (SELECT id FROM redemption
              WHERE status = 'issued' AND expires_at IS NOT NULL AND expiry_notice = 0
                    AND expires_at > $1 AND expires_at <= $1 + interval '{NOTICE_DAYS} days'
              ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) due
        WHERE r.id = due.id
        RETURNING r.*
    ), events AS ({_EXPIRING})
    SELECT count(*) FROM noticed
"""


async def code_expiry_notices(now: datetime, chunk_size: int = 10_000) -> int:
    """`redemption.expiring_soon` for every unused code expiring within 7 days, once per code; the
    codes noticed."""
    noticed = 0
    while True:
        async with db.transaction() as conn:
            count = int(await conn.fetchval(_NOTICE, now, chunk_size))
        noticed += count
        if count < chunk_size:
            return noticed
