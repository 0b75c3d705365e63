"""Guardrails: quiet hours defer (never drop), caps suppress, consent and the suppression list win."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from service.messaging.domain import (
    Guardrails,
    QuietHours,
    Recipient,
    decide,
    is_email,
    next_allowed,
    retry_delay,
)

ZONES = [
    ZoneInfo(z)
    for z in (
        "UTC",
        "Europe/London",
        "Europe/Riga",
        "Asia/Kuala_Lumpur",
        "America/New_York",
        "Pacific/Chatham",
    )
]
RAILS = Guardrails(
    QuietHours(time(21), time(8)),
    marketing_cap=3,
    marketing_cap_days=7,
    marketing_min_gap=timedelta(hours=16),
)
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
quiet = st.builds(QuietHours, st.times(), st.times())


def recipient(**changes: object) -> Recipient:
    values: dict[str, object] = {
        "email": "ada@example.com",
        "transactional_consent": True,
        "marketing_consent": True,
        "suppressed": None,
        "timezone": ZoneInfo("Europe/Riga"),
    }
    values.update(changes)
    return Recipient(**values)  # type: ignore[arg-type]


@given(moments, quiet, st.sampled_from(ZONES))
def test_next_allowed_is_the_first_moment_outside_quiet_hours(
    moment: datetime, hours: QuietHours, zone: ZoneInfo
) -> None:
    allowed = next_allowed(moment, hours, zone)
    assert allowed >= moment
    assert allowed - moment <= timedelta(hours=25)  # a DST change can stretch a night by an hour
    if not hours.contains(moment.astimezone(zone).time()):
        assert allowed == moment
    else:
        assert allowed > moment
        # Not deferred past the end: a minute earlier was still quiet (or the moment itself).
        before = allowed - timedelta(minutes=1)
        assert (
            before < moment
            or hours.contains(before.astimezone(zone).time())
            or allowed.astimezone(zone).time() != hours.end
        )


@given(moments, st.lists(moments, max_size=6), st.sampled_from(["transactional", "marketing"]))
def test_marketing_never_goes_above_the_cap_or_inside_the_gap(
    now: datetime, sent: list[datetime], category: str
) -> None:
    recent = [s for s in sent if s <= now]
    decision = decide(category, recipient(), RAILS, recent, now)  # type: ignore[arg-type]
    assert decision.outcome in ("send", "defer", "suppress")
    if category == "transactional":
        assert decision.outcome != "suppress"
    if decision.outcome == "defer":
        assert decision.until is not None and decision.until > now and decision.reason
    if category == "marketing" and decision.outcome != "suppress":
        go = decision.until or now
        assert len([s for s in recent if s > now - timedelta(days=7)]) < 3
        assert all(go >= s + timedelta(hours=16) for s in recent)
        assert not RAILS.quiet_hours.contains(go.astimezone(ZoneInfo("Europe/Riga")).time())  # type: ignore[union-attr]


def test_consent_and_suppression_come_first() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert (
        decide("transactional", recipient(transactional_consent=False), RAILS, [], now).reason
        == "unsubscribed from all emails"
    )
    assert (
        decide("marketing", recipient(marketing_consent=False), RAILS, [], now).reason
        == "no marketing consent"
    )
    assert decide("transactional", recipient(marketing_consent=False), RAILS, [], now).outcome == "send"
    assert decide("transactional", recipient(email=None), RAILS, [], now).reason == "no email address"
    assert decide("transactional", recipient(email="not-an-address"), RAILS, [], now).outcome == "suppress"
    bounced = decide("transactional", recipient(suppressed="hard_bounce"), RAILS, [], now)
    assert bounced.outcome == "suppress" and "hard_bounce" in (bounced.reason or "")


def test_quiet_hours_defer_to_the_morning_in_the_customers_zone() -> None:
    # 20:30 UTC is 22:30 in Riga (winter, UTC+2): quiet until 08:00 Riga = 06:00 UTC next day.
    decision = decide("marketing", recipient(), RAILS, [], datetime(2026, 3, 2, 20, 30, tzinfo=UTC))
    assert decision.outcome == "defer" and decision.until == datetime(2026, 3, 3, 6, tzinfo=UTC)
    assert decision.reason == "quiet hours in Europe/Riga"
    # The transactional thank-you may skip quiet hours (the customer has just ordered).
    assert (
        decide(
            "transactional",
            recipient(),
            RAILS,
            [],
            datetime(2026, 3, 2, 20, 30, tzinfo=UTC),
            respect_quiet_hours=False,
        ).outcome
        == "send"
    )


def test_addresses_and_retries() -> None:
    assert is_email("a.b+c@shop.example.co.uk")
    assert is_email("a" * 64 + "@shop.example")
    for bad in (
        "",
        "a@",
        "@b.c",
        "a b@c.d",
        "a@b",
        "a..b@c.d",
        "<a@b.c>",
        "a@-b.c",
        "a" * 65 + "@shop.example",
    ):
        assert not is_email(bad), bad
    assert retry_delay(1) == timedelta(minutes=1) and retry_delay(2) == timedelta(minutes=2)
    assert retry_delay(30) == timedelta(hours=6)
