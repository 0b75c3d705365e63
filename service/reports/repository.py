"""Reports' SQL: reads of other features' tables (feedback, survey, service_case, message, customer and
the tiers' published fragment), never a write; every query filtered on the program."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from service.core.db import Connection
from service.reports.domain import Segment
from service.tiers.published import TIER_LATERAL

# The segment of a customer row `c` (TIER_LATERAL adds `tier_state` for tiers): fixed SQL, never input.
_SEGMENTS: dict[Segment | None, tuple[str, str]] = {
    None: ("NULL::text", ""),
    "tier": ("coalesce(tier_state.tier, 'none')", TIER_LATERAL),
    "locale": ("coalesce(c.locale, 'none')", ""),
}


async def feedback_by_period(
    conn: Connection,
    program_id: UUID,
    *,
    unit: str,
    zone: str,
    start: datetime,
    end: datetime,
    kind: str,
    survey_id: UUID | None,
    segment: Segment | None,
) -> list[dict[str, Any]]:
    """Answers answered in [start, end) by local period start (`starts`, a date) and segment: counts by
    band, the sum of scores, alarms, those whose case is closed now, and how long each of those took
    (whole seconds from opened to closed)."""
    expression, join = _SEGMENTS[segment]
    rows = await conn.fetch(
        f"""
        SELECT date_trunc($2::text, f.answered_at AT TIME ZONE $3::text)::date AS starts,
               {expression} AS segment,
               count(*) AS responses,
               count(*) FILTER (WHERE f.category = 'promoter') AS promoters,
               count(*) FILTER (WHERE f.category = 'passive') AS passives,
               count(*) FILTER (WHERE f.category = 'detractor') AS detractors,
               coalesce(sum(f.score), 0) AS score_sum,
               count(*) FILTER (WHERE f.alarm) AS alarms,
               count(*) FILTER (WHERE f.alarm AND sc.status = 'closed') AS alarms_resolved,
               coalesce(
                   array_agg(floor(extract(epoch FROM sc.closed_at - sc.opened_at))::bigint)
                       FILTER (WHERE f.alarm AND sc.status = 'closed' AND sc.closed_at IS NOT NULL),
                   '{{}}'
               ) AS resolve_seconds
        FROM feedback f
        JOIN customer c ON c.id = f.customer_id AND c.program_id = $1
        {join}
        LEFT JOIN service_case sc ON sc.id = coalesce(f.case_id, f.follows_up_case_id) AND sc.program_id = $1
        WHERE f.program_id = $1 AND f.kind = $4 AND f.answered_at >= $5 AND f.answered_at < $6
          AND ($7::uuid IS NULL OR f.survey_id = $7)
        GROUP BY 1, 2
        """,
        program_id,
        unit,
        zone,
        kind,
        start,
        end,
        survey_id,
    )
    return [dict(r) for r in rows]


async def surveys_sent_by_period(
    conn: Connection,
    program_id: UUID,
    *,
    unit: str,
    zone: str,
    start: datetime,
    end: datetime,
    kind: str,
    survey_id: UUID | None,
    segment: Segment | None,
) -> list[dict[str, Any]]:
    """Survey messages sent in [start, end) by local period start and segment: messaging's `survey`
    messages whose context carries (`survey.id`) a survey of this kind (and the one asked for)."""
    expression, join = _SEGMENTS[segment]
    rows = await conn.fetch(
        f"""
        SELECT date_trunc($2::text, m.sent_at AT TIME ZONE $3::text)::date AS starts,
               {expression} AS segment,
               count(*) AS sent
        FROM message m
        JOIN customer c ON c.id = m.customer_id AND c.program_id = $1
        {join}
        JOIN survey s ON s.program_id = $1 AND s.id::text = m.context -> 'survey' ->> 'id'
        WHERE m.program_id = $1 AND m.message_type = 'survey' AND m.status = 'sent'
          AND m.sent_at >= $5 AND m.sent_at < $6 AND s.kind = $4
          AND ($7::uuid IS NULL OR s.id = $7)
        GROUP BY 1, 2
        """,
        program_id,
        unit,
        zone,
        kind,
        start,
        end,
        survey_id,
    )
    return [dict(r) for r in rows]
