"""Job runs: every run of a worker job is a row (job, worker, started, finished, rows, error)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from service.core import db
from service.outbox import consumers
from service.webhooks.jobs import CONSUMER as WEBHOOKS


async def started(job: str, worker: str, at: datetime) -> int:
    async with db.connection() as conn:
        run_id: int = await conn.fetchval(
            "INSERT INTO job_run (job, worker, started_at) VALUES ($1, $2, $3) RETURNING id", job, worker, at
        )
    return run_id


async def finished(run_id: int, at: datetime, rows: int | None, error: str | None) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE job_run SET finished_at = $2, rows = $3, error = $4 WHERE id = $1",
            run_id,
            at,
            rows,
            error,
        )


async def prune(cutoff: datetime) -> int:
    return await db.delete_in_chunks(
        """
        WITH old AS (SELECT id FROM job_run WHERE started_at < $1 LIMIT $2),
        gone AS (DELETE FROM job_run j USING old WHERE j.id = old.id RETURNING 1)
        SELECT count(*) FROM gone
        """,
        cutoff,
    )


async def summary(conn: db.Connection, now: datetime, recent: int) -> list[dict[str, Any]]:
    """Per job: its last run, last success, last error, runs and rows in the last hour, recent runs."""
    rows = await conn.fetch(
        """
        SELECT j.job,
               (SELECT count(*) FROM job_run r WHERE r.job = j.job AND r.started_at > $1::timestamptz - interval '1 hour')
                   AS runs_last_hour,
               (SELECT coalesce(sum(r.rows), 0) FROM job_run r
                WHERE r.job = j.job AND r.started_at > $1::timestamptz - interval '1 hour') AS rows_last_hour,
               (SELECT max(r.finished_at) FROM job_run r WHERE r.job = j.job AND r.error IS NULL)
                   AS last_success_at,
               last_error.error AS last_error, last_error.started_at AS last_error_at,
               recent.runs
        FROM (SELECT DISTINCT job FROM job_run) j
        LEFT JOIN LATERAL (
            SELECT error, started_at FROM job_run r WHERE r.job = j.job AND r.error IS NOT NULL
            ORDER BY id DESC LIMIT 1) last_error ON true
        CROSS JOIN LATERAL (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', r.id, 'worker', r.worker, 'started_at', r.started_at,
                       'finished_at', r.finished_at, 'rows', r.rows, 'error', r.error) ORDER BY r.id DESC),
                   '[]') AS runs
            FROM (SELECT * FROM job_run r WHERE r.job = j.job ORDER BY id DESC LIMIT $2) r) recent
        ORDER BY j.job
        """,
        now,
        recent,
    )
    return [dict(r) for r in rows]


async def backlog(conn: db.Connection, now: datetime, program_id: UUID | None = None) -> dict[str, Any]:
    """How far behind delivery is (for one program, or all): events the webhook dispatcher has not passed
    yet, deliveries due, pending, dead and paused, and the age of the oldest waiting event and delivery."""
    row = await conn.fetchrow(
        f"""
        -- An event stamped ahead of `now` (a sweep run with `--now` in the future) is waiting, not late.
        SELECT o.undispatched, greatest(extract(epoch FROM $1 - o.oldest), 0) AS outbox_lag_seconds,
               d.due AS deliveries_due, extract(epoch FROM $1 - d.oldest) AS delivery_lag_seconds,
               d.pending AS deliveries_pending, d.dead AS deliveries_dead, d.paused AS deliveries_paused
        FROM (SELECT count(*) AS undispatched, min(o.created_at) AS oldest FROM outbox o
              WHERE {consumers.waiting(WEBHOOKS)} AND ($2::uuid IS NULL OR o.program_id = $2)) o,
             (SELECT count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= $1) AS due,
                     min(next_attempt_at) FILTER (WHERE status = 'pending' AND next_attempt_at <= $1) AS oldest,
                     count(*) FILTER (WHERE status = 'pending') AS pending,
                     count(*) FILTER (WHERE status = 'dead') AS dead,
                     count(*) FILTER (WHERE status = 'paused') AS paused
              FROM webhook_delivery
              WHERE status IN ('pending', 'dead', 'paused') AND ($2::uuid IS NULL OR program_id = $2)) d
        """,
        now,
        program_id,
    )
    assert row is not None
    result = dict(row)
    for lag in ("outbox_lag_seconds", "delivery_lag_seconds"):
        result[lag] = float(result[lag] or 0)  # nothing waiting: no lag
    return result
