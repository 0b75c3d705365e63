from __future__ import annotations

from datetime import datetime

from msgspec import Struct


class JobRunOut(Struct, kw_only=True):
    id: int
    worker: str
    started_at: datetime
    finished_at: datetime | None  # None: running, or its worker died
    rows: int | None
    error: str | None


class JobSummary(Struct, kw_only=True):
    job: str
    runs_last_hour: int
    rows_last_hour: int
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    recent_runs: list[JobRunOut]


class Backlog(Struct, kw_only=True):
    """This program's events and deliveries that are waiting."""

    undispatched: int
    outbox_lag_seconds: float
    deliveries_due: int
    delivery_lag_seconds: float
    deliveries_pending: int
    deliveries_dead: int
    deliveries_paused: int


class JobsOut(Struct, kw_only=True):
    jobs: list[JobSummary]
    backlog: Backlog
