from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency

from service.core import db
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.scheduler import runs
from service.scheduler.schemas import Backlog, JobsOut


class SystemJobsController(Controller):
    path = "/v1/system/jobs"
    tags = ["system"]
    guards = [requires("admin")]

    # Only this program's work: the worker's runs, errors and hosts serve every program, so they are
    # the operators' (Prometheus metrics of the worker, `encore jobs runs`), not a program's to read.
    @get("/", summary="How far behind this program's events and webhook deliveries are")
    async def jobs(self, request: Request[Principal, Any, Any], clock: NamedDependency[Clock]) -> JobsOut:
        async with db.connection() as conn:
            backlog = await runs.backlog(conn, clock.now(), request.user.program_id)
        return JobsOut(backlog=Backlog(**backlog))
