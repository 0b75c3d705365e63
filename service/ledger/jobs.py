"""Set-based ledger sweeps: mature pending lots, expire lots, verify cached balances.

Each sweep works in chunks of customers, one transaction per chunk. It locks the chunk's balance rows
(in customer order) before touching their lots — the same order the API takes (balance, then lots) —
so a sweep and a refund never deadlock, and a sweep interrupted half-way leaves whole chunks done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from service.core import db
from service.outbox.service import insert_events

# Each chunk: the next due lots in (time, id) order after the previous chunk's last one (a keyset over
# the partial indexes, so no chunk rescans what earlier chunks left behind), and their customers.
_DUE_CHUNK = """
    SELECT array_agg(id) AS lots, array_agg(DISTINCT customer_id) AS customers,
           (array_agg(at ORDER BY at DESC, id DESC))[1] AS last_at,
           (array_agg(id ORDER BY at DESC, id DESC))[1] AS last_id
    FROM (
        SELECT id, customer_id, {column} AS at FROM points_lot
        WHERE {condition} AND {column} <= $1 AND ({column}, id) > ($3, $4)
        ORDER BY {column}, id LIMIT $2) due
"""
_DUE = {
    "mature": _DUE_CHUNK.format(column="available_at", condition="state = 'pending'"),
    "expire": _DUE_CHUNK.format(column="expires_at", condition="remaining > 0 AND expires_at IS NOT NULL"),
}
# Expiry notices: lots still holding points whose expiry is within the notice's horizon ($1), by the
# notice they have had so far (the levels are constants, so the partial index's predicate applies).
for _level, _previous in ((7, 0), (7, 30), (30, 0)):
    _DUE[f"notice {_level} after {_previous}"] = _DUE_CHUNK.format(
        column="expires_at",
        condition=f"remaining > 0 AND expires_at IS NOT NULL AND expiry_notice = {_previous}",
    )
_START = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))

_LOCK_BALANCES = """
    SELECT customer_id FROM customer_balance WHERE customer_id = ANY($1::uuid[])
    ORDER BY customer_id FOR UPDATE
"""

# With the balances locked no other transaction can change these lots, so conditions are re-checked
# on current rows and `before` is what the lots held. One event per customer ($2: now).
_MATURED = insert_events(
    """
    SELECT p.program_id, 'points.matured' AS topic,
           jsonb_build_object('customer', c.external_id, 'points', p.points, 'lots', p.lots) AS payload
    FROM per_customer p JOIN customer c ON c.id = p.customer_id
    WHERE p.points > 0
    """,
    at="$2",
)
_MATURE = f"""
    WITH moved AS (
        UPDATE points_lot SET state = 'available'
        WHERE customer_id = ANY($1::uuid[]) AND state = 'pending' AND available_at <= $2
        RETURNING program_id, customer_id, remaining
    ), per_customer AS (
        SELECT program_id, customer_id, sum(remaining) AS points, count(*) AS lots
        FROM moved GROUP BY program_id, customer_id
    ), balances AS (
        UPDATE customer_balance b
        SET available = b.available + p.points, pending = b.pending - p.points, updated_at = $2
        FROM per_customer p WHERE b.customer_id = p.customer_id
    ), events AS ({_MATURED})
    SELECT count(*) AS lots, coalesce(sum(remaining), 0) AS points FROM moved
"""

_EXPIRED = insert_events(
    """
    SELECT p.program_id, 'points.expired' AS topic,
           jsonb_build_object('customer', c.external_id, 'points', p.points, 'lots', p.lots) AS payload
    FROM per_customer p JOIN customer c ON c.id = p.customer_id
    """,
    at="$2",
)
_EXPIRE = f"""
    WITH before AS (
        SELECT id, remaining, state FROM points_lot
        WHERE customer_id = ANY($1::uuid[]) AND remaining > 0 AND expires_at <= $2
    ), gone AS (
        UPDATE points_lot l SET state = 'expired', remaining = 0
        FROM before WHERE l.id = before.id
        RETURNING l.id, l.program_id, l.customer_id, l.order_id, before.remaining, before.state, l.expires_at
    ), entries AS (
        INSERT INTO points_entry (program_id, customer_id, kind, points, debt_change, order_id, lot_id,
                                  reason, explanation, created_at)
        SELECT g.program_id, g.customer_id, 'expire', -g.remaining, 0, g.order_id, g.id, 'points expired',
               g.remaining || CASE WHEN g.remaining = 1 THEN ' point' ELSE ' points' END
                 || coalesce(' from order ' || o.external_id, '') || ' expired on '
                 || to_char(g.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
               $2
        FROM gone g LEFT JOIN orders o ON o.id = g.order_id
        RETURNING id, program_id, lot_id, points
    ), allocations AS (
        INSERT INTO points_allocation (program_id, entry_id, lot_id, points)
        SELECT program_id, id, lot_id, points FROM entries
    ), per_customer AS (
        SELECT program_id, customer_id, sum(remaining) AS points, count(*) AS lots,
               sum(remaining) FILTER (WHERE state = 'available') AS available,
               sum(remaining) FILTER (WHERE state = 'pending') AS pending
        FROM gone GROUP BY program_id, customer_id
    ), balances AS (
        UPDATE customer_balance b
        SET available = b.available - coalesce(p.available, 0), pending = b.pending - coalesce(p.pending, 0),
            updated_at = $2
        FROM per_customer p WHERE b.customer_id = p.customer_id
    ), events AS ({_EXPIRED})
    SELECT count(*) AS lots, coalesce(sum(remaining), 0) AS points FROM gone
"""


@dataclass(slots=True)
class SweepResult:
    lots: int = 0
    points: int = 0
    chunks: int = 0


async def _sweep(
    kind: str, statement: str, now: datetime, chunk_size: int, due_until: datetime | None = None
) -> SweepResult:
    result = SweepResult()
    after = _START
    while True:
        async with db.transaction() as conn:
            due = await conn.fetchrow(_DUE[kind], due_until or now, chunk_size, *after)
            if due is None or not due["lots"]:
                return result
            after = (due["last_at"], due["last_id"])
            await conn.execute(_LOCK_BALANCES, due["customers"])
            # Every due lot of the chunk's customers, not only the chunk's own lots: a customer whose
            # lots straddle two chunks still gets one event per sweep.
            extra = () if due_until is None else (due_until,)
            row = await conn.fetchrow(statement, due["customers"], now, *extra)
            assert row is not None
            result.lots += row["lots"]
            result.points += int(row["points"])
            result.chunks += 1


async def mature(now: datetime, chunk_size: int = 50_000) -> SweepResult:
    """Make pending lots whose return window has passed available (one event per customer)."""
    return await _sweep("mature", _MATURE, now, chunk_size)


async def expire(now: datetime, chunk_size: int = 50_000) -> SweepResult:
    """Zero the remainder of every lot past its expiry: one `expire` entry per lot, one event per customer."""
    return await _sweep("expire", _EXPIRE, now, chunk_size)


# $1 customers, $2 now, $3 the notice's horizon. A lot that is not (or no longer) available is left for a
# later sweep; one that expires before the horizon gets one notice per customer with the earliest date.
# `{level}` is filled in by .format() with the rest of _NOTICE.
_EXPIRING = insert_events(
    """
    SELECT p.program_id, 'points.expiring_soon' AS topic,
           jsonb_build_object('customer', c.external_id, 'points', p.points, 'lots', p.lots,
                              'expires_at', p.first_expiry, 'notice_days', {level}) AS payload
    FROM per_customer p JOIN customer c ON c.id = p.customer_id
    """,
    at="$2",
)
_NOTICE = (
    """
    WITH noticed AS (
        UPDATE points_lot SET expiry_notice = {level}
        WHERE customer_id = ANY($1::uuid[]) AND remaining > 0 AND state = 'available'
              AND expiry_notice IN ({previous})
              AND expires_at > $2 AND expires_at <= $3
        RETURNING program_id, customer_id, remaining, expires_at
    ), per_customer AS (
        SELECT program_id, customer_id, sum(remaining) AS points, count(*) AS lots,
               min(expires_at) AS first_expiry
        FROM noticed GROUP BY program_id, customer_id
    ), events AS ("""
    + _EXPIRING
    + """
    )
    SELECT count(*) AS lots, coalesce(sum(remaining), 0) AS points FROM noticed
"""
)


async def expiry_notices(now: datetime, chunk_size: int = 50_000) -> SweepResult:
    """`points.expiring_soon` 30 and 7 days ahead, once each per lot (one event per customer and notice).

    The 7-day notices go first, so a lot that is already within 7 days gets only that one.
    """
    result = SweepResult()
    for level, previous in ((7, 0), (7, 30), (30, 0)):
        part = await _sweep(
            f"notice {level} after {previous}",
            # Each pass takes all of a customer's lots due for this notice, whatever notice they had.
            _NOTICE.format(level=level, previous="0, 30" if level == 7 else "0"),
            now,
            chunk_size,
            due_until=now + timedelta(days=level),
        )
        result.lots += part.lots
        result.points += part.points
        result.chunks += part.chunks
    return result


# Each query is one pass over a table; each returns (problem, subject, cached, derived) for what differs.
_VERIFY_QUERIES = (
    """
    SELECT 'lot remaining differs from the sum of its allocations' AS problem, l.id::text AS subject,
           l.remaining AS cached, coalesce(a.points, 0) AS derived
    FROM points_lot l LEFT JOIN (
        SELECT lot_id, sum(points) AS points FROM points_allocation GROUP BY lot_id) a ON a.lot_id = l.id
    WHERE l.remaining <> coalesce(a.points, 0)
    """,
    """
    SELECT 'entry points differ from the sum of its allocations' AS problem, e.id::text AS subject,
           e.points AS cached, coalesce(a.points, 0) AS derived
    FROM points_entry e LEFT JOIN (
        SELECT entry_id, sum(points) AS points FROM points_allocation GROUP BY entry_id) a ON a.entry_id = e.id
    WHERE e.points <> coalesce(a.points, 0)
    """,
    """
    -- FULL JOIN: a customer with lots and no balance row (which reads as zeros) is a difference too.
    SELECT x.problem, coalesce(b.customer_id, l.customer_id)::text AS subject, x.cached, x.derived
    FROM customer_balance b
    FULL JOIN (
        SELECT customer_id,
               coalesce(sum(remaining) FILTER (WHERE state = 'available'), 0) AS available,
               coalesce(sum(remaining) FILTER (WHERE state = 'pending'), 0) AS pending
        FROM points_lot GROUP BY customer_id) l ON l.customer_id = b.customer_id
    CROSS JOIN LATERAL (VALUES
        ('cached available differs from its available lots', coalesce(b.available, 0), coalesce(l.available, 0)),
        ('cached pending differs from its pending lots', coalesce(b.pending, 0), coalesce(l.pending, 0))
    ) AS x(problem, cached, derived)
    WHERE x.cached <> x.derived
    """,
    """
    SELECT x.problem, coalesce(b.customer_id, e.customer_id)::text AS subject, x.cached, x.derived
    FROM customer_balance b
    FULL JOIN (
        SELECT customer_id, sum(points) AS points, sum(debt_change) AS debt
        FROM points_entry GROUP BY customer_id) e ON e.customer_id = b.customer_id
    CROSS JOIN LATERAL (VALUES
        ('cached points held differ from the sum of the entries',
         coalesce(b.available + b.pending, 0), coalesce(e.points, 0)),
        ('cached debt differs from the sum of the entries', coalesce(b.debt, 0), coalesce(e.debt, 0))
    ) AS x(problem, cached, derived)
    WHERE x.cached <> x.derived
    """,
)


@dataclass(slots=True)
class VerifyReport:
    problems: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(sample: int = 20) -> VerifyReport:
    """Recompute every cached figure from lots, allocations and entries; report differences."""
    report = VerifyReport()
    async with db.transaction() as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table in ("customer_balance", "points_lot", "points_entry", "points_allocation"):
            report.counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
        for query in _VERIFY_QUERIES:
            for row in await conn.fetch(query):
                found = report.problems.setdefault(row["problem"], [])
                if len(found) < sample:
                    found.append({k: row[k] for k in ("subject", "cached", "derived")})
    return report
