from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection

RULE_FIELDS = """r.id, r.status, r.current_version, r.is_default, r.published, r.budget_spent, r.exhausted_at,
    r.problem_count, r.last_problem, r.last_problem_at, r.created_at, r.updated_at, v.definition"""
RULE_FROM = "rule r JOIN rule_version v ON v.rule_id = r.id AND v.version = r.current_version"


def _rule(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["definition"] = msgspec.json.decode(data["definition"])
    return data


async def insert_rule(
    conn: Connection,
    *,
    rule_id: UUID,
    program_id: UUID,
    status: str,
    definition: dict[str, Any],
    is_default: bool,
    now: datetime,
) -> bool:
    """Insert a rule with its version 1; False when it is a second default rule (the first one won)."""
    inserted = await conn.fetchval(
        """
        WITH r AS (
            INSERT INTO rule (id, program_id, status, current_version, is_default, published, created_at, updated_at)
            VALUES ($1, $2, $3::text, 1, $4, $3::text = 'active', $6, $6)
            ON CONFLICT (program_id) WHERE is_default DO NOTHING
            RETURNING id
        ), v AS (
            INSERT INTO rule_version (rule_id, version, definition, created_at)
            SELECT id, 1, $5::jsonb, $6 FROM r
        )
        SELECT id FROM r
        """,
        rule_id,
        program_id,
        status,
        is_default,
        msgspec.json.encode(definition).decode(),
        now,
    )
    return inserted is not None


async def get_rule(
    conn: Connection, program_id: UUID, rule_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {RULE_FIELDS} FROM {RULE_FROM} WHERE r.id = $1 AND r.program_id = $2 {'FOR UPDATE OF r' if lock else ''}",
        rule_id,
        program_id,
    )
    return None if row is None else _rule(row)


async def list_rules(conn: Connection, program_id: UUID, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {RULE_FIELDS} FROM {RULE_FROM}
        WHERE r.program_id = $1 AND ($2::text IS NULL OR r.status = $2)
        ORDER BY r.created_at, r.id
        """,
        program_id,
        status,
    )
    return [_rule(r) for r in rows]


async def active_rules(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {RULE_FIELDS} FROM {RULE_FROM}
        WHERE r.program_id = $1 AND r.status = 'active' AND r.exhausted_at IS NULL
        ORDER BY r.created_at, r.id
        """,
        program_id,
    )
    return [_rule(r) for r in rows]


async def has_default(conn: Connection, program_id: UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM rule WHERE program_id = $1 AND is_default)", program_id
        )
    )


async def update_rule(
    conn: Connection,
    rule_id: UUID,
    *,
    status: str,
    definition: dict[str, Any],
    new_version: bool,
    budget_points: int | None,
    now: datetime,
) -> None:
    """Set the status; write the definition as the next version, or over the current one (a draft).
    A changed budget restarts a rule it had stopped, or stops one it no longer covers."""
    await conn.execute(
        """
        WITH r AS (
            UPDATE rule SET status = $2::text,
                   current_version = current_version + CASE WHEN $4 THEN 1 ELSE 0 END,
                   published = published OR $2::text = 'active',
                   exhausted_at = CASE WHEN $5::bigint IS NOT NULL AND budget_spent >= $5
                                       THEN coalesce(exhausted_at, $6) END,
                   updated_at = $6
            WHERE id = $1 RETURNING current_version
        ), v AS (
            INSERT INTO rule_version (rule_id, version, definition, created_at)
            SELECT $1, r.current_version, $3::jsonb, $6 FROM r
            ON CONFLICT (rule_id, version) DO UPDATE SET definition = EXCLUDED.definition,
                                                         created_at = EXCLUDED.created_at
        )
        SELECT 1
        """,
        rule_id,
        status,
        msgspec.json.encode(definition).decode(),
        new_version,
        budget_points,
        now,
    )


async def delete_rule(conn: Connection, rule_id: UUID) -> None:
    await conn.execute("DELETE FROM rule WHERE id = $1", rule_id)


async def versions(conn: Connection, rule_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT version, definition, created_at FROM rule_version WHERE rule_id = $1 ORDER BY version DESC",
        rule_id,
    )
    return [{**dict(r), "definition": msgspec.json.decode(r["definition"])} for r in rows]


async def limits(
    conn: Connection,
    customer_id: UUID | None,
    capped: list[UUID],
    periods: list[str],
    budgeted: list[UUID],
    *,
    lock: bool,
    ledger_lock_sql: str,
) -> tuple[dict[tuple[UUID, str], int], dict[UUID, int]]:
    """What the customer has had of capped rules in these periods, and the budget spent of budgeted rules;
    with `lock`, under the customer's ledger lock and the budgeted rules' row locks (in id order, so two
    orders never wait on each other in a circle) until commit. One round trip."""
    lock_clause = "FOR UPDATE" if lock else ""
    ledger_lock = ledger_lock_sql if lock and customer_id is not None else "SELECT NULL::uuid WHERE false"
    rows = await conn.fetch(
        f"""
        WITH ledger AS ({ledger_lock}), budgets AS (
            SELECT id, budget_spent FROM rule WHERE id = ANY($4::uuid[]) ORDER BY id {lock_clause}
        )
        SELECT rule_id, period, points FROM rule_usage
        WHERE customer_id = $1 AND rule_id = ANY($2::uuid[]) AND period = ANY($3::text[])
        UNION ALL SELECT id, NULL, budget_spent FROM budgets
        UNION ALL SELECT NULL, NULL, count(*) FROM ledger
        """,
        customer_id,
        capped,
        periods,
        budgeted,
    )
    used = {(r["rule_id"], r["period"]): r["points"] for r in rows if r["period"] is not None}
    spent = {r["rule_id"]: r["points"] for r in rows if r["period"] is None and r["rule_id"] is not None}
    return used, spent


async def record_use(
    conn: Connection,
    customer_id: UUID,
    usage: list[tuple[UUID, str, int]],
    budgets: list[tuple[UUID, int, int]],
    now: datetime,
) -> list[UUID]:
    """Add what awards used of caps (rule, period, points) and budgets (rule, points, budget) in one
    statement; returns the rules whose budget this spent to the end (they stop)."""
    rows = await conn.fetch(
        """
        WITH usage AS (
            INSERT INTO rule_usage (rule_id, customer_id, period, points)
            SELECT u.rule_id, $1, u.period, u.points
            FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS u(rule_id, period, points)
            ON CONFLICT (customer_id, rule_id, period) DO UPDATE SET points = rule_usage.points + EXCLUDED.points
        )
        UPDATE rule r SET budget_spent = r.budget_spent + b.points,
               exhausted_at = CASE WHEN r.budget_spent + b.points >= b.budget THEN $8::timestamptz END
        FROM unnest($5::uuid[], $6::bigint[], $7::bigint[]) AS b(rule_id, points, budget)
        WHERE r.id = b.rule_id
        RETURNING r.id, r.exhausted_at IS NOT NULL AS exhausted
        """,
        customer_id,
        [u[0] for u in usage],
        [u[1] for u in usage],
        [u[2] for u in usage],
        [b[0] for b in budgets],
        [b[1] for b in budgets],
        [b[2] for b in budgets],
        now,
    )
    return [r["id"] for r in rows if r["exhausted"]]


async def record_problems(conn: Connection, problems: list[tuple[UUID, str]], now: datetime) -> None:
    await conn.execute(
        """
        UPDATE rule r SET problem_count = problem_count + 1, last_problem = p.error, last_problem_at = $3
        FROM unnest($1::uuid[], $2::text[]) AS p(rule_id, error) WHERE r.id = p.rule_id
        """,
        [p[0] for p in problems],
        [p[1] for p in problems],
        now,
    )


async def insert_event(
    conn: Connection,
    *,
    event_id: UUID,
    program_id: UUID,
    customer_id: UUID,
    type_: str,
    properties: dict[str, Any],
    occurred_at: datetime,
    points: int,
    result: str,
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO customer_event (id, program_id, customer_id, type, properties, occurred_at, points, result,
                                    created_at)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)
        """,
        event_id,
        program_id,
        customer_id,
        type_,
        msgspec.json.encode(properties).decode(),
        occurred_at,
        points,
        result,
        now,
    )


async def events_between(
    conn: Connection, program_id: UUID, type_: str, start: datetime, end: datetime
) -> list[Any]:
    """The program's events of one type that occurred in [start, end), oldest first: id, customer_id,
    occurred_at (for the gift simulation)."""
    return await conn.fetch(
        """
        SELECT id, customer_id, occurred_at FROM customer_event
        WHERE program_id = $1 AND type = $2 AND occurred_at >= $3 AND occurred_at < $4
        ORDER BY occurred_at, id
        """,
        program_id,
        type_,
        start,
        end,
    )


async def get_event(conn: Connection, program_id: UUID, event_id: UUID) -> dict[str, Any] | None:
    """One recorded event: its customer, type and time."""
    row = await conn.fetchrow(
        "SELECT id, customer_id, type, occurred_at FROM customer_event WHERE id = $1 AND program_id = $2",
        event_id,
        program_id,
    )
    return None if row is None else dict(row)
