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
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from service.core import db, idempotency
from service.core.clock import Clock, SystemClock
from service.feedback import jobs as feedback_jobs
from service.gifts import jobs as gift_jobs
from service.ledger import jobs as ledger_jobs
from service.messaging import jobs as message_jobs
from service.outbox import jobs as outbox_jobs
from service.outreach import jobs as outreach_jobs
from service.rewards import jobs as reward_jobs
from service.scheduler import runs
from service.settings import Settings
from service.stripe import inbound as stripe_inbound
from service.stripe import outbound as stripe_outbound
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
class Done:
    """What one run did: the rows it handled (recorded in `job_run`, counted in metrics) and a line
    saying so for a person (`encore jobs run`)."""

    rows: int
    summary: str


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[Done]]
    about: str = ""  # what the job does (`encore jobs list`)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recorded run: what the job did, or why it failed (then `done` is None)."""

    done: Done | None
    error: str | None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _sweep_summary(verb: str, result: ledger_jobs.SweepResult) -> str:
    return f"{verb} {result.lots} lots, {result.points} points, in {result.chunks} chunks"


def tiers_summary(result: tier_jobs.ReevaluationResult) -> str:
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.counts.items())) or "no change"
    return f"looked at {result.customers} customers whose tier could change: {counts}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        worker_id: str | None = None,
        record_clock: Clock | None = None,
    ) -> None:
        """`clock` is the jobs' time; `record_clock` (by default the same) times the `job_run` rows: a run
        at a simulated time (`encore jobs run --now`) is recorded when it really ran."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self.record_clock = record_clock or self.clock
        self.worker_id = worker_id or new_worker_id()
        self.deliverer = webhook_jobs.Deliverer(settings, self.clock, self.worker_id)
        self.sender = message_jobs.Sender(settings, self.worker_id)
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def jobs(self) -> list[Job]:
        s = self.settings
        clock = self.clock

        async def dispatch() -> Done:
            events = await webhook_jobs.dispatch(clock.now(), budget_seconds=s.worker_run_budget_seconds)
            return Done(events, f"handed {_plural(events, 'event')} to the endpoints subscribed to them")

        async def deliver() -> Done:
            attempts = await self.deliverer.run()
            return Done(attempts, f"made {_plural(attempts, 'delivery attempt')}")

        async def mature() -> Done:
            result = await ledger_jobs.mature(clock.now())
            return Done(result.lots, _sweep_summary("matured", result))

        async def expire() -> Done:
            result = await ledger_jobs.expire(clock.now())
            return Done(result.lots, _sweep_summary("expired", result))

        async def expiry_notices() -> Done:
            result = await ledger_jobs.expiry_notices(clock.now())
            return Done(result.lots, _sweep_summary("expiry notices for", result))

        async def expire_codes() -> Done:
            result = await reward_jobs.expire_codes(clock.now())
            return Done(
                result.codes,
                f"expired {_plural(result.codes, 'code')} past their date, in {_plural(result.chunks, 'chunk')}",
            )

        async def code_expiry_notices() -> Done:
            codes = await reward_jobs.code_expiry_notices(clock.now())
            return Done(codes, f"wrote redemption.expiring_soon for {_plural(codes, 'code')} (7 days ahead)")

        async def reevaluate_tiers() -> Done:
            result = await tier_jobs.reevaluate(clock.now())
            return Done(result.changed, tiers_summary(result))

        async def send_messages() -> Done:
            r = await self.sender.run(clock.now())
            where = f" (as .eml files under {s.data_dir / 'mail'})" if r.sent and not s.smtp_url else ""
            return Done(
                r.rows,
                f"{_plural(r.claimed, 'message')} due: {r.sent} sent{where}, {r.deferred} deferred, "
                f"{r.suppressed} suppressed, {r.failed} failed, {r.retrying} to retry",
            )

        async def journeys() -> Done:
            # Events enter customers first, so a step due at once (a thank-you) goes in the same run.
            entered = await outreach_jobs.enter_from_events(clock.now())
            r = await outreach_jobs.advance(clock.now())
            reward = f", {r.rewarded_points} points rewarded" if r.rewarded_points else ""
            reward += f", {_plural(r.rewarded_codes, 'code')} given" if r.rewarded_codes else ""
            return Done(
                entered + r.rows,
                f"{_plural(entered, 'customer')} entered journeys; {_plural(r.queued, 'message')} queued, "
                f"{r.exited} exited, {r.completed} completed{reward}",
            )

        async def outreach() -> Done:
            entered = await outreach_jobs.enter_scheduled(clock.now())
            return Done(entered, f"{_plural(entered, 'customer')} entered scheduled journeys")

        async def feedback_follow_ups() -> Done:
            queued = await feedback_jobs.follow_ups(clock.now())
            return Done(queued, f"{_plural(queued, 'follow-up survey')} queued after closed cases")

        async def gift_occasions() -> Done:
            r = await gift_jobs.occasions(clock.now())
            failed = f", {_plural(r.problems, 'rule')} failed" if r.problems else ""
            return Done(
                r.customers,
                f"{_plural(r.customers, 'customer')} decided for birthday and anniversary gifts: "
                f"{r.granted} granted, {r.held_out} held out{failed}",
            )

        stripe_events = stripe_inbound.Processor(s, clock, self.worker_id)
        stripe_codes = stripe_outbound.Syncer(s, clock, self.worker_id)

        async def process_stripe_events() -> Done:
            c = stripe_inbound.Counts()
            while True:  # until nothing is due (the run budget bounds a flood)
                started = time.monotonic()
                run = await stripe_events.run()
                c.add(run)
                if (
                    run.claimed < s.stripe_batch_size
                    or time.monotonic() - started > s.worker_run_budget_seconds
                ):
                    break
            return Done(
                c.claimed,
                f"{_plural(c.claimed, 'Stripe event')}: {c.processed} processed, {c.waiting} waiting, "
                f"{c.failed} failed, {c.ignored} ignored"
                + (f", {c.lost} left to another worker" if c.lost else ""),
            )

        async def sync_stripe_codes() -> Done:
            queued = await stripe_outbound.queue(clock.now())
            r = await stripe_codes.run()
            return Done(
                queued + r.created + r.encore_only + r.deactivated + r.failed,
                f"{_plural(queued, 'code')} queued for Stripe; {r.created} promotion codes created, "
                f"{r.encore_only} Encore-only, {r.deactivated} deactivated, {r.retrying} to retry, {r.failed} failed",
            )

        async def housekeeping() -> Done:
            now = clock.now()
            keys = await idempotency.forget_older_than(now - timedelta(days=s.idempotency_retention_days))
            events = await outbox_jobs.prune(now - timedelta(days=s.outbox_retention_days))
            job_runs = await runs.prune(now - timedelta(hours=s.job_run_retention_hours))
            stripe_events = await stripe_inbound.prune(now - timedelta(days=s.outbox_retention_days))
            return Done(
                keys + events + job_runs + stripe_events,
                f"forgot {_plural(keys, 'idempotency key')}, {_plural(events, 'consumed event')}, "
                f"{_plural(stripe_events, 'Stripe event')} and {_plural(job_runs, 'job run')}",
            )

        return [
            Job(
                "outbox.dispatch",
                s.dispatch_interval_seconds,
                dispatch,
                "hand new outbox events to the webhook endpoints subscribed to them (a delivery each)",
            ),
            Job(
                "webhooks.deliver",
                s.deliver_interval_seconds,
                deliver,
                "send the webhook deliveries that are due, signed; failures are retried with backoff",
            ),
            Job(
                "ledger.mature",
                s.mature_interval_seconds,
                mature,
                "make pending points available once their return window has passed",
            ),
            Job(
                "ledger.expire",
                s.expire_interval_seconds,
                expire,
                "expire the points of lots past their date",
            ),
            Job(
                "ledger.expiry_notices",
                s.expiry_notice_interval_seconds,
                expiry_notices,
                "write points.expiring_soon events 30 and 7 days before points expire (once each)",
            ),
            Job(
                "rewards.expire",
                s.expire_interval_seconds,
                expire_codes,
                "expire the unused codes past their date (points back only if the program says so)",
            ),
            Job(
                "rewards.expiry_notices",
                s.expiry_notice_interval_seconds,
                code_expiry_notices,
                "write redemption.expiring_soon events 7 days before an unused code expires (once each)",
            ),
            Job(
                "tiers.reevaluate",
                s.tier_reevaluation_interval_seconds,
                reevaluate_tiers,
                "re-evaluate tiers: upgrades, downgrade warnings, downgrades",
            ),
            Job(
                "journeys.advance",
                s.journeys_interval_seconds,
                journeys,
                "enter customers into journeys from new events, then queue the messages of due steps",
            ),
            Job(
                "outreach.scheduled",
                s.outreach_interval_seconds,
                outreach,
                "enter customers into scheduled journeys: inactivity, birthdays, anniversaries, reorders",
            ),
            Job(
                "feedback.follow_ups",
                s.outreach_interval_seconds,
                feedback_follow_ups,
                'queue the "did we put it right?" survey some days after a detractor\'s case was closed',
            ),
            Job(
                "gifts.occasions",
                s.gifts_interval_seconds,
                gift_occasions,
                "decide the surprise gifts of today's birthdays and first-order anniversaries (once each)",
            ),
            Job(
                "messages.send",
                s.message_send_interval_seconds,
                send_messages,
                "send the messages that are due (SMTP, or .eml files under the data dir), guardrails first",
            ),
            Job(
                "stripe.events",
                s.stripe_interval_seconds,
                process_stripe_events,
                "process the events Stripe sent: paid checkouts into orders, refunds and lost disputes reversed",
            ),
            Job(
                "stripe.codes",
                s.stripe_interval_seconds,
                sync_stripe_codes,
                "make new codes Stripe promotion codes (then announce them); deactivate closed ones",
            ),
            Job(
                "housekeeping",
                s.housekeeping_interval_seconds,
                housekeeping,
                "forget what is past retention: idempotency keys, events every consumer is done with, Stripe events, job runs",
            ),
            Job(
                "metrics",
                15.0,
                self.refresh_gauges,
                "refresh the Prometheus gauges: outbox and delivery backlog",
            ),
        ]

    async def run_job(self, job: Job) -> Recorded | None:
        """One recorded run. A failing run is logged and recorded; the schedule goes on. None: not run
        (the worker is stopping)."""
        if self._stopping:  # started by the scheduler just as the worker was told to stop
            return None
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        started = time.perf_counter()
        done: Done | None = None
        error: str | None = None
        try:
            run_id = await runs.started(job.name, self.worker_id, self.record_clock.now())
            try:
                done = await job.run()
            except Exception as exc:  # a job's failure must not stop the worker
                error = f"{type(exc).__name__}: {exc}"[:2000]
                log.exception("job_failed", job=job.name)
            await runs.finished(run_id, self.record_clock.now(), done.rows if done else None, error)
        except Exception:
            error = error or "could not record the run"
            log.exception("job_run_not_recorded", job=job.name)
        finally:
            self._running.discard(task)
            JOB_RUNS.labels(job.name, "error" if error else "ok").inc()
            JOB_SECONDS.labels(job.name).observe(time.perf_counter() - started)
            if done and done.rows:
                JOB_ROWS.labels(job.name).inc(done.rows)
                log.info(
                    "job_run", job=job.name, rows=done.rows, seconds=round(time.perf_counter() - started, 3)
                )
        return Recorded(None if error else done, error)

    async def run_once(self, name: str) -> Recorded:
        """One recorded run of the job called `name`, with what `serve` opens around it (`encore jobs run`)."""
        job = {job.name: job for job in self.jobs()}[name]
        async with self.deliverer:
            try:
                recorded = await self.run_job(job)
            finally:
                await self.sender.close()
        assert recorded is not None  # run_once never stops the worker
        return recorded

    async def refresh_gauges(self) -> Done:
        async with db.connection() as conn:
            backlog = await runs.backlog(conn, self.clock.now())
        OUTBOX_LAG.set(backlog["outbox_lag_seconds"])
        DELIVERY_LAG.set(backlog["delivery_lag_seconds"])
        DELIVERIES_PENDING.set(backlog["deliveries_pending"])
        DELIVERIES_DEAD.set(backlog["deliveries_dead"])
        return Done(
            0,
            f"{_plural(backlog['undispatched'], 'event')} not yet dispatched, "
            f"{backlog['deliveries_due']} deliveries due, {backlog['deliveries_pending']} pending, "
            f"{backlog['deliveries_dead']} dead",
        )

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
