"""`encore worker`: APScheduler 3.11 as the clock, the database as the queue.

Jobs are registered from code at start (nothing pickled into a job store). Each is a short sweep that
claims its rows in the database, so several workers can run side by side and a killed one loses
nothing. Every run is recorded in `job_run`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from service.core import db, idempotency
from service.core.clock import Clock, SystemClock
from service.ledger import jobs as ledger_jobs
from service.messaging import jobs as message_jobs
from service.outreach import jobs as outreach_jobs
from service.scheduler import runs
from service.settings import Settings
from service.tiers import jobs as tier_jobs
from service.webhooks import jobs as webhook_jobs

log = structlog.get_logger("encore.worker")

JOB_RUNS = Counter("encore_job_runs", "Worker job runs by result", ["job", "result"])
JOB_SECONDS = Histogram(
    "encore_job_run_seconds",
    "Duration of worker job runs",
    ["job"],
    buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300),
)
JOB_ROWS = Counter("encore_job_rows", "Rows handled by worker jobs", ["job"])
OUTBOX_LAG = Gauge("encore_outbox_lag_seconds", "Age of the oldest outbox event not yet dispatched")
DELIVERY_LAG = Gauge("encore_webhook_delivery_lag_seconds", "How long the oldest due delivery has waited")
DELIVERIES_PENDING = Gauge("encore_webhook_deliveries_pending", "Deliveries waiting for a (re)try")
DELIVERIES_DEAD = Gauge("encore_webhook_deliveries_dead", "Deliveries dead-lettered after their retry window")


class _SkipExpectedOverlap(logging.Filter):
    """APScheduler warns each time a job is still running when its interval comes round again. Here that
    is by design (a delivery run drains for up to its budget; intervals are short so work starts soon),
    and at 5 warnings a second it would drown the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_SkipExpectedOverlap())


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[int]]  # returns the rows it handled


class Worker:
    def __init__(self, settings: Settings, clock: Clock | None = None, worker_id: str | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.worker_id = worker_id or new_worker_id()
        self.deliverer = webhook_jobs.Deliverer(settings, self.clock, self.worker_id)
        self.sender = message_jobs.Sender(settings, self.worker_id)
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False

    def jobs(self) -> list[Job]:
        s = self.settings
        clock = self.clock

        async def dispatch() -> int:
            return await webhook_jobs.dispatch(clock.now(), budget_seconds=s.worker_run_budget_seconds)

        async def mature() -> int:
            return (await ledger_jobs.mature(clock.now())).lots

        async def expire() -> int:
            return (await ledger_jobs.expire(clock.now())).lots

        async def expiry_notices() -> int:
            return (await ledger_jobs.expiry_notices(clock.now())).lots

        async def reevaluate_tiers() -> int:
            return (await tier_jobs.reevaluate(clock.now())).changed

        async def send_messages() -> int:
            return (await self.sender.run(clock.now())).rows

        async def journeys() -> int:
            # Events enter customers first, so a step due at once (a thank-you) goes in the same run.
            entered = await outreach_jobs.enter_from_events(clock.now())
            return entered + (await outreach_jobs.advance(clock.now())).rows

        async def outreach() -> int:
            return await outreach_jobs.enter_scheduled(clock.now())

        async def housekeeping() -> int:
            now = clock.now()
            return (
                await idempotency.forget_older_than(now - timedelta(days=s.idempotency_retention_days))
                + await webhook_jobs.prune(now - timedelta(days=s.outbox_retention_days))
                + await runs.prune(now - timedelta(hours=s.job_run_retention_hours))
            )

        return [
            Job("outbox.dispatch", s.dispatch_interval_seconds, dispatch),
            Job("webhooks.deliver", s.deliver_interval_seconds, self.deliverer.run),
            Job("ledger.mature", s.mature_interval_seconds, mature),
            Job("ledger.expire", s.expire_interval_seconds, expire),
            Job("ledger.expiry_notices", s.expiry_notice_interval_seconds, expiry_notices),
            Job("tiers.reevaluate", s.tier_reevaluation_interval_seconds, reevaluate_tiers),
            Job("journeys.advance", s.journeys_interval_seconds, journeys),
            Job("outreach.scheduled", s.outreach_interval_seconds, outreach),
            Job("messages.send", s.message_send_interval_seconds, send_messages),
            Job("housekeeping", s.housekeeping_interval_seconds, housekeeping),
            Job("metrics", 15.0, self.refresh_gauges),
        ]

    async def run_job(self, job: Job) -> None:
        """One recorded run. A failing run is logged and recorded; the schedule goes on."""
        if self._stopping:  # started by the scheduler just as the worker was told to stop
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)  # type: ignore[arg-type]
        started = time.perf_counter()
        rows: int | None = None
        error: str | None = None
        try:
            run_id = await runs.started(job.name, self.worker_id, self.clock.now())
            try:
                rows = await job.run()
            except Exception as exc:  # a job's failure must not stop the worker
                error = f"{type(exc).__name__}: {exc}"[:2000]
                log.exception("job_failed", job=job.name)
            await runs.finished(run_id, self.clock.now(), rows, error)
        except Exception:
            error = error or "could not record the run"
            log.exception("job_run_not_recorded", job=job.name)
        finally:
            self._running.discard(task)  # type: ignore[arg-type]
            JOB_RUNS.labels(job.name, "error" if error else "ok").inc()
            JOB_SECONDS.labels(job.name).observe(time.perf_counter() - started)
            if rows:
                JOB_ROWS.labels(job.name).inc(rows)
                log.info("job_run", job=job.name, rows=rows, seconds=round(time.perf_counter() - started, 3))

    async def refresh_gauges(self) -> int:
        async with db.connection() as conn:
            backlog = await runs.backlog(conn, self.clock.now())
        OUTBOX_LAG.set(backlog["outbox_lag_seconds"])
        DELIVERY_LAG.set(backlog["delivery_lag_seconds"])
        DELIVERIES_PENDING.set(backlog["deliveries_pending"])
        DELIVERIES_DEAD.set(backlog["deliveries_dead"])
        return 0

    async def serve(self, stop: asyncio.Event) -> None:
        """Run the jobs until `stop` is set, then let the running ones finish (claims are recorded)."""
        if self.settings.worker_metrics_port:
            try:
                start_http_server(self.settings.worker_metrics_port, addr="127.0.0.1")
            except OSError as exc:  # metrics are worth a warning, not a worker that won't start
                log.warning(
                    "worker_metrics_unavailable", port=self.settings.worker_metrics_port, error=str(exc)
                )
        scheduler = AsyncIOScheduler(timezone="UTC")
        jobs = self.jobs()
        async with self.deliverer:
            for job in jobs:
                scheduler.add_job(
                    self.run_job,
                    IntervalTrigger(seconds=job.interval_seconds),
                    args=[job],
                    id=job.name,
                    name=job.name,
                    max_instances=1,  # a job that is still running is not started again
                    coalesce=True,
                    misfire_grace_time=None,
                    next_run_time=datetime.now(UTC),  # APScheduler's timer is the wall clock
                )
            scheduler.start()
            log.info("worker_started", worker=self.worker_id, jobs=[j.name for j in jobs])
            await stop.wait()
            # No new runs; running ones finish (APScheduler's shutdown would cancel them mid-query).
            self._stopping = True
            scheduler.pause()
            self.deliverer.stop()
            await asyncio.sleep(0.1)  # runs the scheduler has just created see the stop, or register
            log.info("worker_stopping", worker=self.worker_id, running=len(self._running))
            if self._running:
                await asyncio.wait(set(self._running), timeout=self.settings.webhook_timeout_seconds + 5)
            scheduler.shutdown(wait=False)
            await self.sender.close()
        log.info("worker_stopped", worker=self.worker_id)


async def main(settings: Settings) -> None:
    """The worker process: pool, signals (SIGINT/SIGTERM stop it cleanly), jobs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await db.open_pool(1, 8)
    try:
        await Worker(settings).serve(stop)
    finally:
        await db.close_pool()
