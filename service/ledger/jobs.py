"""Set-based ledger sweeps: mature pending lots, expire lots, verify cached balances.

Each sweep works in chunks of customers, one transaction per chunk. It locks the chunk's balance rows
(in customer order) before touching their lots — the same order the API takes (balance, then lots) —
so a sweep and a refund never deadlock, and a sweep interrupted half-way leaves whole chunks done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.core import db

_DUE_CUSTOMERS = {
    "mature": """
        SELECT array_agg(DISTINCT customer_id) FROM (
            SELECT customer_id FROM points_lot WHERE state = 'pending' AND available_at <= $1
            LIMIT $2) due
    """,
    "expire": """
        SELECT array_agg(DISTINCT customer_id) FROM (
            SELECT customer_id FROM points_lot
            WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1 AND state <> 'expired'
            LIMIT $2) due
    """,
}

_LOCK_BALANCES = """
    SELECT customer_id FROM customer_balance WHERE customer_id = ANY($1::uuid[])
    ORDER BY customer_id FOR UPDATE
"""

_MATURE = """
    WITH moved AS (
        UPDATE points_lot SET state = 'available'
        WHERE customer_id = ANY($1::uuid[]) AND state = 'pending' AND available_at <= $2
        RETURNING id, program_id, customer_id, order_id, remaining, available_at, expires_at
    ), per_customer AS (
        SELECT customer_id, sum(remaining) AS points FROM moved GROUP BY customer_id
    ), balances AS (
        UPDATE customer_balance b
        SET available = b.available + p.points, pending = b.pending - p.points, updated_at = $2
        FROM per_customer p WHERE b.customer_id = p.customer_id
    ), events AS (
        INSERT INTO outbox (id, program_id, topic, payload, created_at, available_at, attempts)
        SELECT m.event_id, m.program_id, 'points.matured',
               jsonb_build_object('id', m.event_id, 'type', 'points.matured', 'customer', c.external_id,
                                  'points', m.remaining, 'lot_id', m.id, 'order', o.external_id,
                                  'available_at', m.available_at, 'expires_at', m.expires_at),
               $2, $2, 0
        -- gen_random_uuid() in the select list runs per row (a LATERAL subquery would run once).
        FROM (SELECT gen_random_uuid() AS event_id, * FROM moved WHERE remaining > 0) m
        JOIN customer c ON c.id = m.customer_id
        LEFT JOIN orders o ON o.id = m.order_id
    )
    SELECT count(*) AS lots, coalesce(sum(remaining), 0) AS points FROM moved
"""

_EXPIRE = """
    WITH gone AS (
        UPDATE points_lot l SET state = 'expired', remaining = 0
        FROM points_lot before
        WHERE l.id = before.id AND l.customer_id = ANY($1::uuid[]) AND l.remaining > 0
          AND l.expires_at IS NOT NULL AND l.expires_at <= $2 AND l.state <> 'expired'
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
        RETURNING id, program_id, customer_id, lot_id, points
    ), allocations AS (
        INSERT INTO points_allocation (program_id, entry_id, lot_id, points)
        SELECT program_id, id, lot_id, points FROM entries
    ), per_customer AS (
        SELECT customer_id,
               sum(remaining) FILTER (WHERE state = 'available') AS available,
               sum(remaining) FILTER (WHERE state = 'pending') AS pending
        FROM gone GROUP BY customer_id
    ), balances AS (
        UPDATE customer_balance b
        SET available = b.available - coalesce(p.available, 0), pending = b.pending - coalesce(p.pending, 0),
            updated_at = $2
        FROM per_customer p WHERE b.customer_id = p.customer_id
    ), events AS (
        INSERT INTO outbox (id, program_id, topic, payload, created_at, available_at, attempts)
        SELECT e.event_id, e.program_id, 'points.expired',
               jsonb_build_object('id', e.event_id, 'type', 'points.expired', 'customer', c.external_id,
                                  'points', e.points, 'entry_id', e.id, 'lot_id', e.lot_id),
               $2, $2, 0
        FROM (SELECT gen_random_uuid() AS event_id, * FROM entries) e
        JOIN customer c ON c.id = e.customer_id
    )
    SELECT count(*) AS lots, coalesce(sum(remaining), 0) AS points FROM gone
"""


@dataclass(slots=True)
class SweepResult:
    lots: int = 0
    points: int = 0
    chunks: int = 0


async def _sweep(kind: str, statement: str, now: datetime, chunk_size: int) -> SweepResult:
    result = SweepResult()
    while True:
        async with db.transaction() as conn:
            customers = await conn.fetchval(_DUE_CUSTOMERS[kind], now, chunk_size)
            if not customers:
                return result
            await conn.execute(_LOCK_BALANCES, customers)
            row = await conn.fetchrow(statement, customers, now)
            assert row is not None
            result.lots += row["lots"]
            result.points += row["points"]
            result.chunks += 1


async def mature(now: datetime, chunk_size: int = 20_000) -> SweepResult:
    """Make pending lots whose return window has passed available."""
    return await _sweep("mature", _MATURE, now, chunk_size)


async def expire(now: datetime, chunk_size: int = 20_000) -> SweepResult:
    """Zero the remainder of every lot past its expiry, one `expire` entry per lot."""
    return await _sweep("expire", _EXPIRE, now, chunk_size)


_VERIFY_CHECKS: dict[str, str] = {
    "lot remaining differs from the sum of its allocations": """
        SELECT l.id::text AS subject, l.remaining AS cached, coalesce(sum(a.points), 0) AS derived
        FROM points_lot l LEFT JOIN points_allocation a ON a.lot_id = l.id
        GROUP BY l.id HAVING l.remaining <> coalesce(sum(a.points), 0)
    """,
    "entry points differ from the sum of its allocations": """
        SELECT e.id::text AS subject, e.points AS cached, coalesce(sum(a.points), 0) AS derived
        FROM points_entry e LEFT JOIN points_allocation a ON a.entry_id = e.id
        GROUP BY e.id HAVING e.points <> coalesce(sum(a.points), 0)
    """,
    "cached available differs from its available lots": """
        SELECT b.customer_id::text AS subject, b.available AS cached, coalesce(l.points, 0) AS derived
        FROM customer_balance b LEFT JOIN (
            SELECT customer_id, sum(remaining) AS points FROM points_lot WHERE state = 'available'
            GROUP BY customer_id) l ON l.customer_id = b.customer_id
        WHERE b.available <> coalesce(l.points, 0)
    """,
    "cached pending differs from its pending lots": """
        SELECT b.customer_id::text AS subject, b.pending AS cached, coalesce(l.points, 0) AS derived
        FROM customer_balance b LEFT JOIN (
            SELECT customer_id, sum(remaining) AS points FROM points_lot WHERE state = 'pending'
            GROUP BY customer_id) l ON l.customer_id = b.customer_id
        WHERE b.pending <> coalesce(l.points, 0)
    """,
    "cached points held differ from the sum of the entries": """
        SELECT b.customer_id::text AS subject, b.available + b.pending AS cached, coalesce(e.points, 0) AS derived
        FROM customer_balance b LEFT JOIN (
            SELECT customer_id, sum(points) AS points FROM points_entry GROUP BY customer_id
        ) e ON e.customer_id = b.customer_id
        WHERE b.available + b.pending <> coalesce(e.points, 0)
    """,
    "cached debt differs from the sum of the entries": """
        SELECT b.customer_id::text AS subject, b.debt AS cached, coalesce(e.debt, 0) AS derived
        FROM customer_balance b LEFT JOIN (
            SELECT customer_id, sum(debt_change) AS debt FROM points_entry GROUP BY customer_id
        ) e ON e.customer_id = b.customer_id
        WHERE b.debt <> coalesce(e.debt, 0)
    """,
}


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
        for label, query in _VERIFY_CHECKS.items():
            rows = await conn.fetch(f"{query} LIMIT {int(sample)}")
            if rows:
                report.problems[label] = [dict(r) for r in rows]
    return report
