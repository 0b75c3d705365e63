from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter

from service.core.auth import Permission, Principal, requires
from service.core.openapi import problems
from service.core.work import Run, Work
from service.feedback.domain import Kind
from service.programs.service import Program
from service.reports import service
from service.reports.csv import respond
from service.reports.domain import BOUND_FORMS, Period, Segment
from service.reports.schemas import NpsReport

NPS = (
    "Per period (`period`: ISO weeks from Monday, `2026-W10`, or months, `2026-03`, in the program's time "
    "zone) and, with `segment`, per the customer's current tier key or locale (`none`: without one): the "
    "answers, the NPS (`kind=nps`: % promoters − % detractors) or the mean CSAT (`kind=csat`, 2 places), "
    "the bands, `response_rate` (answers / survey messages sent in the period; null when none was sent), "
    "the alarms, those whose case is closed and the median time from opening to closing them; every period "
    "of the range is a row (segmented: every segment seen in the range, in each period), `totals` sums the "
    "range. The range is [`from`, `to`): a date is read in the program's time zone and a date as `to` "
    "includes that day; without `to`: up to now; without `from`: the 12 periods up to `to`, the current one "
    "included; five years at most. `survey`: one survey's answers (`kind` is then its kind). "
    "`Accept: text/csv`: the rows as CSV (a header line, RFC 4180), as `nps-<from>-<to>.csv`."
)
# Checked by the use case (where the program's zone reads a date): a length check here would name the
# parameter `from_`, Python's name for it.
Bound = Annotated[str | None, QueryParameter(description=BOUND_FORMS)]


class ReportController(Controller):
    path = "/v1/reports"
    tags = ["reports"]

    @get(
        "/nps",
        guards=[requires(Permission.READ)],
        summary="NPS or CSAT per period and segment, response rate, alarms and time to resolve (JSON or CSV)",
        description=NPS,
        opt=problems(404),
    )
    async def nps_report(
        self,
        run: Run[Program],
        request: Request[Principal, Any, Any],
        from_: Annotated[str | None, QueryParameter(name="from", description=BOUND_FORMS)] = None,
        to: Bound = None,
        period: Annotated[Period, QueryParameter()] = "month",
        segment: Annotated[Segment | None, QueryParameter()] = None,
        kind: Annotated[
            Kind | None, QueryParameter(description="default: the survey's kind, else nps")
        ] = None,
        survey: Annotated[
            str | None, QueryParameter(min_length=1, max_length=64, description="a survey key")
        ] = None,
    ) -> Response[NpsReport]:
        query = service.NpsQuery(from_=from_, to=to, period=period, segment=segment, kind=kind, survey=survey)

        async def report(work: Work[Program]) -> tuple[NpsReport, str]:
            answer = await service.nps_report(work.conn, work.program, query, work.now)
            span = service.Range(answer.from_, answer.to)
            return answer, span.filename("nps", work.program)

        answer, filename = await run.read(report, load="program")
        return respond(request, answer, answer.rows, service.nps_columns(answer.kind), filename)
