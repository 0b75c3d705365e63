"""Feedback's own SQL: surveys and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.core.db import Connection
from service.feedback import defaults, domain

SURVEY_FIELDS = """id, key, name, kind, questions, dimensions, send_after, delay_days, alarm_below, ask_promoters,
    follow_up, status, created_at, updated_at"""


def _survey(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["questions"] = msgspec.json.decode(data["questions"])
    data["dimensions"] = msgspec.json.decode(data["dimensions"])
    return data


async def insert_survey(conn: Connection, program_id: UUID, values: dict[str, Any]) -> bool:
    """A new survey; False when the program has one of this key."""
    try:
        await conn.execute(
            """
            INSERT INTO survey (id, program_id, key, name, kind, questions, dimensions, send_after, delay_days,
                                alarm_below, ask_promoters, follow_up, status, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12, $13, $14, $14)
            """,
            values["id"],
            program_id,
            values["key"],
            values["name"],
            values["kind"],
            msgspec.json.encode(values["questions"]).decode(),
            msgspec.json.encode(values["dimensions"]).decode(),
            values["send_after"],
            values["delay_days"],
            values["alarm_below"],
            values["ask_promoters"],
            values["follow_up"],
            values["status"],
            values["created_at"],
        )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def update_survey(conn: Connection, program_id: UUID, values: dict[str, Any], now: datetime) -> None:
    await conn.execute(
        """
        UPDATE survey SET name = $3, questions = $4::jsonb, dimensions = $5::jsonb, send_after = $6,
            delay_days = $7, alarm_below = $8, ask_promoters = $9, follow_up = $10, status = $11, updated_at = $12
        WHERE program_id = $1 AND key = $2
        """,
        program_id,
        values["key"],
        values["name"],
        msgspec.json.encode(values["questions"]).decode(),
        msgspec.json.encode(values["dimensions"]).decode(),
        values["send_after"],
        values["delay_days"],
        values["alarm_below"],
        values["ask_promoters"],
        values["follow_up"],
        values["status"],
        now,
    )


async def get_survey(
    conn: Connection,
    program_id: UUID,
    key: str | None = None,
    *,
    survey_id: UUID | None = None,
    lock: bool = False,
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""
        SELECT {SURVEY_FIELDS} FROM survey
        WHERE program_id = $1 AND ($2::text IS NULL OR key = $2) AND ($3::uuid IS NULL OR id = $3)
        {"FOR UPDATE" if lock else ""}
        """,
        program_id,
        key,
        survey_id,
    )
    return None if row is None else _survey(row)


async def list_surveys(conn: Connection, program_id: UUID, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {SURVEY_FIELDS} FROM survey WHERE program_id = $1 AND ($2::text IS NULL OR status = $2)
        ORDER BY key
        """,
        program_id,
        status,
    )
    return [_survey(r) for r in rows]


FEEDBACK_FIELDS = """f.id, f.kind, f.score, f.category, f.dimensions, f.comment, f.channel, f.alarm, f.case_id,
    f.follows_up_case_id, f.answered_at, f.changeable_until, f.created_at, f.updated_at, f.source_key,
    f.customer_id, f.survey_id, f.order_id, c.external_id AS customer_external_id, s.key AS survey_key,
    s.name AS survey_name, s.ask_promoters AS survey_ask_promoters,
    o.external_id AS order_external_id, k.reopened_count > 0 AND f.follows_up_case_id IS NOT NULL AS reopened"""
FEEDBACK_FROM = """feedback f JOIN customer c ON c.id = f.customer_id LEFT JOIN survey s ON s.id = f.survey_id
    LEFT JOIN orders o ON o.id = f.order_id LEFT JOIN service_case k ON k.id = f.follows_up_case_id"""


def _feedback(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["dimensions"] = msgspec.json.decode(data["dimensions"])
    data["reopened"] = bool(data["reopened"])
    return data


async def insert_feedback(conn: Connection, values: dict[str, Any]) -> bool:
    """A new answer; False when its source answered before (the caller reads that one)."""
    inserted = await conn.fetchval(
        """
        INSERT INTO feedback (id, program_id, customer_id, survey_id, kind, score, category, dimensions, comment,
                              order_id, channel, source_key, alarm, case_id, follows_up_case_id, answered_at,
                              changeable_until, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, NULL, $14, $15, $16, $17, $17)
        ON CONFLICT ON CONSTRAINT feedback_once DO NOTHING
        RETURNING true
        """,
        values["id"],
        values["program_id"],
        values["customer_id"],
        values["survey_id"],
        values["kind"],
        values["score"],
        values["category"],
        msgspec.json.encode(values["dimensions"]).decode(),
        values["comment"],
        values["order_id"],
        values["channel"],
        values["source_key"],
        values["alarm"],
        values["follows_up_case_id"],
        values["answered_at"],
        values["changeable_until"],
        values["created_at"],
    )
    return bool(inserted)


async def feedback_by_source(
    conn: Connection, program_id: UUID, source_key: str, *, lock: bool = False
) -> dict[str, Any] | None:
    """The answer of one source (a survey link: `link:<message id>`); with `lock`, held until commit."""
    row = await conn.fetchrow(
        f"""SELECT {FEEDBACK_FIELDS} FROM {FEEDBACK_FROM} WHERE f.program_id = $1 AND f.source_key = $2
        {"FOR UPDATE OF f" if lock else ""}""",
        program_id,
        source_key,
    )
    return None if row is None else _feedback(row)


async def change_feedback(
    conn: Connection,
    program_id: UUID,
    feedback_id: UUID,
    *,
    score: int,
    category: str,
    dimensions: dict[str, int],
    comment: str | None,
    alarm: bool,
    now: datetime,
) -> None:
    """A link's answer changed within its week (once raised, an alarm stays raised: it was sent)."""
    await conn.execute(
        """
        UPDATE feedback SET score = $3, category = $4, dimensions = $5::jsonb, comment = $6, alarm = alarm OR $7,
               answered_at = $8, updated_at = $8
        WHERE program_id = $1 AND id = $2
        """,
        program_id,
        feedback_id,
        score,
        category,
        msgspec.json.encode(dimensions).decode(),
        comment,
        alarm,
        now,
    )


async def set_case(conn: Connection, program_id: UUID, feedback_id: UUID, case_id: UUID) -> None:
    await conn.execute(
        "UPDATE feedback SET case_id = $3 WHERE id = $2 AND program_id = $1", program_id, feedback_id, case_id
    )


async def get_feedback(conn: Connection, program_id: UUID, feedback_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {FEEDBACK_FIELDS} FROM {FEEDBACK_FROM} WHERE f.id = $2 AND f.program_id = $1",
        program_id,
        feedback_id,
    )
    return None if row is None else _feedback(row)


async def list_feedback(
    conn: Connection,
    program_id: UUID,
    *,
    customer: str | None,
    survey: str | None,
    category: str | None,
    alarm: bool | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {FEEDBACK_FIELDS} FROM {FEEDBACK_FROM}
        WHERE f.program_id = $1 AND ($2::text IS NULL OR c.external_id = $2) AND ($3::text IS NULL OR s.key = $3)
          AND ($4::text IS NULL OR f.category = $4) AND ($5::boolean IS NULL OR f.alarm = $5)
          AND ($6::timestamptz IS NULL OR (f.answered_at, f.id) < ($6::timestamptz, $7::uuid))
        ORDER BY f.answered_at DESC, f.id DESC
        LIMIT $8
        """,
        program_id,
        customer,
        survey,
        category,
        alarm,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_feedback(r) for r in rows]


# The shipped questions and each kind's scale, for the survey a message carries (see `surveys_due`).
_SNAPSHOT_DEFAULTS = msgspec.json.encode(
    {
        kind: {"questions": defaults.QUESTIONS[kind], "low": scale.low, "high": scale.high}
        for kind, scale in domain.SCALES.items()
    }
).decode()
assert "$survey$" not in _SNAPSHOT_DEFAULTS


def survey_snapshot(alias: str) -> str:
    """A survey as its message shows it: id, key, name, kind, the scale (low, high) and the questions of
    every locale (its own, else the shipped). What a message was sent with stays with it."""
    return f"""jsonb_build_object(
        'id', {alias}.id, 'key', {alias}.key, 'name', {alias}.name, 'kind', {alias}.kind,
        'low', ($survey${_SNAPSHOT_DEFAULTS}$survey$::jsonb -> {alias}.kind -> 'low'),
        'high', ($survey${_SNAPSHOT_DEFAULTS}$survey$::jsonb -> {alias}.kind -> 'high'),
        'questions', ($survey${_SNAPSHOT_DEFAULTS}$survey$::jsonb -> {alias}.kind -> 'questions') || {alias}.questions)"""


DELIVERED_EVENT = "order_delivered"  # the shop's event of a delivery; its `order` property names the order


def surveys_due(program: str, now: str) -> str:
    """The customers an active survey of `program` asks today: an order placed (or delivered: the shop's
    `order_delivered` event naming it) `delay_days` ago, within a week of that, not refunded; the latest
    such order per customer and survey. Selects customer_id, survey_id, trigger_key
    (`survey:<survey>:<order>`: one ask per order) and context (order_id and the survey's snapshot)."""
    return f"""
        SELECT DISTINCT ON (o.customer_id, s.id) o.customer_id, s.id AS survey_id,
               'survey:' || s.id || ':' || o.id AS trigger_key,
               jsonb_build_object('order_id', o.id, 'survey', {survey_snapshot("s")}) AS context
        FROM survey s
        CROSS JOIN LATERAL (
            SELECT o.id, o.customer_id, o.placed_at AS happened_at FROM orders o
            WHERE s.send_after = 'order' AND o.program_id = s.program_id
              AND o.placed_at <= {now} - s.delay_days * interval '1 day'
              AND o.placed_at > {now} - (s.delay_days + 7) * interval '1 day'
            UNION ALL
            SELECT o.id, o.customer_id, ev.occurred_at FROM customer_event ev
            JOIN orders o ON o.program_id = ev.program_id AND o.customer_id = ev.customer_id
                 AND o.external_id = ev.properties ->> 'order'
            WHERE s.send_after = 'delivery' AND ev.program_id = s.program_id AND ev.type = '{DELIVERED_EVENT}'
              AND ev.occurred_at <= {now} - s.delay_days * interval '1 day'
              AND ev.occurred_at > {now} - (s.delay_days + 7) * interval '1 day'
        ) o
        WHERE s.program_id = {program} AND s.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM orders r WHERE r.id = o.id AND r.status = 'refunded')
        ORDER BY o.customer_id, s.id, o.happened_at DESC
    """
