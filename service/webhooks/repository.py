"""Queries for webhook endpoints and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from service.core.db import Connection
from service.core.secrets import PREFIX, Row, SealedStore

ENDPOINT_COLUMNS = """id, url, event_types, description, enabled, disabled_reason, secret, previous_secret,
    previous_secret_until, failing_since, last_success_at, last_failure_at, created_at, updated_at"""
DELIVERY_COLUMNS = """id, endpoint_id, event_id, topic, status, attempts, next_attempt_at, claimed_until,
    last_attempt_at, last_status_code, last_latency_ms, last_error, created_at, finished_at"""


async def insert_endpoint(
    conn: Connection,
    program_id: UUID,
    endpoint_id: UUID,
    url: str,
    event_types: list[str],
    description: str,
    enabled: bool,
    secret: str,
    now: datetime,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO webhook_endpoint (id, program_id, url, event_types, description, enabled, disabled_reason,
                                      secret, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 THEN NULL ELSE 'disabled by an admin' END, $7, $8, $8)
        RETURNING {ENDPOINT_COLUMNS}
        """,
        endpoint_id,
        program_id,
        url,
        event_types,
        description,
        enabled,
        secret,
        now,
    )
    assert row is not None
    return dict(row)


async def get_endpoint(
    conn: Connection, program_id: UUID, endpoint_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE program_id = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        program_id,
        endpoint_id,
    )
    return None if row is None else dict(row)


async def list_endpoints(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE program_id = $1 ORDER BY created_at, id",
        program_id,
    )
    return [dict(r) for r in rows]


async def update_endpoint(conn: Connection, endpoint_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    names = list(changes)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    row = await conn.fetchrow(
        f"UPDATE webhook_endpoint SET {assignments} WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}",
        endpoint_id,
        *(changes[name] for name in names),
    )
    assert row is not None
    return dict(row)


async def delete_endpoint(conn: Connection, endpoint_id: UUID) -> None:
    await conn.execute("DELETE FROM webhook_endpoint WHERE id = $1", endpoint_id)


async def pause_deliveries(conn: Connection, endpoint_id: UUID) -> int:
    """A disabled endpoint's pending deliveries wait (paused) instead of being claimed and skipped."""
    result: str = await conn.execute(
        "UPDATE webhook_delivery SET status = 'paused' WHERE endpoint_id = $1 AND status = 'pending'",
        endpoint_id,
    )
    return int(result.split()[-1])


async def resume_deliveries(conn: Connection, endpoint_id: UUID, now: datetime) -> int:
    """Re-enabled: paused deliveries are due now, with a fresh retry window."""
    result: str = await conn.execute(
        """
        UPDATE webhook_delivery SET status = 'pending', next_attempt_at = $2, window_started_at = $2,
               claimed_by = NULL, claimed_until = NULL
        WHERE endpoint_id = $1 AND status = 'paused'
        """,
        endpoint_id,
        now,
    )
    return int(result.split()[-1])


async def list_deliveries(
    conn: Connection, endpoint_id: UUID, before_id: int | None, limit: int, status: str | None
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {DELIVERY_COLUMNS} FROM webhook_delivery
        WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR id < $2) AND ($4::text IS NULL OR status = $4)
        ORDER BY id DESC LIMIT $3
        """,
        endpoint_id,
        before_id,
        limit,
        status,
    )
    return [dict(r) for r in rows]


async def get_delivery(
    conn: Connection, endpoint_id: UUID, delivery_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_delivery WHERE endpoint_id = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        endpoint_id,
        delivery_id,
    )
    return None if row is None else dict(row)


async def reschedule_delivery(conn: Connection, delivery_id: int, now: datetime) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        UPDATE webhook_delivery SET status = 'pending', next_attempt_at = $2, window_started_at = $2,
               claimed_by = NULL, claimed_until = NULL, finished_at = NULL
        WHERE id = $1 RETURNING {DELIVERY_COLUMNS}
        """,
        delivery_id,
        now,
    )
    assert row is not None
    return dict(row)


async def insert_delivery(
    conn: Connection, program_id: UUID, endpoint_id: UUID, event_id: UUID, topic: str, now: datetime
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO webhook_delivery (program_id, endpoint_id, event_id, topic, next_attempt_at,
                                      window_started_at, created_at)
        VALUES ($1, $2, $3, $4, $5, $5, $5) RETURNING {DELIVERY_COLUMNS}
        """,
        program_id,
        endpoint_id,
        event_id,
        topic,
        now,
    )
    assert row is not None
    return dict(row)


async def lock_secrets(conn: Connection, after: UUID | None, limit: int, plaintext_only: bool) -> list[Row]:
    """Endpoints' stored secrets in id order, locked (for `secrets.reseal`); `plaintext_only`: the
    endpoints with a secret written before secrets were sealed."""
    rows = await conn.fetch(
        """
        SELECT id, secret, previous_secret FROM webhook_endpoint
        WHERE ($1::uuid IS NULL OR id > $1)
          AND (NOT $3 OR NOT starts_with(secret, $4) OR NOT starts_with(previous_secret, $4))
        ORDER BY id LIMIT $2
        FOR UPDATE
        """,
        after,
        limit,
        plaintext_only,
        PREFIX,
    )
    return [(r["id"], (r["secret"], r["previous_secret"])) for r in rows]


async def write_secrets(conn: Connection, rows: list[Row]) -> None:
    """The same secrets sealed anew: not a change of the endpoint (updated_at stays)."""
    await conn.execute(
        """
        UPDATE webhook_endpoint e SET secret = r.secret, previous_secret = r.previous_secret
        FROM unnest($1::uuid[], $2::text[], $3::text[]) AS r(id, secret, previous_secret)
        WHERE e.id = r.id
        """,
        [key for key, _ in rows],
        [values[0] for _, values in rows],
        [values[1] for _, values in rows],
    )


SEALED_SECRETS = SealedStore("webhook endpoint", ("secret", "previous_secret"), lock_secrets, write_secrets)
