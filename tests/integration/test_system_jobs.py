"""Every worker job run is recorded and visible at GET /v1/system/jobs (admin), with the backlog."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core.clock import FrozenClock
from service.scheduler.worker import Job, Worker
from tests.conftest import START, Api, fetch, in_app, settings_for


async def test_job_runs_and_backlog_are_visible(
    api: Api, client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock
) -> None:
    worker = Worker(settings_for(database_url), clock, worker_id="test-worker")
    jobs = {job.name: job for job in worker.jobs()}
    assert set(jobs) >= {
        "outbox.dispatch",
        "webhooks.deliver",
        "ledger.mature",
        "ledger.expire",
        "ledger.expiry_notices",
        "housekeeping",
    }
    await api.order("o-1")  # with the program's own event: four waiting in the outbox

    async def broken() -> int:
        raise RuntimeError("the mail server is on fire")

    clock.set(START + timedelta(seconds=30))
    in_app(client, worker.run_job, jobs["ledger.mature"])
    in_app(client, worker.run_job, Job("reports.nightly", 60, broken))

    response = await client.get("/v1/system/jobs", headers=api.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backlog"]["undispatched"] == 4 and body["backlog"]["outbox_lag_seconds"] == 30.0
    by_name = {j["job"]: j for j in body["jobs"]}
    assert by_name["ledger.mature"]["last_error"] is None
    assert by_name["ledger.mature"]["recent_runs"][0]["worker"] == "test-worker"
    assert by_name["ledger.mature"]["recent_runs"][0]["rows"] == 0
    failed = by_name["reports.nightly"]
    assert failed["last_error"] == "RuntimeError: the mail server is on fire"
    assert failed["last_success_at"] is None and failed["recent_runs"][0]["finished_at"] is not None

    in_app(client, worker.run_job, jobs["outbox.dispatch"])
    after = (await client.get("/v1/system/jobs", headers=api.headers())).json()
    assert after["backlog"]["undispatched"] == 0 and after["backlog"]["outbox_lag_seconds"] == 0.0
    assert {j["job"]: j["rows_last_hour"] for j in after["jobs"]}["outbox.dispatch"] == 4

    key = (
        await client.post("/v1/api-keys", json={"name": "r", "scope": "read"}, headers=api.headers())
    ).json()
    assert (await client.get("/v1/system/jobs", headers=api.headers(key["api_key"]))).status_code == 403


async def test_housekeeping_forgets_only_what_is_past_retention(
    api: Api, client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock
) -> None:
    worker = Worker(settings_for(database_url), clock, worker_id="test-worker")
    jobs = {job.name: job for job in worker.jobs()}
    await api.order("o-1", key="k-1")
    in_app(client, worker.run_job, jobs["outbox.dispatch"])
    in_app(
        client, worker.run_job, jobs["journeys.advance"]
    )  # events are kept until journeys have seen them too
    clock.set(START + timedelta(days=8))
    await api.order("o-2", key="k-2")
    in_app(client, worker.run_job, jobs["housekeeping"])
    keys = fetch(client, "SELECT key FROM idempotency_key ORDER BY key")
    assert [k["key"] for k in keys] == ["k-2"]  # 7 days of retention
    assert fetch(client, "SELECT count(*) AS n FROM outbox")[0]["n"] == 6  # outbox keeps 30 days

    clock.set(START + timedelta(days=31))
    in_app(client, worker.run_job, jobs["housekeeping"])
    # The first order's dispatched events are gone; the second's are not yet dispatched, so they stay.
    assert fetch(client, "SELECT count(*) AS n FROM outbox")[0]["n"] == 2
    assert (
        fetch(client, "SELECT count(*) AS n FROM job_run WHERE started_at < $1", START + timedelta(days=29))[
            0
        ]["n"]
        == 0
    )
