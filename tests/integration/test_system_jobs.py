"""Every worker job run is recorded; a program sees its own backlog at GET /v1/system/jobs (admin), the\noperators see the runs with `encore jobs runs`."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core.clock import FrozenClock
from service.outbox import consumers
from service.scheduler.worker import Job, Worker
from service.webhooks import jobs as webhooks
from tests.conftest import START, Api, fetch, idempotency, in_app, make_program, settings_for
from tests.support.cli import encore


async def test_a_program_sees_its_own_backlog_and_operators_see_the_runs(
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
    other = make_program(client, "Other shop")
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
    # The runs serve every program: their counts, errors and worker hosts are not a program's to read.
    for program in (api, other):
        text = (await client.get("/v1/system/jobs", headers=program.headers())).text
        assert "test-worker" not in text and "on fire" not in text and "ledger.mature" not in text
    theirs = (await client.get("/v1/system/jobs", headers=other.headers())).json()
    own = fetch(
        client,
        f"SELECT count(*) AS n FROM outbox o WHERE program_id = $1 AND {consumers.waiting(webhooks.CONSUMER)}",
        UUID(other.program_id),
    )[0]["n"]
    assert theirs["backlog"]["undispatched"] == own < 4  # its own events only, not the order's

    in_app(client, worker.run_job, jobs["outbox.dispatch"])
    after = (await client.get("/v1/system/jobs", headers=api.headers())).json()
    assert after["backlog"]["undispatched"] == 0 and after["backlog"]["outbox_lag_seconds"] == 0.0

    key = (
        await client.post(
            "/v1/api-keys", json={"name": "r", "scope": "read"}, headers=api.headers(**idempotency())
        )
    ).json()
    assert (await client.get("/v1/system/jobs", headers=api.headers(key["api_key"]))).status_code == 403

    # Operators read the runs on the command line (and in the worker's metrics).
    shown = encore(database_url, "jobs", "runs")
    assert shown.returncode == 0, shown.stderr
    assert "last error at" in shown.stdout and "RuntimeError: the mail server is on fire" in shown.stdout
    assert "test-worker rows=0" in shown.stdout
    assert "ledger.mature" in shown.stdout and "outbox.dispatch" in shown.stdout


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
