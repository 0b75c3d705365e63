"""Ledger queries. Every function runs on the caller's connection (usually inside its transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection
from service.ledger.domain import Draw, Lot


@dataclass(slots=True)
class Balance:
    customer_id: UUID
    available: int
    pending: int
    debt: int
    lifetime_earned: int


async def lock_balance(conn: Connection, program_id: UUID, customer_id: UUID, now: datetime) -> Balance:
    """Create-or-lock the customer's balance row: the per-customer mutex every ledger change takes first.
    The ledger alone makes balance rows, here: a customer whose points never changed has none (zeros)."""
    row = await conn.fetchrow(
        """
        INSERT INTO customer_balance (customer_id, program_id, available, pending, debt, lifetime_earned,
                                      updated_at)
        VALUES ($1, $2, 0, 0, 0, 0, $3)
        ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id
        RETURNING customer_id, available, pending, debt, lifetime_earned
        """,
        customer_id,
        program_id,
        now,
    )
    assert row is not None
    return Balance(**dict(row))


def _lapsed(lot: str, now: str) -> str:
    """SQL: the lot still holds points that are past their date at `now` (domain.lapsed): gone for the
    customer, though the cached balance counts them until the expire sweep zeroes the lot."""
    return f"({lot}.remaining > 0 AND {lot}.expires_at <= {now})"


def _unlapsed(lot: str, now: str) -> str:
    return f"({lot}.expires_at IS NULL OR {lot}.expires_at > {now})"


def balance_select(customer_id: str, now: str) -> str:
    """A query of the customer's points at `now` (both SQL expressions): customer_id, available, pending,
    debt, lifetime_earned — the cached balance less what has lapsed and is not swept yet. No row when the
    customer has no balance row (their points never changed): read that as zeros. For another feature:
    `LEFT JOIN LATERAL (...) points ON true`."""
    return f"""
        SELECT b.customer_id, b.available - coalesce(x.available, 0) AS available,
               b.pending - coalesce(x.pending, 0) AS pending, b.debt, b.lifetime_earned
        FROM customer_balance b
        CROSS JOIN LATERAL (
            SELECT (sum(l.remaining) FILTER (WHERE l.state = 'available'))::bigint AS available,
                   (sum(l.remaining) FILTER (WHERE l.state = 'pending'))::bigint AS pending
            FROM points_lot l WHERE l.customer_id = b.customer_id AND {_lapsed("l", now)}
        ) x
        WHERE b.customer_id = {customer_id}
    """


def order_pending_until_select(order_id: str) -> str:
    """A query of when an order's points still pending become available (null: none pending)."""
    return f"""
        SELECT max(l.available_at) FROM points_lot l
        WHERE l.order_id = {order_id} AND l.state = 'pending' AND l.remaining > 0
    """


async def get_balance(conn: Connection, customer_id: UUID, now: datetime) -> Balance | None:
    row = await conn.fetchrow(balance_select("$1", "$2"), customer_id, now)
    return None if row is None else Balance(**dict(row))


async def update_balance(
    conn: Connection,
    customer_id: UUID,
    now: datetime,
    *,
    available: int = 0,
    pending: int = 0,
    debt: int = 0,
    lifetime: int = 0,
) -> None:
    """Add to the cached figures. The row exists: every caller (and insert_credit / insert_credits, which
    do the same in their statement) took lock_balance first in this transaction."""
    await conn.execute(
        """
        UPDATE customer_balance SET available = available + $2, pending = pending + $3, debt = debt + $4,
               lifetime_earned = lifetime_earned + $5, updated_at = $6
        WHERE customer_id = $1
        """,
        customer_id,
        available,
        pending,
        debt,
        lifetime,
        now,
    )


async def open_lots(conn: Connection, customer_id: UUID) -> list[Lot]:
    rows = await conn.fetch(
        """
        SELECT id, points, remaining, state, available_at, expires_at, created_at, order_id
        FROM points_lot WHERE customer_id = $1 AND remaining > 0
        """,
        customer_id,
    )
    return [Lot(**dict(r)) for r in rows]


async def forgivable_expired(conn: Connection, order_id: UUID) -> int:
    """Points of this order that expired and that no earlier refund of it has forgiven yet."""
    value = await conn.fetchval(
        """
        SELECT coalesce(sum(CASE WHEN kind = 'expire' THEN -points
                                 ELSE -coalesce((details->>'forgiven_expired')::bigint, 0) END), 0)
        FROM points_entry WHERE order_id = $1 AND kind IN ('expire', 'reverse')
        """,
        order_id,
    )
    return int(value)


@dataclass(slots=True)
class NewEntry:
    program_id: UUID
    customer_id: UUID
    kind: str
    points: int
    reason: str
    explanation: str
    created_at: datetime
    debt_change: int = 0
    order_id: UUID | None = None
    refund_id: UUID | None = None
    lot_id: UUID | None = None
    actor: str | None = None
    details: Any = None
    rule_id: UUID | None = None
    rule_version: int | None = None


_ENTRY_COLUMNS = (
    "program_id, customer_id, kind, points, debt_change, order_id, refund_id, lot_id, reason, explanation, "
    "actor, details, created_at, rule_id, rule_version"
)


def _entry_args(e: NewEntry) -> tuple[Any, ...]:
    details = None if e.details is None else msgspec.json.encode(e.details).decode()
    return (
        e.program_id,
        e.customer_id,
        e.kind,
        e.points,
        e.debt_change,
        e.order_id,
        e.refund_id,
        e.lot_id,
        e.reason,
        e.explanation,
        e.actor,
        details,
        e.created_at,
        e.rule_id,
        e.rule_version,
    )


@dataclass(frozen=True, slots=True)
class BalanceChange:
    available: int = 0
    pending: int = 0
    debt: int = 0
    lifetime: int = 0

    @classmethod
    def credited(cls, held: int, state: str, *, debt: int = 0, lifetime: int) -> BalanceChange:
        """Points now held in a lot of `state` (pending or available)."""
        return cls(
            available=held if state == "available" else 0,
            pending=held if state == "pending" else 0,
            debt=debt,
            lifetime=lifetime,
        )


async def insert_credit(
    conn: Connection,
    entry: NewEntry,
    lot_id: UUID,
    state: str,
    available_at: datetime,
    expires_at: datetime | None,
    balance: BalanceChange,
) -> int:
    """Entry + its lot + the allocation that fills it + the balance change, in one statement (one round
    trip on the hot path of every order). Returns the entry id."""
    entry_id: int = await conn.fetchval(
        f"""
        WITH lot AS (
            INSERT INTO points_lot (id, program_id, customer_id, order_id, points, remaining, state,
                                    available_at, expires_at, created_at)
            VALUES ($8, $1, $2, $6, $4, $4, $16, $17, $18, $13)
            RETURNING id
        ), entry AS (
            INSERT INTO points_entry ({_ENTRY_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15)
            RETURNING id
        ), allocation AS (
            INSERT INTO points_allocation (program_id, entry_id, lot_id, points)
            SELECT $1, entry.id, lot.id, $4 FROM entry, lot
        ), balance AS (
            UPDATE customer_balance SET available = available + $19, pending = pending + $20, debt = debt + $21,
                   lifetime_earned = lifetime_earned + $22, updated_at = $13
            WHERE customer_id = $2
        )
        SELECT id FROM entry
        """,
        *_entry_args(entry),
        state,
        available_at,
        expires_at,
        balance.available,
        balance.pending,
        balance.debt,
        balance.lifetime,
    )
    return entry_id


async def insert_credits(
    conn: Connection,
    entries: list[NewEntry],
    lot_id: UUID,
    state: str,
    available_at: datetime,
    expires_at: datetime | None,
    balance: BalanceChange,
) -> list[int]:
    """Several credits of one customer into one new lot (`lot_id`: an order's earnings, whichever rules
    gave them), each entry with its allocation, and the balance change: one statement. Returns the entry
    ids in the order of `entries`."""
    first = entries[0]
    details = [None if e.details is None else msgspec.json.encode(e.details).decode() for e in entries]
    total = sum(e.points for e in entries)
    rows = await conn.fetch(
        f"""
        WITH given AS (
            SELECT * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::uuid[], $8::int[],
                                 $9::text[]) WITH ORDINALITY
                AS g(points, kind, reason, explanation, rule_id, rule_version, details, ord)
        ), lot AS (
            INSERT INTO points_lot (id, program_id, customer_id, order_id, points, remaining, state,
                                    available_at, expires_at, created_at)
            VALUES ($10, $1, $2, $11, $18, $18, $12, $13, $14, $15)
        ), entry AS (
            -- In `ord` order, so the ids (a sequence) ascend in the order of `entries`.
            INSERT INTO points_entry ({_ENTRY_COLUMNS})
            SELECT $1, $2, kind, points, 0, $11, NULL, $10, reason, explanation, $16, details::jsonb, $15,
                   rule_id, rule_version
            FROM given ORDER BY ord
            RETURNING id, points
        ), allocation AS (
            INSERT INTO points_allocation (program_id, entry_id, lot_id, points)
            SELECT $1, id, $10, points FROM entry
        ), balance AS (
            UPDATE customer_balance SET available = available + $17, pending = pending + $19,
                   lifetime_earned = lifetime_earned + $18, updated_at = $15
            WHERE customer_id = $2
        )
        SELECT id FROM entry ORDER BY id
        """,
        first.program_id,
        first.customer_id,
        [e.points for e in entries],
        [e.kind for e in entries],
        [e.reason for e in entries],
        [e.explanation for e in entries],
        [e.rule_id for e in entries],
        [e.rule_version for e in entries],
        details,
        lot_id,
        first.order_id,
        state,
        available_at,
        expires_at,
        first.created_at,
        first.actor,
        balance.available,
        total,
        balance.pending,
    )
    return [row["id"] for row in rows]


async def insert_debit(conn: Connection, entry: NewEntry, draws: tuple[Draw, ...]) -> int:
    """Entry + one negative allocation per drawn lot + the lots' new remainders, in one statement."""
    return await insert_moves(conn, entry, [(d.lot_id, -d.points) for d in draws])


async def insert_moves(conn: Connection, entry: NewEntry, moves: list[tuple[UUID, int]]) -> int:
    """Entry + one allocation per (lot, signed points) + the lots' new remainders, in one statement: out of
    lots (negative, a debit) or back into them (positive, points a spend took given back)."""
    entry_id: int = await conn.fetchval(
        f"""
        WITH entry AS (
            INSERT INTO points_entry ({_ENTRY_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15)
            RETURNING id
        ), moves AS (
            SELECT * FROM unnest($16::uuid[], $17::bigint[]) AS m(lot_id, points)
        ), allocation AS (
            INSERT INTO points_allocation (program_id, entry_id, lot_id, points)
            SELECT $1, entry.id, moves.lot_id, moves.points FROM entry, moves
        ), lots AS (
            UPDATE points_lot l SET remaining = l.remaining + moves.points
            FROM moves WHERE l.id = moves.lot_id
        )
        SELECT id FROM entry
        """,
        *_entry_args(entry),
        [lot_id for lot_id, _ in moves],
        [points for _, points in moves],
    )
    return entry_id


async def drawn_by(conn: Connection, entry_id: int) -> tuple[list[tuple[UUID, int]], list[Lot]]:
    """What a spend entry drew, (lot id, points) per lot in the order drawn, and those lots as they are now."""
    rows = await conn.fetch(
        """
        SELECT l.id, l.points, l.remaining, l.state, l.available_at, l.expires_at, l.created_at, l.order_id,
               -a.points AS drawn
        FROM points_allocation a JOIN points_lot l ON l.id = a.lot_id
        WHERE a.entry_id = $1 AND a.points < 0 ORDER BY a.id
        """,
        entry_id,
    )
    found = [dict(r) for r in rows]
    drawn = [(r["id"], int(r.pop("drawn"))) for r in found]
    return drawn, [Lot(**r) for r in found]


async def insert_entry(conn: Connection, entry: NewEntry) -> int:
    """An entry that touches no lot (a clawback debt recorded with nothing left to draw)."""
    entry_id: int = await conn.fetchval(
        f"""
        INSERT INTO points_entry ({_ENTRY_COLUMNS})
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15)
        RETURNING id
        """,
        *_entry_args(entry),
    )
    return entry_id


ENTRY_FIELDS = """
    e.id, e.kind, e.points, e.debt_change, e.reason, e.explanation, e.actor, e.details, e.created_at,
    e.lot_id, e.rule_id, e.rule_version, o.external_id AS order_external_id, r.external_id AS refund_external_id
"""
ENTRY_JOINS = """
    LEFT JOIN orders o ON o.id = e.order_id
    LEFT JOIN refund r ON r.id = e.refund_id
"""


async def entries_by_ids(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {ENTRY_FIELDS} FROM points_entry e {ENTRY_JOINS} WHERE e.id = ANY($1::bigint[]) ORDER BY e.id",
        ids,
    )
    return [dict(r) for r in rows]


async def list_entries(
    conn: Connection, program_id: UUID, customer_id: UUID, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {ENTRY_FIELDS} FROM points_entry e {ENTRY_JOINS}
        WHERE e.customer_id = $1 AND e.program_id = $2 AND ($3::bigint IS NULL OR e.id < $3)
        ORDER BY e.id DESC LIMIT $4
        """,
        customer_id,
        program_id,
        before_id,
        limit,
    )
    return [dict(r) for r in rows]


def status_lateral(customer_id: str, recent: int, now: str) -> str:
    """The ledger's part of the customer status, as a LATERAL join on `customer_id` (a SQL expression), so
    the status view is one round trip: the points at `now` (a SQL expression; points past their expiry
    date are gone even before the sweep zeroes them), pending points by date, the next expiry, the last
    entries."""
    at = f"{now}::timestamptz"
    return f"""
    LEFT JOIN LATERAL (
        SELECT points.available, points.pending, points.debt, points.lifetime_earned,
          (SELECT coalesce(json_agg(json_build_object('points', p.points, 'available_at', p.available_at)
                                    ORDER BY p.available_at), '[]')
             FROM (SELECT available_at, sum(remaining) AS points FROM points_lot l
                   WHERE l.customer_id = points.customer_id AND l.state = 'pending' AND l.remaining > 0
                         AND {_unlapsed("l", at)}
                   GROUP BY available_at) p) AS pending_lots,
          (SELECT json_build_object('points', sum(remaining), 'expires_at', expires_at)
             FROM points_lot WHERE customer_id = points.customer_id AND remaining > 0 AND state = 'available'
                  AND expires_at > {at}
             GROUP BY expires_at ORDER BY expires_at LIMIT 1) AS next_expiry,
          (SELECT coalesce(json_agg(x ORDER BY x.id DESC), '[]') FROM (
             SELECT {ENTRY_FIELDS} FROM points_entry e {ENTRY_JOINS}
             WHERE e.customer_id = points.customer_id ORDER BY e.id DESC LIMIT {int(recent)}) x) AS recent_entries
        FROM ({balance_select(customer_id, at)}) points
    ) ledger ON true
    """


async def entry_ids_for_refund(conn: Connection, refund_id: UUID) -> list[int]:
    rows = await conn.fetch("SELECT id FROM points_entry WHERE refund_id = $1 ORDER BY id", refund_id)
    return [r["id"] for r in rows]


# $1 program, $2 the change's time, $3 kind, $4 the new period and $5 the shift (seconds: a day is 24 h,
# as in domain.lot_dates, whatever the session's time zone), $6 the entries' headline, $7 actor, $8 details.
# The dates follow domain.ExpiryChange.new_expiry; only lots whose date changes get a new one.
_RESCHEDULE_EXPIRY = f"""
    WITH planned AS (
        SELECT l.id, l.customer_id, l.remaining, l.expires_at AS before,
               CASE $3::text
                   WHEN 'switched_off' THEN NULL
                   WHEN 'lengthened' THEN l.expires_at + $5::float8 * interval '1 second'
                   ELSE least(coalesce(l.expires_at, 'infinity'),
                              greatest(l.available_at, $2) + $4::float8 * interval '1 second')
               END AS after
        FROM points_lot l
        WHERE l.program_id = $1 AND l.remaining > 0 AND l.state <> 'expired' AND {_unlapsed("l", "$2")}
    ), changed AS (
        UPDATE points_lot l SET expires_at = p.after, expiry_notice = 0  -- notices start again for the new date
        FROM planned p WHERE l.id = p.id AND p.after IS DISTINCT FROM p.before
        RETURNING l.id, l.program_id, l.customer_id, p.remaining, p.before, p.after
    ), per_customer AS (
        SELECT program_id, customer_id, sum(remaining) AS points, count(*) AS lots,
               min(after) AS first_after, max(after) AS last_after, (array_agg(id))[1] AS a_lot,
               jsonb_agg(jsonb_build_object('lot_id', id, 'points', remaining, 'expires_at_before', before,
                                            'expires_at', after) ORDER BY after, id) AS lot_changes
        FROM changed GROUP BY program_id, customer_id
    ), entries AS (
        -- Not a points change (0 points, no allocation): the customer's history says why the dates moved.
        INSERT INTO points_entry (program_id, customer_id, kind, points, debt_change, lot_id, reason, explanation,
                                  actor, details, created_at)
        SELECT program_id, customer_id, 'expiry_changed', 0, 0, CASE WHEN lots = 1 THEN a_lot END,
               'points expiry changed',
               $6 || ': ' || points || CASE WHEN points = 1 THEN ' point' ELSE ' points' END
                 || CASE WHEN first_after IS NULL THEN ' no longer expire'
                         WHEN first_after = last_after
                              THEN ' now expire on ' || to_char(first_after AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                         ELSE ' now expire between ' || to_char(first_after AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                              || ' and ' || to_char(last_after AT TIME ZONE 'UTC', 'YYYY-MM-DD') END,
               $7, $8::jsonb || jsonb_build_object('lots', lot_changes), $2
        FROM per_customer
    )
    SELECT count(*) AS customers, coalesce(sum(lots), 0) AS lots, coalesce(sum(points), 0) AS points,
           min(first_after) AS earliest, max(last_after) AS latest
    FROM per_customer
"""


@dataclass(frozen=True, slots=True)
class Rescheduled:
    customers: int
    lots: int
    points: int
    earliest: datetime | None
    latest: datetime | None


async def reschedule_expiry(
    conn: Connection,
    program_id: UUID,
    at: datetime,
    kind: str,
    after_days: int | None,
    shift_days: int | None,
    headline: str,
    actor: str | None,
    details: dict[str, Any],
) -> Rescheduled:
    """Give the program's held lots their new expiry dates, with one entry per customer saying so."""
    # The ledger's lock order (balances by customer, then lots), as the sweeps take it: no deadlock with
    # them or with a spend, and no lot changes under a customer's feet while a change of theirs runs.
    await conn.execute(
        f"""
        SELECT b.customer_id FROM customer_balance b
        WHERE b.customer_id IN (
            SELECT l.customer_id FROM points_lot l
            WHERE l.program_id = $1 AND l.remaining > 0 AND l.state <> 'expired' AND {_unlapsed("l", "$2")})
        ORDER BY b.customer_id FOR UPDATE OF b
        """,
        program_id,
        at,
    )
    row = await conn.fetchrow(
        _RESCHEDULE_EXPIRY,
        program_id,
        at,
        kind,
        None if after_days is None else float(after_days * 86_400),
        None if shift_days is None else float(shift_days * 86_400),
        headline,
        actor,
        msgspec.json.encode(details).decode(),
    )
    assert row is not None
    return Rescheduled(
        int(row["customers"]), int(row["lots"]), int(row["points"]), row["earliest"], row["latest"]
    )
