"""`encore jobs list | run NAME [--now]` as real processes on the test database: a whole post-purchase
journey walked in seconds, and what a run at a simulated time writes reaches the real-time worker."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.core import db
from service.core.clock import FrozenClock
from service.outbox.service import Event, emit
from service.scheduler import runs
from service.scheduler.worker import Worker
from service.settings import Settings
from tests.conftest import Api, fetch, idempotency, in_app, iso
from tests.support.cli import FAST_WORKER, encore, running
from tests.support.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


async def _program_at_real_time(api: Api, clock: FrozenClock) -> None:
    """The API's clock at the real time (relative `--now` counts from it; a minute behind, so that what
    the API writes is never ahead of the commands run next), messages without quiet hours (the test must
    not depend on the hour it runs at), and a customer who takes email."""
    clock.set(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))
    settings = {"from_email": "hello@shop.example", "from_name": "Demo Shop", "quiet_hours": None}
    response = await api.client.put("/v1/messaging/settings", json=settings, headers=api.headers())
    assert response.status_code == 200, response.text
    customer = {"email": "ada@example.com", "name": "Ada", "locale": "en", "marketing_consent": True}
    response = await api.client.put("/v1/customers/cust-42", json=customer, headers=api.headers())
    assert response.status_code in (200, 201), response.text


async def _enable(api: Api, clock: FrozenClock, journey: str) -> None:
    response = await api.client.patch(
        f"/v1/journeys/{journey}", json={"enabled": True}, headers=api.headers()
    )
    assert response.status_code == 200, response.text
    clock.advance(timedelta(seconds=1))  # events count from after the journey was turned on


async def _messages(api: Api) -> dict[str, dict[str, Any]]:
    response = await api.client.get("/v1/messages?customer=cust-42", headers=api.headers())
    assert response.status_code == 200, response.text
    return {m["message_type"]: m for m in response.json()["items"]}


def test_jobs_list_names_every_worker_job(database_url: str) -> None:
    listed = encore(database_url, "jobs", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    jobs = Worker(Settings()).jobs()
    assert [line.split()[0] for line in lines] == [job.name for job in jobs]
    assert all(job.about and job.about in line for job, line in zip(jobs, lines, strict=True))
    assert "journeys.advance       every 30 s" in listed.stdout


async def test_a_post_purchase_journey_walked_with_jobs_run(
    api: Api, clock: FrozenClock, database_url: str, tmp_path: Path
) -> None:
    """README step 10 with `jobs run`: no worker, no waiting five days."""
    await _program_at_real_time(api, clock)
    await _enable(api, clock, "post_purchase")
    assert (await api.order("1001", "cust-42", placed_at=iso(clock.now()))).status_code == 201
    data = {"ENCORE_DATA_DIR": str(tmp_path)}

    advanced = encore(database_url, "jobs", "run", "journeys.advance", "--now", "+5d", **data)
    assert advanced.returncode == 0, advanced.stderr
    # One run takes every step due by then: the thank-you and the "how is it?" five days later.
    assert "1 customer entered journeys; 2 messages queued, 0 exited, 0 completed" in advanced.stdout
    sent = encore(database_url, "jobs", "run", "messages.send", "--now", "+5d", **data)
    assert sent.returncode == 0, sent.stderr
    assert f"2 messages due: 2 sent (as .eml files under {tmp_path / 'mail'})" in sent.stdout

    mails = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((tmp_path / "mail").glob("*/*.eml"))
    ]
    assert len(mails) == 2
    [check_in] = [mail for mail in mails if str(mail["Subject"]) == "How is your order 1001?"]
    assert "ada@example.com" in str(check_in["To"])
    in_five_days = datetime.now(UTC) + timedelta(days=5)
    assert abs(check_in["Date"].datetime - in_five_days) < timedelta(minutes=5)  # sent "in five days"
    listed = await _messages(api)
    assert listed["delivery_check_in"]["status"] == "sent"
    assert listed["delivery_check_in"]["subject"] == "How is your order 1001?"
    assert listed["order_thank_you"]["status"] == "sent"
    assert "review_request" not in listed  # due a week after the check-in

    recorded = fetch(api.client, "SELECT job, worker, rows, error, started_at FROM job_run ORDER BY id")
    assert [(r["job"], r["rows"], r["error"]) for r in recorded] == [
        ("journeys.advance", 3, None),  # 1 entered + 2 queued
        ("messages.send", 2, None),
    ]
    # Recorded when they really ran; the worker id names the simulated time.
    assert all(r["worker"].startswith("encore jobs run --now ") for r in recorded)
    assert all(abs(r["started_at"] - datetime.now(UTC)) < timedelta(minutes=5) for r in recorded)


async def test_events_written_at_a_future_now_reach_the_real_time_worker_at_once(
    api: Api, clock: FrozenClock, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Sweeps run ahead (`--now +15d`) stamp their events ahead; the worker, at the real time, still
    delivers them as webhooks and starts the journeys they trigger, without waiting for that date."""
    await _program_at_real_time(api, clock)
    patch = {"points_expire_after_days": 30}
    assert (await api.client.patch("/v1/program", json=patch, headers=api.headers())).status_code == 200
    endpoint = {"url": receiver.url, "event_types": ["points.matured", "points.expiring_soon"]}
    assert (
        await api.client.post("/v1/webhook-endpoints", json=endpoint, headers=api.headers(**idempotency()))
    ).status_code == 201
    await _enable(api, clock, "expiry_reminder")
    assert (await api.order("1001", "cust-42", placed_at=iso(clock.now()))).status_code == 201

    # Available in 14 days, expiring 30 days later: at +16d the 30-day notice is due.
    matured = encore(database_url, "ledger", "mature", "--now", "+15d")
    assert matured.returncode == 0 and "matured 1 lots, 90 points" in matured.stdout, matured.stderr
    noticed = encore(database_url, "jobs", "run", "ledger.expiry_notices", "--now", "+16d")
    assert noticed.returncode == 0 and "expiry notices for 1 lots" in noticed.stdout, noticed.stderr
    stamped = fetch(api.client, "SELECT min(created_at) AS at FROM outbox WHERE topic = 'points.matured'")
    assert stamped[0]["at"] > datetime.now(UTC) + timedelta(days=14)

    with running(database_url, "worker", ENCORE_DATA_DIR=str(tmp_path), **FAST_WORKER) as worker:
        for _ in range(200):
            topics = {r.json["type"] for r in list(receiver.received)}
            sent = await _messages(api)
            reminder = sent.get("points_expiring", {}).get("status")
            if topics == {"points.matured", "points.expiring_soon"} and reminder == "sent":
                break
            assert worker.process.poll() is None, worker.text()
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"not delivered: {topics}, messages {sent}\n{worker.text()}")
    assert list((tmp_path / "mail").glob("*/*.eml"))  # the reminder, as a file

    # Nothing left waiting, and an event stamped ahead counts as waiting, never as negative lag.
    async def stamp_ahead() -> dict[str, Any]:
        async with db.transaction() as conn:
            await emit(
                conn, api.program_id, [Event("webhook.test", {})], datetime.now(UTC) + timedelta(days=3)
            )
        async with db.connection() as conn:
            return await runs.backlog(conn, datetime.now(UTC))

    backlog = in_app(api.client, stamp_ahead)
    assert backlog["undispatched"] == 1 and backlog["outbox_lag_seconds"] == 0.0


def test_now_is_checked_before_anything_runs(database_url: str) -> None:
    naive = encore(database_url, "jobs", "run", "ledger.mature", "--now", "2027-01-15T09:00:00")
    assert naive.returncode == 2 and "--now" in naive.stderr and "time zone" in naive.stderr
    unknown = encore(database_url, "jobs", "run", "ledger.ripen")
    assert unknown.returncode == 2 and "encore jobs list" in unknown.stderr
