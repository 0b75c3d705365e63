"""Properties of recovery's pure decisions (service/recovery/domain.py): what is left of a budget is never
negative and a cost fits iff both rooms hold it; a tier gesture ends the same local time whole calendar
months later (the day clamped, in the program's zone); the budget month is the local month; waits are
whole non-negative seconds; a complaint's summary is its first text property, trimmed and capped."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.recovery import domain

ZONES = ("UTC", "Europe/Berlin", "Pacific/Auckland", "America/Los_Angeles", "Asia/Kathmandu")
BERLIN = ZoneInfo("Europe/Berlin")
AUCKLAND = ZoneInfo("Pacific/Auckland")

moments = st.datetimes(
    min_value=datetime(1971, 1, 2), max_value=datetime(2190, 12, 30), timezones=st.just(UTC)
)
amounts = st.integers(min_value=0, max_value=10**9)
costs = st.integers(min_value=0, max_value=10**9)
months = st.integers(min_value=1, max_value=24)


# --- room, fits, after ------------------------------------------------------------------------------------


@given(amounts, amounts, st.none() | amounts, amounts)
def test_room_is_what_is_left_never_negative(
    budget: int, used: int, agent: int | None, agent_used: int
) -> None:
    room = domain.room(budget, used, agent, agent_used)
    assert room.program_left == max(0, budget - used) >= 0
    if agent is None:
        assert room.agent_left is None
    else:
        assert room.agent_left == max(0, agent - agent_used) >= 0


def test_room_examples() -> None:
    assert domain.room(5000, 1200, None, 0) == domain.Room(3800, None)
    assert domain.room(5000, 1200, 1000, 400) == domain.Room(3800, 600)
    # A budget lowered under what the month used leaves nothing, not a debt.
    assert domain.room(1000, 1500, 200, 900) == domain.Room(0, 0)
    assert domain.room(0, 0, 0, 0) == domain.Room(0, 0)


@given(amounts, amounts, st.none() | amounts, amounts, costs)
def test_fits_iff_the_cost_is_within_both(
    budget: int, used: int, agent: int | None, agent_used: int, cost: int
) -> None:
    room = domain.room(budget, used, agent, agent_used)
    within_agent = agent is None or cost <= max(0, agent - agent_used)
    assert room.fits(cost) is (cost <= max(0, budget - used) and within_agent)


@given(amounts, amounts, st.none() | amounts, amounts, costs)
def test_after_a_fitting_cost_is_the_room_of_the_month_with_it_spent(
    budget: int, used: int, agent: int | None, agent_used: int, cost: int
) -> None:
    room = domain.room(budget, used, agent, agent_used)
    assume(room.fits(cost))
    after = room.after(cost)
    assert after.program_left >= 0
    assert after.agent_left is None or after.agent_left >= 0
    assert after == domain.room(budget, used + cost, agent, agent_used + cost)
    assert after.program_left == room.program_left - cost


def test_fits_at_the_edges() -> None:
    room = domain.Room(500, 200)
    assert room.fits(0) and room.fits(200)
    assert not room.fits(201)  # the agent's cap, though the program has room
    assert not domain.Room(100, 200).fits(101)  # the program's budget, though the agent has room
    assert domain.Room(500, None).fits(500) and not domain.Room(500, None).fits(501)
    assert domain.Room(0, None).fits(0)  # a budget of 0 still lets a gesture that costs nothing through
    assert domain.Room(500, 200).after(200) == domain.Room(300, 0)
    assert domain.Room(500, None).after(120) == domain.Room(380, None)


# --- months_later -----------------------------------------------------------------------------------------


def _exists(naive: datetime, zone: ZoneInfo) -> bool:
    """Whether a local wall time exists in `zone` (not skipped by a spring-forward gap)."""
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


@given(moments, months, st.sampled_from(ZONES))
def test_months_later_is_the_same_local_time_whole_months_later(at: datetime, n: int, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    local = at.astimezone(zone)
    later = domain.months_later(at, n, zone)
    assert later.tzinfo is at.tzinfo  # in the terms `at` was given in
    assert later > at
    local_later = later.astimezone(zone)
    year, month = divmod(local.year * 12 + local.month - 1 + n, 12)
    month += 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    expected = local.replace(tzinfo=None, year=year, month=month, day=day)
    if _exists(expected, zone):
        assert local_later.replace(tzinfo=None) == expected
    else:  # a wall time the clocks skip: the instant the zone's rules give it, within the hour skipped
        assert abs(local_later.replace(tzinfo=None) - expected) <= timedelta(hours=1)
    if local.day <= 28:
        assert local_later.day == local.day


@given(moments, st.integers(min_value=1, max_value=23), st.sampled_from(ZONES))
def test_months_later_grows_with_the_months(at: datetime, n: int, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    assert domain.months_later(at, n, zone) < domain.months_later(at, n + 1, zone)
    # Twelve months are a calendar year: the same local date a year on (29 February to the 28th).
    a_year = domain.months_later(at, 12, zone).astimezone(zone)
    local = at.astimezone(zone)
    assert (a_year.year, a_year.month) == (local.year + 1, local.month)


def test_months_later_clamps_the_day_to_the_months_end() -> None:
    utc = ZoneInfo("UTC")
    assert domain.months_later(datetime(2026, 1, 31, 9, tzinfo=UTC), 1, utc) == datetime(
        2026, 2, 28, 9, tzinfo=UTC
    )
    assert domain.months_later(datetime(2028, 1, 31, 9, tzinfo=UTC), 1, utc) == datetime(
        2028, 2, 29, 9, tzinfo=UTC
    )
    assert domain.months_later(datetime(2026, 1, 31, 9, tzinfo=UTC), 2, utc) == datetime(
        2026, 3, 31, 9, tzinfo=UTC
    )
    assert domain.months_later(datetime(2026, 10, 31, 9, tzinfo=UTC), 4, utc) == datetime(
        2027, 2, 28, 9, tzinfo=UTC
    )
    assert domain.months_later(datetime(2026, 11, 15, tzinfo=UTC), 14, utc) == datetime(
        2028, 1, 15, tzinfo=UTC
    )
    assert domain.months_later(datetime(2026, 12, 5, tzinfo=UTC), 24, utc) == datetime(
        2028, 12, 5, tzinfo=UTC
    )


def test_months_later_keeps_the_local_time_across_daylight_saving_in_berlin() -> None:
    # 13:00 CET on 2 March; a month on it is 13:00 CEST, an hour earlier in UTC.
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert domain.months_later(at, 1, BERLIN) == datetime(2026, 4, 2, 11, 0, tzinfo=UTC)
    # And back: 10:00 CEST on 15 October is 10:00 CET on 15 November.
    assert domain.months_later(datetime(2026, 10, 15, 8, tzinfo=UTC), 1, BERLIN) == datetime(
        2026, 11, 15, 9, tzinfo=UTC
    )
    # 23:30 UTC on 31 March is 01:30 on 1 April in Berlin: the month is April's, the end 1 May.
    assert domain.months_later(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), 1, BERLIN) == datetime(
        2026, 4, 30, 23, 30, tzinfo=UTC
    )
    # A result given in Berlin's own terms stays in them.
    local = datetime(2026, 1, 31, 18, 0, tzinfo=BERLIN)
    later = domain.months_later(local, 1, BERLIN)
    assert later.tzinfo is BERLIN and later.replace(tzinfo=None) == datetime(2026, 2, 28, 18, 0)


def test_months_later_counts_auckland_months_not_utc_ones() -> None:
    # 12:00 UTC on 31 March is 01:00 NZDT on 1 April; a month on: 01:00 NZST on 1 May = 13:00 UTC 30 April.
    at = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    assert domain.months_later(at, 1, AUCKLAND) == datetime(2026, 4, 30, 13, 0, tzinfo=UTC)
    # 12:00 UTC on 30 January is 01:00 on 31 January there: clamped to 28 February local, 27 February UTC.
    assert domain.months_later(datetime(2026, 1, 30, 12, 0, tzinfo=UTC), 1, AUCKLAND) == datetime(
        2026, 2, 27, 12, 0, tzinfo=UTC
    )
    # Across New Zealand's new year: 11:00 UTC 31 December 2026 is 00:00 on 1 January 2027 there.
    at = datetime(2026, 12, 31, 11, 0, tzinfo=UTC)
    assert domain.months_later(at, 2, AUCKLAND).astimezone(AUCKLAND).replace(tzinfo=None) == datetime(
        2027, 3, 1, 0, 0
    )


# --- budget_month -----------------------------------------------------------------------------------------


@given(moments, st.sampled_from(ZONES))
def test_budget_month_is_the_local_month(at: datetime, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    local = at.astimezone(zone)
    month = domain.budget_month(at, zone)
    assert month == f"{local.year:04d}-{local.month:02d}"
    assert domain.budget_month(at, zone) <= domain.budget_month(at + timedelta(days=1), zone)
    # The month a gesture ends in is `n` months on from the month it starts in.
    year, m = divmod(local.year * 12 + local.month - 1 + 3, 12)
    assert domain.budget_month(domain.months_later(at, 3, zone), zone) == f"{year:04d}-{m + 1:02d}"


def test_budget_month_in_the_programs_zone() -> None:
    at = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert domain.budget_month(at, ZoneInfo("UTC")) == "2026-03"
    assert domain.budget_month(at, BERLIN) == "2026-04"
    assert domain.budget_month(datetime(2026, 3, 31, 11, 0, tzinfo=UTC), AUCKLAND) == "2026-04"
    assert domain.budget_month(datetime(2026, 3, 31, 10, 59, tzinfo=UTC), AUCKLAND) == "2026-03"
    assert domain.budget_month(datetime(2026, 12, 31, 23, 0, tzinfo=UTC), BERLIN) == "2027-01"
    assert domain.budget_month(datetime(2027, 1, 1, 7, 59, tzinfo=UTC), ZoneInfo("America/Los_Angeles")) == (
        "2026-12"
    )


# --- seconds_between --------------------------------------------------------------------------------------


@given(moments, st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400)))
def test_seconds_between_is_whole_seconds_never_negative(start: datetime, gap: timedelta) -> None:
    seconds = domain.seconds_between(start, start + gap)
    assert isinstance(seconds, int)
    assert seconds == max(0, int(gap.total_seconds()))
    assert seconds >= 0
    if gap >= timedelta(0):
        assert seconds == gap // timedelta(seconds=1)  # whole seconds: a part of one does not count


@given(moments)
def test_seconds_between_is_none_until_it_happened(start: datetime) -> None:
    assert domain.seconds_between(start, None) is None


def test_seconds_between_examples() -> None:
    opened = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert domain.seconds_between(opened, opened) == 0
    assert domain.seconds_between(opened, opened + timedelta(minutes=10)) == 600
    assert domain.seconds_between(opened, opened + timedelta(seconds=1, milliseconds=999)) == 1
    assert domain.seconds_between(opened, opened - timedelta(minutes=5)) == 0  # a skewed clock: 0, not -300
    assert domain.seconds_between(opened, opened.astimezone(BERLIN) + timedelta(hours=1)) == 3600


# --- complaint_summary ------------------------------------------------------------------------------------

names = st.sampled_from((*domain.SUMMARY_PROPERTIES, "title", "order", "rating", "Summary"))
values = (
    st.none()
    | st.integers()
    | st.booleans()
    | st.lists(st.text(max_size=5), max_size=2)
    | st.text(max_size=700)
)


@given(st.dictionaries(names, values, max_size=9))
def test_complaint_summary_is_the_first_text_property(properties: dict[str, Any]) -> None:
    summary = domain.complaint_summary(properties)
    texts = [
        properties[name].strip()
        for name in domain.SUMMARY_PROPERTIES
        if isinstance(properties.get(name), str) and properties[name].strip()
    ]
    assert summary == (texts[0][:500] if texts else "complaint")
    assert 1 <= len(summary) <= 500
    assert summary == summary.lstrip()


def test_complaint_summary_order_of_properties() -> None:
    everything = {
        "subject": "E",
        "text": "D",
        "comment": "C",
        "reason": "B",
        "summary": "A",
    }
    assert domain.SUMMARY_PROPERTIES == ("summary", "reason", "comment", "text", "subject")
    assert domain.complaint_summary(everything) == "A"
    del everything["summary"]
    assert domain.complaint_summary(everything) == "B"
    del everything["reason"]
    assert domain.complaint_summary(everything) == "C"
    del everything["comment"]
    assert domain.complaint_summary(everything) == "D"
    del everything["text"]
    assert domain.complaint_summary(everything) == "E"
    del everything["subject"]
    assert domain.complaint_summary(everything) == "complaint"


def test_complaint_summary_trims_caps_and_skips_what_is_not_text() -> None:
    assert domain.complaint_summary({"reason": "  parcel lost \n"}) == "parcel lost"
    assert domain.complaint_summary({"summary": "   ", "reason": "late"}) == "late"  # blank: the next one
    assert domain.complaint_summary({"summary": "", "comment": "rude"}) == "rude"
    assert (
        domain.complaint_summary({"summary": 42, "reason": ["x"], "comment": {"a": 1}, "text": "ok"}) == "ok"
    )
    assert domain.complaint_summary({"summary": None, "reason": True}) == "complaint"
    assert domain.complaint_summary({"title": "not one of them", "Summary": "case matters"}) == "complaint"
    assert domain.complaint_summary({}) == "complaint"
    long = "x" * 600
    assert domain.complaint_summary({"summary": long}) == "x" * 500
    assert (
        domain.complaint_summary({"summary": "  " + "y" * 500 + "z  "}) == "y" * 500
    )  # trimmed, then capped
    assert domain.complaint_summary({"summary": "ü" * 501}) == "ü" * 500  # characters, not bytes


# --- explanation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "reason", "what", "said"),
    [
        ("Mira", "parcel lost", "500 points", "Recovery by Mira: parcel lost — 500 points"),
        (
            "Jānis",
            "late",
            "code ABC-123 for Free coffee",
            "Recovery by Jānis: late — code ABC-123 for Free coffee",
        ),
        ("Ops", "rude", "Gold until 2026-06-02", "Recovery by Ops: rude — Gold until 2026-06-02"),
    ],
)
def test_explanation(agent: str, reason: str, what: str, said: str) -> None:
    assert domain.explanation(agent, reason, what) == said


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_explanation_says_who_why_and_what(agent: str, reason: str, what: str) -> None:
    said = domain.explanation(agent, reason, what)
    assert said == "Recovery by " + agent + ": " + reason + " — " + what
    assert said.startswith(f"Recovery by {agent}: ") and said.endswith(f" — {what}")
