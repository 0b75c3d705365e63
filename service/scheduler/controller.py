from __future__ import annotations

from litestar import Controller, get

from service.core.auth import Permission, requires
from service.core.work import Run, Work
from service.programs.service import Program
from service.scheduler import runs
from service.scheduler.schemas import Backlog, JobsOut


class SystemJobsController(Controller):
    path = "/v1/system/jobs"
    tags = ["system"]
    guards = [requires(Permission.ADMINISTER)]

    # Only this program's work: the worker's runs, errors and hosts serve every program, so they are
    # the operators' (Prometheus metrics of the worker, `encore jobs runs`), not a program's to read.
    @get("/", summary="How far behind this program's events and webhook deliveries are")
    async def jobs(self, run: Run[Program]) -> JobsOut:
        async def jobs(work: Work[None]) -> JobsOut:
            return JobsOut(backlog=Backlog(**await runs.backlog(work.conn, work.now, work.program_id)))

        return await run.read(jobs)
