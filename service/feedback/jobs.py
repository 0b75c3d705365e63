"""Feedback's sweep: the "did we put it right?" follow-up, a survey message asked again some days after a
detractor's case was closed, when the survey says so (`follow_up`). Idempotent: the message's dedupe key
is the case and how often it was reopened, so each closing is followed up once, a rerun or a second
worker queues nothing twice, and a case reopened and closed again is asked again."""

from __future__ import annotations

from datetime import datetime, timedelta

from service.core import db
from service.core.db import json_value
from service.feedback.repository import survey_snapshot
from service.messaging import service as messaging

FOLLOW_UP_AFTER = timedelta(days=2)  # long enough for what was done to arrive
FOLLOW_UP_WITHIN = timedelta(days=14)  # a case closed longer ago (follow-up turned on since) is left alone
CHUNK = 5_000

# Closed cases a detractor's answer opened, of surveys that follow up, closed in the window. $1 now,
# $2 after, $3 within, $4 the last case id seen (chunks).
_DUE = f"""
    SELECT f.program_id, f.customer_id, k.id AS case_id, k.reopened_count, f.order_id, {survey_snapshot("s")} AS survey
    FROM service_case k
    JOIN feedback f ON f.case_id = k.id AND f.program_id = k.program_id
    JOIN survey s ON s.id = f.survey_id AND s.program_id = f.program_id
    WHERE k.status = 'closed' AND k.closed_at <= $1::timestamptz - $2::interval
      AND k.closed_at > $1::timestamptz - $3::interval AND s.follow_up AND s.status = 'active'
      AND k.id > $4::uuid
    ORDER BY k.id LIMIT {CHUNK}
"""


async def follow_ups(now: datetime) -> int:
    """Queue the follow-ups due; returns how many this run queued."""
    queued, after = 0, "00000000-0000-0000-0000-000000000000"
    while True:
        async with db.transaction() as conn:
            rows = await conn.fetch(_DUE, now, FOLLOW_UP_AFTER, FOLLOW_UP_WITHIN, after)
            if not rows:
                return queued
            queued += len(
                await messaging.queue(
                    conn,
                    [
                        {
                            "program_id": str(r["program_id"]),
                            "customer_id": str(r["customer_id"]),
                            "message_type": "survey",
                            "category": "transactional",
                            "journey_id": None,
                            "step": None,
                            "trigger_key": f"case:{r['case_id']}",
                            "dedupe_key": f"follow-up:{r['case_id']}:{r['reopened_count']}",
                            "context": {
                                "survey": json_value(r["survey"]),
                                "follow_up_case_id": str(r["case_id"]),
                                "order_id": None if r["order_id"] is None else str(r["order_id"]),
                            },
                        }
                        for r in rows
                    ],
                    now,
                )
            )
        after = str(rows[-1]["case_id"])
        if len(rows) < CHUNK:
            return queued
