"""Properties of the pure gift decisions (service/gifts/domain.py): the same inputs always decide the same,
hold-out membership is a function of (key, rule id, version, customer) alone, shares pass monotonically and
in the right proportion, a budget never overspends, the cooldown looks both ways, the nth order hits
exactly its multiples, budget periods by the calendar of the program's zone, and the effect's interval."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.gifts import domain

KEY = bytes.fromhex("5f1e" * 16)
RULE_ID = UUID("6f1c1c1e-0000-4000-8000-000000000001")
START = datetime(2026, 1, 1, tzinfo=UTC)
ZONES = ("UTC", "Europe/Riga", "America/Los_Angeles", "Pacific/Kiritimati", "Asia/Kathmandu")

keys = st.binary(min_size=1, max_size=64)
rule_ids = st.uuids()
versions = st.integers(min_value=1, max_value=1000)
customers = st.text(min_size=1, max_size=40)
shares = st.decimals(min_value=0, max_value=1, places=6)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30), timezones=st.just(UTC)
)
gaps = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000))
triggers = st.sampled_from(sorted(domain.ORDER_TRIGGERS | domain.SWEEP_TRIGGERS | domain.EVENT_TRIGGERS))


@st.composite
def rules(draw: st.DrawFn) -> domain.Rule:
    trigger = draw(triggers)
    return domain.Rule(
        id=draw(rule_ids),
        version=draw(versions),
        name="Surprise",
        priority=draw(st.integers(-1000, 1000)),
        trigger=trigger,
        n=draw(st.integers(1, 20)),
        repeat=draw(st.booleans()),
        min_total=(draw(st.integers(0, 20_000)), draw(st.sampled_from(("EUR", "USD")))),
        days_away=draw(st.integers(1, 400)),
        share=draw(shares),
        tiers=frozenset(draw(st.lists(st.sampled_from(("silver", "gold")), max_size=2))),
        min_orders=draw(st.integers(0, 5)),
        no_refund_within_days=draw(st.none() | st.integers(0, 100)),
        probability=draw(shares.filter(lambda s: s > 0)),
        holdout=draw(shares.filter(lambda s: s < 1)),
        announce=draw(st.sampled_from(("parcel", "message"))),
        cost=draw(st.integers(0, 10_000)),
    )


@st.composite
def occasions(draw: st.DrawFn) -> domain.Occasion:
    at = draw(moments)
    trigger = draw(st.sampled_from(("order", *sorted(domain.SWEEP_TRIGGERS | domain.EVENT_TRIGGERS))))
    last = draw(st.none() | gaps.map(lambda gap: at - gap))
    return domain.Occasion(
        trigger=trigger,
        key=draw(st.sampled_from(("order:o-", "refund:", "birthday:"))) + draw(st.text(max_size=12)),
        at=at,
        order_count=draw(st.integers(0, 50)),
        last_order_at=last,
        total=(draw(st.integers(0, 30_000)), draw(st.sampled_from(("EUR", "USD")))),
        tier=draw(st.none() | st.sampled_from(("silver", "gold"))),
        upgraded_at=draw(st.none() | gaps.map(lambda gap: at - gap)),
        marketing_consent=draw(st.booleans()),
    )


# --- decisions -------------------------------------------------------------------------------------------


@given(keys, rules(), occasions(), customers, st.none() | moments, st.integers(0, 400), st.none() | moments)
def test_the_same_inputs_always_get_the_same_decision(
    key: bytes,
    rule: domain.Rule,
    occasion: domain.Occasion,
    customer: str,
    last_gift_at: datetime | None,
    cooldown_days: int,
    last_refund_at: datetime | None,
) -> None:
    def decision() -> domain.Decision:
        # Fresh copies: nothing but the values may matter (no identity, no state kept between calls).
        return domain.decide(
            bytes(key),
            replace(rule),
            replace(occasion),
            str(customer),
            last_gift_at=last_gift_at,
            cooldown_days=cooldown_days,
            last_refund_at=last_refund_at,
        )

    first = decision()
    assert decision() == first
    if first.outcome is not None:  # a decision that gives or holds out names its occasion
        assert first.occasion is not None and first.reason == first.outcome


@given(keys, rules(), rules(), customers)
def test_holdout_membership_depends_only_on_key_rule_version_and_customer(
    key: bytes, rule: domain.Rule, other: domain.Rule, customer: str
) -> None:
    # Everything else about the rule differs; id, version and share are the same.
    same = replace(other, id=rule.id, version=rule.version, holdout=rule.holdout)
    assert domain.in_holdout(key, same, customer) == domain.in_holdout(key, rule, customer)


@settings(max_examples=50)
@given(keys, rules(), customers, st.lists(occasions(), min_size=1, max_size=30))
def test_a_customer_is_in_one_group_over_any_occasions(
    key: bytes, rule: domain.Rule, customer: str, seen: list[domain.Occasion]
) -> None:
    rule = replace(rule, trigger="random_share", share=Decimal(1), probability=Decimal(1), tiers=frozenset())
    rule = replace(rule, min_orders=0, announce="parcel", no_refund_within_days=None)
    outcomes = {
        domain.decide(key, rule, o, customer, last_gift_at=None, cooldown_days=0).outcome
        for o in seen
        if o.trigger == "order"
    }
    expected = "held_out" if domain.in_holdout(key, rule, customer) else "granted"
    assert outcomes <= {expected}


def test_a_new_version_draws_the_holdout_anew() -> None:
    """Membership is per version: over 2,000 customers, versions 1 and 2 disagree on some."""
    v1 = domain.Rule(id=RULE_ID, version=1, name="", priority=0, trigger="nth_order", holdout=Decimal("0.5"))
    v2 = replace(v1, version=2)
    names = [f"c-{i}" for i in range(2000)]
    disagree = sum(domain.in_holdout(KEY, v1, n) != domain.in_holdout(KEY, v2, n) for n in names)
    assert 800 < disagree < 1200  # independent draws: about half


# --- shares --------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=domain.ROLL_SPACE - 1))
def test_share_zero_never_passes_and_one_always(rolled: int) -> None:
    assert not domain.passes(rolled, Decimal(0))
    assert domain.passes(rolled, Decimal(1))


@given(st.integers(min_value=0, max_value=domain.ROLL_SPACE - 1), shares, shares)
def test_passing_is_monotone_in_the_share(rolled: int, a: Decimal, b: Decimal) -> None:
    low, high = min(a, b), max(a, b)
    if domain.passes(rolled, low):
        assert domain.passes(rolled, high)


@given(keys, st.text(max_size=30))
def test_a_roll_is_64_bits(key: bytes, part: str) -> None:
    assert 0 <= domain.roll(key, "chance", part) < domain.ROLL_SPACE


@pytest.mark.parametrize("holdout", ["0.01", "0.1", "0.25", "0.5", "0.9"])
@pytest.mark.parametrize("key", [KEY, b"another program's key", bytes(32)], ids=["key", "another", "zeros"])
def test_the_holdout_share_over_20000_customers_is_the_setting(holdout: str, key: bytes) -> None:
    rule = domain.Rule(
        id=RULE_ID, version=3, name="", priority=0, trigger="nth_order", holdout=Decimal(holdout)
    )
    held = sum(domain.in_holdout(key, rule, f"customer-{i}") for i in range(20_000))
    assert abs(held / 20_000 - float(holdout)) < 0.01


def test_the_chance_is_per_occasion_and_its_share() -> None:
    rule = domain.Rule(
        id=RULE_ID, version=1, name="", priority=0, trigger="nth_order", probability=Decimal("0.3")
    )
    passed = sum(domain.by_chance(KEY, rule, f"c-{i}", f"order:o-{i}") for i in range(20_000))
    assert abs(passed / 20_000 - 0.3) < 0.01


# --- budgets and cooldowns -------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.tuples(st.sampled_from(("2026-01", "2026-02", "total")), st.integers(0, 3_000)), max_size=60),
)
def test_a_budget_never_exceeds_its_limit(limit: int, spends: list[tuple[str, int]]) -> None:
    budget = domain.Budget(limit)
    accepted: dict[str, int] = {}
    for period, cost in spends:
        before = budget.used.get(period, 0)
        ok = budget.spend(period, cost)
        assert ok == (before + cost <= limit)  # refused only when it would not fit
        if ok:
            accepted[period] = accepted.get(period, 0) + cost
        assert all(used <= limit for used in budget.used.values())
    assert {p: u for p, u in budget.used.items() if u} == {p: u for p, u in accepted.items() if u}


@given(st.none() | moments, moments, st.integers(-5, 400))
def test_the_cooldown_looks_both_ways(last: datetime | None, at: datetime, days: int) -> None:
    cooling = domain.cooling_down(last, at, days)
    if last is not None:
        assert cooling == domain.cooling_down(at, last, days)
        assert cooling == (days > 0 and abs(at - last) < timedelta(days=days))
    else:
        assert not cooling


def test_the_cooldown_edges() -> None:
    at = START + timedelta(days=100)
    assert domain.cooling_down(at - timedelta(days=90) + timedelta(microseconds=1), at, 90)
    assert not domain.cooling_down(at - timedelta(days=90), at, 90)  # exactly 90 days: over
    assert domain.cooling_down(at + timedelta(days=89), at, 90)  # a gift recorded for later binds too
    assert not domain.cooling_down(at, at, 0)


# --- triggers -----------------------------------------------------------------------------------------


@given(st.integers(1, 50), st.booleans(), st.integers(0, 500))
def test_the_nth_order_hits_exactly_its_multiples(n: int, repeat: bool, before: int) -> None:
    rule = domain.Rule(id=RULE_ID, version=1, name="", priority=0, trigger="nth_order", n=n, repeat=repeat)
    occasion = domain.Occasion(trigger="order", key="order:o-1", at=START, order_count=before)
    count = before + 1
    hit = count % n == 0 if repeat else count == n
    assert domain.triggered(KEY, rule, occasion) == (f"orders:{count}" if hit else None)


def test_every_tenth_order_over_a_customer_history() -> None:
    rule = domain.Rule(id=RULE_ID, version=1, name="", priority=0, trigger="nth_order", n=10, repeat=True)
    hits = [
        c + 1
        for c in range(100)
        if domain.triggered(
            KEY, rule, domain.Occasion(trigger="order", key=f"order:{c}", at=START, order_count=c)
        )
    ]
    assert hits == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


@given(rules(), occasions())
def test_an_occasion_of_another_kind_never_triggers(rule: domain.Rule, occasion: domain.Occasion) -> None:
    if not domain.may_trigger(rule, occasion):
        assert domain.triggered(KEY, rule, occasion) is None


# --- budget periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "week"),
    [
        (date(2026, 12, 28), "2026-W53"),
        (date(2027, 1, 3), "2026-W53"),  # a Sunday: still the last week of 2026
        (date(2027, 1, 4), "2027-W01"),
        (date(2024, 12, 30), "2025-W01"),  # a Monday: the first week of 2025
        (date(2025, 12, 28), "2025-W52"),
        (date(2021, 1, 3), "2020-W53"),
    ],
)
def test_iso_weeks_at_year_ends(local: date, week: str) -> None:
    at = datetime(local.year, local.month, local.day, 12, tzinfo=UTC)
    assert domain.budget_period("week", at, ZoneInfo("UTC")) == week


def test_periods_are_the_program_zones_calendar() -> None:
    at = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)  # 00:30 on 1 January 2027 in Riga
    riga, utc = ZoneInfo("Europe/Riga"), ZoneInfo("UTC")
    assert [
        domain.budget_period(p, at, riga) for p in ("day", "week", "month", "quarter", "year", "total")
    ] == [
        "2027-01-01",
        "2026-W53",
        "2027-01",
        "2027-Q1",
        "2027",
        "total",
    ]
    assert [domain.budget_period(p, at, utc) for p in ("day", "month", "quarter", "year")] == [
        "2026-12-31",
        "2026-12",
        "2026-Q4",
        "2026",
    ]


@given(moments, st.sampled_from(ZONES))
def test_period_keys_follow_the_local_date(at: datetime, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    local = at.astimezone(zone).date()
    year, week, _ = local.isocalendar()
    assert domain.budget_period("day", at, zone) == local.isoformat()
    assert domain.budget_period("week", at, zone) == f"{year:04d}-W{week:02d}"
    assert domain.budget_period("month", at, zone) == f"{local.year:04d}-{local.month:02d}"
    assert domain.budget_period("quarter", at, zone) == f"{local.year:04d}-Q{(local.month + 2) // 3}"
    assert domain.budget_period("year", at, zone) == f"{local.year:04d}"
    # Keys of one kind sort as their periods do (a week's year is its ISO year).
    later = at + timedelta(days=1)
    for period in ("day", "week", "month", "quarter", "year"):
        assert domain.budget_period(period, at, zone) <= domain.budget_period(period, later, zone)


def test_quarters() -> None:
    zone = ZoneInfo("UTC")
    quarters = [
        domain.budget_period("quarter", datetime(2026, m, 15, tzinfo=UTC), zone) for m in range(1, 13)
    ]
    assert quarters == ["2026-Q1"] * 3 + ["2026-Q2"] * 3 + ["2026-Q3"] * 3 + ["2026-Q4"] * 3


# --- the effect -------------------------------------------------------------------------------------------


@st.composite
def groups(draw: st.DrawFn) -> tuple[int, int]:
    customers = draw(st.integers(0, 100_000))
    return draw(st.integers(0, customers)), customers


@given(groups(), groups())
def test_the_interval_contains_the_difference_and_needs_both_groups(
    recipients: tuple[int, int], holdout: tuple[int, int]
) -> None:
    difference, interval = domain.difference_ci(recipients, holdout)
    if not recipients[1] or not holdout[1]:
        assert (difference, interval) == (None, None)
        return
    assert difference is not None and interval is not None
    assert math.isclose(difference, recipients[0] / recipients[1] - holdout[0] / holdout[1], abs_tol=1e-12)
    low, high = interval
    assert -1 <= low < difference < high <= 1 or (low <= difference <= high and low < high)
    assert high - low > 0  # a rate of 0 or 1 still leaves room: a tiny group never looks certain


def test_an_extreme_small_group_is_not_certain() -> None:
    # 3 of 3 recipients against 0 of 3: the normal approximation would give the interval [1, 1].
    difference, interval = domain.difference_ci((3, 3), (0, 3))
    assert difference == 1 and interval is not None
    assert interval[0] < 0.5 and interval[1] == 1


def test_the_interval_narrows_as_the_groups_grow() -> None:
    widths = []
    for n in (100, 1_000, 10_000):
        _, interval = domain.difference_ci((4 * n // 10, n), (3 * n // 10, n))
        assert interval is not None
        widths.append(interval[1] - interval[0])
    assert widths[0] > widths[1] > widths[2]
    assert math.isclose(widths[0] / widths[1], math.sqrt(10), rel_tol=0.05)  # about 1 / sqrt(n)


def test_the_95_percent_interval_covers_the_true_difference_95_percent_of_the_time() -> None:
    """Calibration: 2,000 pairs of samples of a true +0.10 (0.40 against 0.30, 500 customers each)."""
    rng = random.Random(19)
    covered = 0
    trials = 2_000
    for _ in range(trials):
        k1 = sum(rng.random() < 0.40 for _ in range(500))
        k2 = sum(rng.random() < 0.30 for _ in range(500))
        _, interval = domain.difference_ci((k1, 500), (k2, 500))
        assert interval is not None
        covered += interval[0] < 0.10 < interval[1]
    assert 0.93 < covered / trials < 0.97


def test_rates() -> None:
    assert domain.rate(3, 10) == 0.3
    assert domain.rate(0, 0) is None
