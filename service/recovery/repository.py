"""Recovery's own SQL: settings, recoveries and their budget sums, cases and their timelines."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection


async def settings(conn: Connection, program_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM recovery_settings WHERE program_id = $1", program_id)
    return (
        None
        if row is None
        else {**dict(row), "tier_month_values": msgspec.json.decode(row["tier_month_values"])}
    )


async def put_settings(
    conn: Connection,
    program_id: UUID,
    monthly_budget: int,
    agent_monthly_budget: int | None,
    tier_month_values: dict[str, int],
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO recovery_settings AS s (program_id, monthly_budget, agent_monthly_budget, tier_month_values,
                                            updated_at)
        VALUES ($1, $2, $3, $4::jsonb, $5)
        ON CONFLICT (program_id) DO UPDATE SET monthly_budget = EXCLUDED.monthly_budget,
            agent_monthly_budget = EXCLUDED.agent_monthly_budget, tier_month_values = EXCLUDED.tier_month_values,
            updated_at = EXCLUDED.updated_at
        """,
        program_id,
        monthly_budget,
        agent_monthly_budget,
        msgspec.json.encode(tier_month_values).decode(),
        now,
    )


async def lock_budget(conn: Connection, program_id: UUID, month: str, agent_key_id: UUID) -> dict[str, Any]:
    """The program's settings row locked (every recovery of the program waits here, so the sums read after
    it see every recovery committed before) and what the month used, in all and by this agent. Two
    statements: one that waited for the lock would still read the snapshot it started with. No row yet:
    the budget is 0, so only what costs nothing passes and there is nothing to overspend."""
    row = await conn.fetchrow(
        "SELECT monthly_budget, agent_monthly_budget FROM recovery_settings WHERE program_id = $1 FOR UPDATE",
        program_id,
    )
    used = await used_in(conn, program_id, month, agent_key_id)
    return {
        "monthly_budget": row["monthly_budget"] if row else 0,
        "agent_monthly_budget": row["agent_monthly_budget"] if row else None,
        **used,
    }


async def used_in(conn: Connection, program_id: UUID, month: str, agent_key_id: UUID) -> dict[str, int]:
    used = await conn.fetchrow(
        """
        SELECT coalesce(sum(cost_amount), 0) AS used,
               coalesce(sum(cost_amount) FILTER (WHERE agent_key_id = $3), 0) AS agent_used
        FROM recovery WHERE program_id = $1 AND budget_period = $2
        """,
        program_id,
        month,
        agent_key_id,
    )
    assert used is not None
    return {"used": int(used["used"]), "agent_used": int(used["agent_used"])}


async def month_by_agent(conn: Connection, program_id: UUID, month: str) -> list[dict[str, Any]]:
    """Per key that spent in the month: its recoveries and what they cost."""
    rows = await conn.fetch(
        """
        SELECT agent_key_id, max(agent_name) AS agent_name, count(*) AS recoveries,
               coalesce(sum(cost_amount), 0) AS used
        FROM recovery WHERE program_id = $1 AND budget_period = $2
        GROUP BY agent_key_id
        """,
        program_id,
        month,
    )
    return [dict(r) for r in rows]


async def insert_recovery(conn: Connection, values: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO recovery (id, program_id, customer_id, case_id, order_id, complaint_event_id, agent_key_id,
                              agent_name, reason, action, given, explanation, cost_amount, currency,
                              budget_period, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16)
        """,
        values["id"],
        values["program_id"],
        values["customer_id"],
        values["case_id"],
        values["order_id"],
        values["complaint_event_id"],
        values["agent_key_id"],
        values["agent_name"],
        values["reason"],
        values["action"],
        msgspec.json.encode(values["given"]).decode(),
        values["explanation"],
        values["cost_amount"],
        values["currency"],
        values["budget_period"],
        values["created_at"],
    )


# --- cases ------------------------------------------------------------------------------------------------

CASE_FIELDS = """k.id, k.status, k.source, k.source_key, k.summary, k.order_id, k.agent_key_id, k.agent_name,
    k.opened_at, k.first_action_at, k.closed_at, k.resolution, k.created_at, k.customer_id, k.reopened_count,
    c.external_id AS customer_external_id, o.external_id AS order_external_id,
    (SELECT count(*) FROM recovery r WHERE r.case_id = k.id) AS recoveries,
    (SELECT coalesce(sum(r.cost_amount), 0) FROM recovery r WHERE r.case_id = k.id) AS recovery_cost"""
CASE_FROM = "service_case k JOIN customer c ON c.id = k.customer_id LEFT JOIN orders o ON o.id = k.order_id"


async def insert_case(conn: Connection, values: dict[str, Any]) -> bool:
    """A new case; False when its source (a complaint, a feedback) opened one before."""
    inserted = await conn.fetchval(
        """
        INSERT INTO service_case (id, program_id, customer_id, status, source, source_key, summary, order_id,
                                  agent_key_id, agent_name, opened_at, first_action_at, created_at)
        VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT ON CONSTRAINT service_case_once DO NOTHING
        RETURNING true
        """,
        values["id"],
        values["program_id"],
        values["customer_id"],
        values["source"],
        values["source_key"],
        values["summary"],
        values["order_id"],
        values["agent_key_id"],
        values["agent_name"],
        values["opened_at"],
        values["first_action_at"],
        values["created_at"],
    )
    return bool(inserted)


async def get_case(
    conn: Connection, program_id: UUID, case_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    if lock:  # a statement of its own: the read after it sees the row as its last holder left it
        await conn.execute(
            "SELECT 1 FROM service_case WHERE id = $1 AND program_id = $2 FOR UPDATE", case_id, program_id
        )
    row = await conn.fetchrow(
        f"SELECT {CASE_FIELDS} FROM {CASE_FROM} WHERE k.id = $1 AND k.program_id = $2", case_id, program_id
    )
    return None if row is None else dict(row)


async def case_by_source(conn: Connection, program_id: UUID, source_key: str) -> UUID | None:
    case_id: UUID | None = await conn.fetchval(
        "SELECT id FROM service_case WHERE program_id = $1 AND source_key = $2", program_id, source_key
    )
    return case_id


async def list_cases(
    conn: Connection,
    program_id: UUID,
    *,
    status: str | None,
    agent: UUID | None,
    unassigned: bool,
    customer: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {CASE_FIELDS} FROM {CASE_FROM}
        WHERE k.program_id = $1 AND ($2::text IS NULL OR k.status = $2)
          AND ($3::uuid IS NULL OR k.agent_key_id = $3) AND (NOT $4::boolean OR k.agent_key_id IS NULL)
          AND ($5::text IS NULL OR c.external_id = $5)
          AND ($6::timestamptz IS NULL OR (k.opened_at, k.id) < ($6::timestamptz, $7::uuid))
        ORDER BY k.opened_at DESC, k.id DESC
        LIMIT $8
        """,
        program_id,
        status,
        agent,
        unassigned,
        customer,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [dict(r) for r in rows]


async def add_entry(
    conn: Connection,
    program_id: UUID,
    case_id: UUID,
    kind: str,
    text: str,
    at: datetime,
    *,
    by: tuple[UUID, str] | None,
    recovery_id: UUID | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO case_entry (program_id, case_id, kind, text, recovery_id, by_key_id, by_name, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        program_id,
        case_id,
        kind,
        text,
        recovery_id,
        by[0] if by else None,
        by[1] if by else None,
        at,
    )


async def acted(
    conn: Connection, program_id: UUID, case_id: UUID, by: tuple[UUID, str], at: datetime
) -> None:
    """A person acted on the case: its first action (if it had none) and its agent (if it had none)."""
    await conn.execute(
        """
        UPDATE service_case SET first_action_at = coalesce(first_action_at, $2),
            agent_name = CASE WHEN agent_key_id IS NULL THEN $4 ELSE agent_name END,
            agent_key_id = coalesce(agent_key_id, $3)
        WHERE id = $1 AND program_id = $5
        """,
        case_id,
        at,
        by[0],
        by[1],
        program_id,
    )


async def close_case(
    conn: Connection, program_id: UUID, case_id: UUID, resolution: str, at: datetime
) -> None:
    await conn.execute(
        """
        UPDATE service_case SET status = 'closed', closed_at = $2, resolution = $3
        WHERE id = $1 AND program_id = $4
        """,
        case_id,
        at,
        resolution,
        program_id,
    )


async def reopen_case(conn: Connection, program_id: UUID, case_id: UUID) -> None:
    await conn.execute(
        """
        UPDATE service_case SET status = 'open', closed_at = NULL, resolution = NULL,
            reopened_count = reopened_count + 1
        WHERE id = $1 AND program_id = $2
        """,
        case_id,
        program_id,
    )


async def entries_of(conn: Connection, program_id: UUID, case_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, kind, text, recovery_id, by_key_id, by_name, at FROM case_entry
        WHERE case_id = $1 AND program_id = $2 ORDER BY id
        """,
        case_id,
        program_id,
    )
    return [dict(r) for r in rows]


def open_cases_lateral(customer_id: str) -> str:
    """SQL for LATERAL on the customer row: `open_cases`, the customer's open cases oldest first (JSON),
    each with its latest note or recovery."""
    return f"""
    LEFT JOIN LATERAL (
        SELECT json_agg(json_build_object(
                   'id', k.id, 'source', k.source, 'summary', k.summary, 'opened_at', k.opened_at,
                   'first_action_at', k.first_action_at, 'agent_key_id', k.agent_key_id,
                   'agent_name', k.agent_name,
                   'last_entry', (SELECT e.text FROM case_entry e
                                  WHERE e.case_id = k.id AND e.program_id = k.program_id AND e.kind <> 'opened'
                                  ORDER BY e.id DESC LIMIT 1))
                   ORDER BY k.opened_at, k.id) AS open_cases
        FROM service_case k WHERE k.customer_id = {customer_id} AND k.status = 'open'
    ) open_cases ON true"""
