"""The Stripe integration's SQL: its connection, events, payments, refunds and promotion codes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection
from service.core.secrets import Row, SealedStore

# --- connection ------------------------------------------------------------------------------------


async def get_connection(conn: Connection, program_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM stripe_connection WHERE program_id = $1", program_id)
    return None if row is None else dict(row)


async def put_connection(
    conn: Connection, program_id: UUID, values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """Create or replace the connection (a new key keeps the state: last event, last error)."""
    columns = list(values)
    row = await conn.fetchrow(
        f"""
        INSERT INTO stripe_connection (program_id, {", ".join(columns)}, connected_at, updated_at)
        VALUES ($1, {", ".join(f"${i}" for i in range(2, 2 + len(columns)))}, ${2 + len(columns)}, ${2 + len(columns)})
        ON CONFLICT (program_id) DO UPDATE
        SET {", ".join(f"{c} = EXCLUDED.{c}" for c in columns)}, updated_at = EXCLUDED.updated_at
        RETURNING *
        """,
        program_id,
        *values.values(),
        now,
    )
    assert row is not None
    return dict(row)


async def delete_connection(conn: Connection, program_id: UUID) -> bool:
    return (
        await conn.fetchval("DELETE FROM stripe_connection WHERE program_id = $1 RETURNING true", program_id)
        is not None
    )


async def note_state(conn: Connection, program_id: UUID, now: datetime, error: str | None) -> None:
    """An event handled: its time, and the error if it failed (a success leaves the last error shown)."""
    await conn.execute(
        """
        UPDATE stripe_connection SET last_event_at = $2,
               last_error = coalesce($3, last_error), last_error_at = CASE WHEN $3 IS NULL THEN last_error_at ELSE $2 END
        WHERE program_id = $1
        """,
        program_id,
        now,
        error,
    )


async def lock_connections(conn: Connection, after: Any, limit: int, plaintext_only: bool) -> list[Row]:
    """For `encore secrets rotate` (core.secrets.reseal)."""
    rows = await conn.fetch(
        """
        SELECT program_id, secret_key, webhook_secret FROM stripe_connection
        WHERE ($1::uuid IS NULL OR program_id > $1)
          AND (NOT $3 OR secret_key NOT LIKE 'fernet:%' OR webhook_secret NOT LIKE 'fernet:%')
        ORDER BY program_id LIMIT $2 FOR UPDATE
        """,
        after,
        limit,
        plaintext_only,
    )
    return [(r["program_id"], (r["secret_key"], r["webhook_secret"])) for r in rows]


async def write_connections(conn: Connection, rows: list[Row]) -> None:
    await conn.executemany(
        "UPDATE stripe_connection SET secret_key = $2, webhook_secret = $3 WHERE program_id = $1",
        [(key, *values) for key, values in rows],
    )


# Sealed values for `encore secrets rotate`.
SEALED_SECRETS = SealedStore(
    "stripe connection", ("secret_key", "webhook_secret"), lock_connections, write_connections
)


# --- events ----------------------------------------------------------------------------------------

EVENT_FIELDS = """id, program_id, stripe_id, type, livemode, api_version, created, source, status, attempts,
    next_attempt_at, outcome, last_error, received_at, processed_at"""


async def insert_event(
    conn: Connection,
    program_id: UUID,
    *,
    stripe_id: str,
    type_: str,
    livemode: bool,
    api_version: str | None,
    created: datetime,
    payload: bytes,
    source: str,
    status: str,
    outcome: str | None,
    now: datetime,
) -> UUID | None:
    """Store an event once: None when the program has it already (a replay changes nothing)."""
    stored: UUID | None = await conn.fetchval(
        """
        INSERT INTO stripe_event (id, program_id, stripe_id, type, livemode, api_version, created, payload,
                                  source, status, outcome, next_attempt_at, received_at,
                                  processed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10::text, $11, $12, $12,
                CASE WHEN $10::text = 'ignored' THEN $12::timestamptz END)
        ON CONFLICT (program_id, stripe_id) DO NOTHING
        RETURNING id
        """,
        uuid4(),
        program_id,
        stripe_id,
        type_,
        livemode,
        api_version,
        created,
        payload.decode(),
        source,
        status,
        outcome,
        now,
    )
    return stored


async def event_by_stripe_id(conn: Connection, program_id: UUID, stripe_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {EVENT_FIELDS} FROM stripe_event WHERE program_id = $1 AND stripe_id = $2",
        program_id,
        stripe_id,
    )
    return None if row is None else dict(row)


async def claim_events(
    conn: Connection, now: datetime, limit: int, worker: str, lease: timedelta, ids: list[UUID] | None = None
) -> list[dict[str, Any]]:
    """Due events (or the events `ids`, when they are due), claimed for `lease`: their next attempt moves
    to the lease's end, so a killed worker's events fall due again by themselves."""
    rows = await conn.fetch(
        f"""
        UPDATE stripe_event e SET claimed_by = $3, claimed_until = $1 + $4::interval,
               next_attempt_at = $1 + $4::interval, attempts = e.attempts + 1
        FROM (SELECT id FROM stripe_event
              WHERE status IN ('received', 'waiting') AND next_attempt_at <= $1
                AND ($5::uuid[] IS NULL OR id = ANY($5))
              ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) due
        WHERE e.id = due.id
        RETURNING e.{EVENT_FIELDS.replace(", ", ", e.")}, e.payload
        """,
        now,
        limit,
        worker,
        lease,
        ids,
    )
    events = []
    for row in rows:
        event = dict(row)
        event["payload"] = msgspec.json.decode(event["payload"])
        events.append(event)
    events.sort(key=lambda e: (e["created"], e["received_at"]))  # a checkout before its refund
    return events


async def finish_event(
    conn: Connection,
    event_id: UUID,
    worker: str,
    *,
    status: str,
    outcome: str | None,
    error: str | None,
    next_attempt_at: datetime,
    now: datetime,
) -> bool:
    """Write an attempt's result, only if the claim is still this worker's."""
    return (
        await conn.fetchval(
            """
            UPDATE stripe_event SET status = $3::text, outcome = $4, last_error = $5, next_attempt_at = $6,
                   claimed_by = NULL, claimed_until = NULL,
                   processed_at = CASE WHEN $3::text IN ('processed', 'ignored', 'failed') THEN $7::timestamptz END
            WHERE id = $1 AND claimed_by = $2
            RETURNING true
            """,
            event_id,
            worker,
            status,
            outcome,
            error,
            next_attempt_at,
            now,
        )
        is not None
    )


async def list_events(
    conn: Connection,
    program_id: UUID,
    status: str | None,
    type_: str | None,
    position: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {EVENT_FIELDS} FROM stripe_event
        WHERE program_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR type = $3)
          AND ($4::timestamptz IS NULL OR (received_at, id) < ($4, $5))
        ORDER BY received_at DESC, id DESC LIMIT $6
        """,
        program_id,
        status,
        type_,
        None if position is None else position[0],
        None if position is None else position[1],
        limit,
    )
    return [dict(r) for r in rows]


async def prune_events(conn: Connection, cutoff: datetime) -> int:
    """Forget events finished before `cutoff` (processed or ignored; failed ones stay until retried). Stripe
    retries an event for three days: one pruned after that is never sent again."""
    deleted = await conn.fetchval(
        """WITH gone AS (DELETE FROM stripe_event WHERE status IN ('processed', 'ignored') AND processed_at < $1
                         RETURNING 1)
           SELECT count(*) FROM gone""",
        cutoff,
    )
    return int(deleted)


async def event_counts(conn: Connection, program_id: UUID) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT status, count(*) AS n FROM stripe_event
           WHERE program_id = $1 AND status IN ('waiting', 'failed') GROUP BY status""",
        program_id,
    )
    return {r["status"]: int(r["n"]) for r in rows}


async def get_event(conn: Connection, program_id: UUID, event_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {EVENT_FIELDS} FROM stripe_event WHERE program_id = $1 AND id = $2", program_id, event_id
    )
    return None if row is None else dict(row)


async def retry_event(
    conn: Connection, program_id: UUID, event_id: UUID, now: datetime
) -> dict[str, Any] | None:
    """A failed, waiting or ignored event due again now (attempts start afresh); None if it was processed
    or is being processed."""
    row = await conn.fetchrow(
        f"""
        UPDATE stripe_event SET status = 'received', next_attempt_at = $3, attempts = 0, processed_at = NULL
        WHERE program_id = $1 AND id = $2 AND status IN ('failed', 'waiting', 'ignored')
          AND (claimed_until IS NULL OR claimed_until < $3)
        RETURNING {EVENT_FIELDS}
        """,
        program_id,
        event_id,
        now,
    )
    return None if row is None else dict(row)


# --- payments and refunds --------------------------------------------------------------------------


async def record_payment(
    conn: Connection,
    program_id: UUID,
    payment_intent_id: str,
    session_id: str,
    order_external_id: str,
    currency: str,
    amount_total: int,
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO stripe_payment (program_id, payment_intent_id, session_id, order_external_id, currency,
                                    amount_total, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (program_id, payment_intent_id) DO NOTHING
        """,
        program_id,
        payment_intent_id,
        session_id,
        order_external_id,
        currency,
        amount_total,
        now,
    )


async def lock_payment(conn: Connection, program_id: UUID, payment_intent_id: str) -> dict[str, Any] | None:
    """The payment (locked until commit: its refunds are measured one at a time), with what Stripe
    refunded of it so far. Two statements: one that waited for the lock would read the sum from its
    snapshot taken before the wait (read committed), missing the refund the lock's holder committed."""
    row = await conn.fetchrow(
        "SELECT * FROM stripe_payment WHERE program_id = $1 AND payment_intent_id = $2 FOR UPDATE",
        program_id,
        payment_intent_id,
    )
    if row is None:
        return None
    refunded = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM stripe_refund WHERE program_id = $1 AND payment_intent_id = $2",
        program_id,
        payment_intent_id,
    )
    return {**dict(row), "refunded_amount": int(refunded)}


async def refund_seen(conn: Connection, program_id: UUID, refund_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM stripe_refund WHERE program_id = $1 AND refund_id = $2", program_id, refund_id
        )
    )


async def record_refund(
    conn: Connection,
    program_id: UUID,
    refund_id: str,
    payment_intent_id: str,
    amount: int,
    order_amount: int,
    now: datetime,
) -> bool:
    """False when this refund was recorded before."""
    return (
        await conn.fetchval(
            """
            INSERT INTO stripe_refund (program_id, refund_id, payment_intent_id, amount, order_amount, created_at)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (program_id, refund_id) DO NOTHING RETURNING true
            """,
            program_id,
            refund_id,
            payment_intent_id,
            amount,
            order_amount,
            now,
        )
        is not None
    )


# --- promotion codes -------------------------------------------------------------------------------


async def queue_codes(conn: Connection, rows: list[tuple[UUID, UUID]], now: datetime) -> None:
    """(redemption_id, program_id) to create in Stripe."""
    await conn.executemany(
        """
        INSERT INTO stripe_code (redemption_id, program_id, status, next_attempt_at, created_at, updated_at)
        VALUES ($1, $2, 'pending', $3, $3, $3) ON CONFLICT (redemption_id) DO NOTHING
        """,
        [(r, p, now) for r, p in rows],
    )


async def claim_codes(
    conn: Connection, now: datetime, limit: int, worker: str, lease: timedelta
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        UPDATE stripe_code s SET claimed_by = $3, claimed_until = $1 + $4::interval,
               next_attempt_at = $1 + $4::interval, attempts = s.attempts + 1
        FROM (SELECT redemption_id FROM stripe_code
              WHERE (status = 'pending' OR (status = 'synced' AND active AND NOT active_wanted))
                AND next_attempt_at <= $1
              ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
        WHERE s.redemption_id = due.redemption_id
        RETURNING s.*
        """,
        now,
        limit,
        worker,
        lease,
    )
    return [dict(r) for r in rows]


async def finish_code(
    conn: Connection, redemption_id: UUID, worker: str, values: dict[str, Any], now: datetime
) -> bool:
    """Write an attempt's result (`values`: the columns it changes), only if the claim is still ours."""
    columns = list(values)
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, 4))
    return (
        await conn.fetchval(
            f"""
            UPDATE stripe_code SET {sets}, claimed_by = NULL, claimed_until = NULL, updated_at = $3
            WHERE redemption_id = $1 AND claimed_by = $2 RETURNING true
            """,
            redemption_id,
            worker,
            now,
            *values.values(),
        )
        is not None
    )


async def deactivate_codes(conn: Connection, redemption_ids: list[UUID], now: datetime) -> None:
    """These codes were cancelled or expired: their promotion codes are to go inactive in Stripe."""
    await conn.execute(
        """
        UPDATE stripe_code SET active_wanted = false, next_attempt_at = least(next_attempt_at, $2), updated_at = $2
        WHERE redemption_id = ANY($1) AND active_wanted
        """,
        redemption_ids,
        now,
    )


async def codes_for_promotions(conn: Connection, program_id: UUID, promotion_ids: list[str]) -> list[UUID]:
    """The redemptions whose promotion codes these are (the others are not Encore's)."""
    rows = await conn.fetch(
        "SELECT redemption_id FROM stripe_code WHERE program_id = $1 AND promotion_code_id = ANY($2)",
        program_id,
        promotion_ids,
    )
    return [r["redemption_id"] for r in rows]


async def get_code(conn: Connection, redemption_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM stripe_code WHERE redemption_id = $1", redemption_id)
    return None if row is None else dict(row)
