"""Properties of the reports' pure decisions (service/reports/domain.py) and the CSV convention
(service/reports/csv.py): periods tile a range without gaps or overlaps in any time zone, labels are ISO
weeks and months, bounds read as the program's local days, the default range is twelve periods, medians
and decimals round half up, and CSV cells are RFC 4180 and harmless in a spreadsheet."""

from __future__ import annotations

import csv as stdlib_csv
import io
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.reports import domain
from service.reports.csv import cell, to_csv
from service.reports.schemas import NpsRow

ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/Los_Angeles",
    "Pacific/Kiritimati",
    "Asia/Kathmandu",
    "Pacific/Auckland",
)
BERLIN = ZoneInfo("Europe/Berlin")
zones = st.sampled_from(ZONES).map(ZoneInfo)
periods = st.sampled_from(("week", "month"))
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1), timezones=st.just(UTC))


@given(moments, st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=800)), periods, zones)
def test_periods_tile_the_range(
    start: datetime, length: timedelta, period: domain.Period, zone: ZoneInfo
) -> None:
    end = start + length
    found = domain.periods(start, end, period, zone)
    assert found, "a range touches at least one period"
    # The first holds `start`, the last holds the range's last instant, and each follows the one before.
    assert found[0] == domain.period_start(start.astimezone(zone).date(), period)
    assert found[-1] == domain.period_start(domain.last_day(end, zone), period)
    for before, after in pairwise(found):
        if period == "week":
            assert after - before == timedelta(days=7) and after.weekday() == 0
        else:
            assert after.day == 1 and (after.year * 12 + after.month) - (before.year * 12 + before.month) == 1
    assert len({domain.label(p, period) for p in found}) == len(found)  # labels never repeat


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2199, 1, 1)))
def test_labels_are_iso_weeks_and_months(day: date) -> None:
    monday = domain.period_start(day, "week")
    assert monday.weekday() == 0 and 0 <= (day - monday).days < 7
    year, week, _ = day.isocalendar()
    assert domain.label(monday, "week") == f"{year:04d}-W{week:02d}"
    assert domain.label(domain.period_start(day, "month"), "month") == day.strftime("%Y-%m")


def test_iso_years_at_the_turn() -> None:
    assert domain.label(date(2025, 12, 29), "week") == "2026-W01"
    assert domain.label(date(2020, 12, 28), "week") == "2020-W53"
    assert domain.label(date(2021, 1, 4), "week") == "2021-W01"
    assert domain.label(date(2026, 3, 1), "month") == "2026-03"


def test_bounds_are_local_days_or_instants() -> None:
    assert domain.parse_bound("2026-03-01", BERLIN, end=False) == datetime(2026, 2, 28, 23, tzinfo=UTC)
    # As the end a date includes its day; 29 March 2026 has 23 hours in Berlin.
    assert domain.parse_bound("2026-03-29", BERLIN, end=True) == datetime(2026, 3, 29, 22, tzinfo=UTC)
    assert domain.parse_bound("2026-03-01T10:00:00+01:00", BERLIN, end=True) == datetime(
        2026, 3, 1, 9, tzinfo=UTC
    )
    assert domain.parse_bound("2026-03-01t10:00:00.5z", BERLIN, end=False) == datetime(
        2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC
    )
    for bad in ("", "2026-3-1", "2026-02-29", "2026-03-01T10:00:00", "2026-03-01T10:00Z", "now", "2026-W10"):
        with pytest.raises(ValueError, match="expected a date"):
            domain.parse_bound(bad, BERLIN, end=False)
    with pytest.raises(ValueError, match="1970-01-01 to 2200-01-01"):
        domain.parse_bound("1969-12-31", ZoneInfo("UTC"), end=False)
    with pytest.raises(ValueError):
        domain.parse_bound("9999-12-31", BERLIN, end=True)


@given(moments, periods, zones)
def test_the_default_start_is_twelve_periods_back(
    end: datetime, period: domain.Period, zone: ZoneInfo
) -> None:
    start = domain.default_start(end, period, zone)
    assert start < end
    found = domain.periods(start, end, period, zone)
    assert len(found) == domain.DEFAULT_PERIODS
    assert start == domain.local_midnight(found[0], zone)


def test_default_start_in_berlin() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert domain.default_start(now, "month", BERLIN) == datetime(
        2025, 3, 31, 22, tzinfo=UTC
    )  # 1 April, CEST
    assert domain.default_start(now, "week", BERLIN) == datetime(
        2025, 12, 14, 23, tzinfo=UTC
    )  # Monday 15 Dec


def test_median_and_decimals_round_half_up() -> None:
    assert domain.median([]) is None
    assert domain.median([5]) == 5
    assert domain.median([7200, 3600, 100, 301]) == 1951  # (301 + 3600) / 2 = 1950.5
    assert domain.median([1, 2]) == 2 and domain.median([1, 3]) == 2
    assert domain.csat_mean(13, 4) == "3.25"
    assert (
        domain.csat_mean(10, 3) == "3.33"
        and domain.csat_mean(5, 3) == "1.67"
        and domain.csat_mean(9, 3) == "3.00"
    )
    assert domain.csat_mean(0, 0) is None
    assert domain.response_rate(1, 3) == "0.3333" and domain.response_rate(2, 3) == "0.6667"
    assert domain.response_rate(2, 1) == "2.0000" and domain.response_rate(0, 0) is None


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=50))
def test_the_median_lies_between_the_middle_values(values: list[int]) -> None:
    ordered = sorted(values)
    found = domain.median(values)
    assert found is not None
    assert ordered[(len(values) - 1) // 2] <= found <= ordered[len(values) // 2]


def test_a_tally_gives_the_net_promoter_score() -> None:
    assert domain.Tally(promoters=3, passives=1, detractors=2).nps() == 17
    assert domain.Tally(promoters=1, detractors=2).nps() == -33
    assert domain.Tally(promoters=1, detractors=1).nps() == 0
    assert domain.Tally().nps() is None
    total = domain.Tally(promoters=1, resolve_seconds=[5])
    total.add(domain.Tally(detractors=1, sent=2, resolve_seconds=[7]))
    assert (total.promoters, total.detractors, total.sent, total.resolve_seconds) == (1, 1, 2, [5, 7])
    assert sorted(["none", "lv", "en", "gold"], key=domain.segment_order) == ["en", "gold", "lv", "none"]


def test_csv_cells_are_harmless_in_a_spreadsheet() -> None:
    assert [cell(v) for v in (None, True, False, 0, -33, "0.5000", "-1.25")] == [
        "",
        "true",
        "false",
        "0",
        "-33",
        "0.5000",
        "-1.25",
    ]
    assert [cell(v) for v in ("=SUM(A1)", "+1 call", "-x", "@me", "\tx", "gold")] == [
        "'=SUM(A1)",
        "'+1 call",
        "'-x",
        "'@me",
        "'\tx",
        "gold",
    ]


@given(st.lists(st.text(max_size=20), min_size=1, max_size=5))
def test_csv_is_rfc_4180_and_reads_back(values: list[str]) -> None:
    columns = [f"c{i}" for i in range(len(values))]
    text = to_csv([dict(zip(columns, values, strict=True))], columns)
    assert text.endswith("\r\n")
    [header, row] = list(stdlib_csv.reader(io.StringIO(text, newline="")))
    assert header == columns
    assert row == [cell(v) for v in values]


def test_csv_of_report_rows() -> None:
    row = NpsRow(
        period="2026-03",
        segment='a "b", c',
        responses=2,
        nps=-50,
        promoters=0,
        passives=1,
        detractors=1,
        surveys_sent=0,
        response_rate=None,
        alarms=1,
        alarms_open=1,
        alarms_resolved=0,
        median_time_to_resolve_seconds=None,
    )
    assert to_csv([row], ("period", "segment", "nps", "response_rate", "csat_mean")) == (
        'period,segment,nps,response_rate,csat_mean\r\n2026-03,"a ""b"", c",-50,,\r\n'
    )
