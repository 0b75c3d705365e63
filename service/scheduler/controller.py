from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from service.core import db
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.scheduler import runs
from service.scheduler.schemas import Backlog, JobRunOut, JobsOut, JobSummary


class SystemJobsController(Controller):
    path = "/v1/system/jobs"
    tags = ["system"]
    guards = [requires("admin")]

    @get("/", summary="The worker's jobs: last runs, errors, and how far behind delivery is")
    async def jobs(
        self,
        request: Request[Principal, Any, Any],
        clock: NamedDependency[Clock],
        recent: Annotated[int, QueryParameter(ge=0, le=100, description="runs listed per job")] = 10,
    ) -> JobsOut:
        now = clock.now()
        async with db.connection() as conn:
            summaries = await runs.summary(conn, now, recent)
            backlog = await runs.backlog(conn, now, request.user.program_id)
        return JobsOut(
            jobs=[
                JobSummary(
                    job=s["job"],
                    runs_last_hour=s["runs_last_hour"],
                    rows_last_hour=s["rows_last_hour"],
                    last_success_at=s["last_success_at"],
                    last_error=s["last_error"],
                    last_error_at=s["last_error_at"],
                    recent_runs=[JobRunOut(**run) for run in db.json_value(s["runs"])],
                )
                for s in summaries
            ],
            backlog=Backlog(**backlog),
        )
