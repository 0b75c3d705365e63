"""Reports' use cases: the NPS / CSAT report over a range, cut into periods and segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from service.core.db import Connection
from service.core.errors import InvalidInput, NotFound
from service.feedback import service as feedback
from service.feedback.domain import Kind
from service.programs.service import Program
from service.reports import domain, repository
from service.reports.domain import Period, Segment, Tally
from service.reports.schemas import NpsReport, NpsRow

# The CSV's columns, in order: the JSON row's fields, the kind's figure after `responses`.
NPS_COLUMNS = (
    "period",
    "segment",
    "responses",
    "{figure}",
    "promoters",
    "passives",
    "detractors",
    "surveys_sent",
    "response_rate",
    "alarms",
    "alarms_open",
    "alarms_resolved",
    "median_time_to_resolve_seconds",
)


@dataclass(frozen=True, slots=True)
class NpsQuery:
    """The report's query parameters as sent (bounds still text: they are read in the program's zone)."""

    from_: str | None = None
    to: str | None = None
    period: Period = "month"
    segment: Segment | None = None
    kind: Kind | None = None
    survey: str | None = None


@dataclass(frozen=True, slots=True)
class Range:
    start: datetime
    end: datetime  # not included

    def filename(self, prefix: str, program: Program) -> str:
        """`nps-2026-01-01-2026-03-31.csv`: the local days of the first and the last instant."""
        first = domain.local_day(self.start, program.zone)
        last = domain.last_day(self.end, program.zone)
        return f"{prefix}-{first.isoformat()}-{last.isoformat()}.csv"


def report_range(program: Program, from_: str | None, to: str | None, period: Period, now: datetime) -> Range:
    """[from, to) as sent, `to` defaulting to now and `from` to the start of the DEFAULT_PERIODS periods
    up to `to`; at most MAX_RANGE long. Problems name `query:from` / `query:to`."""
    zone = program.zone

    def bound(text: str, name: str) -> datetime:
        try:
            return domain.parse_bound(text, zone, end=name == "to")
        except ValueError as exc:
            raise InvalidInput(str(exc), field=f"query:{name}") from None

    end = now if to is None else bound(to, "to")
    start = domain.default_start(end, period, zone) if from_ is None else bound(from_, "from")
    if start >= end:
        raise InvalidInput("`from` must be before `to` (or, without `to`, before now)", field="query:from")
    if end - start > domain.MAX_RANGE:
        raise InvalidInput("a report covers five years at most", field="query:from")
    return Range(start, end)


def _tally(row: dict[str, Any]) -> Tally:
    return Tally(
        responses=int(row.get("responses", 0)),
        promoters=int(row.get("promoters", 0)),
        passives=int(row.get("passives", 0)),
        detractors=int(row.get("detractors", 0)),
        score_sum=int(row.get("score_sum", 0)),
        sent=int(row.get("sent", 0)),
        alarms=int(row.get("alarms", 0)),
        alarms_resolved=int(row.get("alarms_resolved", 0)),
        resolve_seconds=[int(s) for s in row.get("resolve_seconds", ())],
    )


def _row(tally: Tally, kind: Kind, period: str | None, segment: str | None) -> NpsRow:
    figure: dict[str, Any] = (
        {"nps": tally.nps()}
        if kind == "nps"
        else {"csat_mean": domain.csat_mean(tally.score_sum, tally.responses)}
    )
    return NpsRow(
        period=period,
        segment=segment,
        responses=tally.responses,
        **figure,
        promoters=tally.promoters,
        passives=tally.passives,
        detractors=tally.detractors,
        surveys_sent=tally.sent,
        response_rate=domain.response_rate(tally.responses, tally.sent),
        alarms=tally.alarms,
        alarms_open=tally.alarms - tally.alarms_resolved,
        alarms_resolved=tally.alarms_resolved,
        median_time_to_resolve_seconds=domain.median(tally.resolve_seconds),
    )


async def nps_report(conn: Connection, program: Program, query: NpsQuery, now: datetime) -> NpsReport:
    """Per period (and segment, when asked): the answers, their NPS or mean CSAT, the response rate, the
    alarms and how fast their cases were closed; every period of the range is a row (for a segment: every
    segment seen in the range, in every period), then the totals of the whole range."""
    survey_id = None
    kind: Kind = query.kind or "nps"
    if query.survey is not None:
        survey = await feedback.find_survey(conn, program.id, query.survey)
        if survey is None:
            raise NotFound(f"no survey {query.survey!r} in this program", field="query:survey")
        if query.kind is not None and query.kind != survey["kind"]:
            raise InvalidInput(f"the survey {query.survey!r} asks for {survey['kind']}", field="query:kind")
        survey_id, kind = survey["id"], survey["kind"]
    span = report_range(program, query.from_, query.to, query.period, now)
    scope: dict[str, Any] = {
        "unit": query.period,
        "zone": program.timezone,
        "start": span.start,
        "end": span.end,
        "kind": kind,
        "survey_id": survey_id,
        "segment": query.segment,
    }
    counted: dict[tuple[date, str | None], Tally] = {}
    for row in await repository.feedback_by_period(conn, program.id, **scope):
        counted.setdefault((row["starts"], row["segment"]), Tally()).add(_tally(row))
    for row in await repository.surveys_sent_by_period(conn, program.id, **scope):
        counted.setdefault((row["starts"], row["segment"]), Tally()).add(_tally(row))
    segments = sorted({segment for _, segment in counted}, key=domain.segment_order)
    if query.segment is None:
        segments = [None]
    rows: list[NpsRow] = []
    totals = Tally()
    for starts in domain.periods(span.start, span.end, query.period, program.zone):
        name = domain.label(starts, query.period)
        for segment in segments:
            tally = counted.get((starts, segment), Tally())
            totals.add(tally)
            rows.append(_row(tally, kind, name, segment))
    return NpsReport(
        kind=kind,
        period=query.period,
        segment=query.segment,
        survey=query.survey,
        from_=span.start,
        to=span.end,
        timezone=program.timezone,
        rows=rows,
        totals=_row(totals, kind, None, None),
    )


def nps_columns(kind: Kind) -> tuple[str, ...]:
    figure = "nps" if kind == "nps" else "csat_mean"
    return tuple(figure if c == "{figure}" else c for c in NPS_COLUMNS)
