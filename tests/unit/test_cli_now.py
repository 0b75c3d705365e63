"""The one parser behind every `--now` of the CLI: RFC 3339 with a zone, or relative to the real now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.cli import parse_now

REAL_NOW = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("+5d", REAL_NOW + timedelta(days=5)),
        ("+2h", REAL_NOW + timedelta(hours=2)),
        ("+30m", REAL_NOW + timedelta(minutes=30)),
        ("+1d12h", REAL_NOW + timedelta(days=1, hours=12)),
        ("+2w", REAL_NOW + timedelta(weeks=2)),
        ("-3d", REAL_NOW - timedelta(days=3)),
        (" +90s ", REAL_NOW + timedelta(seconds=90)),
        ("2027-01-15T09:00:00Z", datetime(2027, 1, 15, 9, tzinfo=UTC)),
        ("2027-01-15T09:00:00+01:00", datetime(2027, 1, 15, 8, tzinfo=UTC)),
        ("2027-01-15t09:00:00.5z", datetime(2027, 1, 15, 9, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_accepted(typed: str, expected: datetime) -> None:
    moment = parse_now(typed, REAL_NOW)
    assert moment == expected and moment.tzinfo is UTC


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("2027-01-15T09:00:00", "time zone"),
        ("2027-01-15", "time zone"),
        ("2027-13-15T09:00:00Z", "month must be in 1..12"),
        ("+5", "not a time"),
        ("5d", "not a time"),
        ("+5y", "not a time"),
        ("+999999999d", "from 1970-01-01 to 2200-01-01"),
        ("2300-01-01T00:00:00Z", "from 1970-01-01 to 2200-01-01"),
        ("0001-01-01T00:00:00+01:00", "from 1970-01-01 to 2200-01-01"),
    ],
)
def test_refused(typed: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_now(typed, REAL_NOW)
