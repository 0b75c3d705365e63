"""Tier decisions: qualification, protection, warnings and downgrades, as properties over generated tier
sets, holdings and days (no silent downgrade, never down while qualifying, one level at a time)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.tiers import domain
from service.tiers.domain import Holding, MetricKey, Tier

ZONE = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
SPEND = MetricKey("spend", "rolling_months", 12)


def tier(rank: int, threshold: int, **kw: object) -> Tier:
    fields: dict[str, object] = {
        "id": UUID(int=rank + 1),
        "key": f"t{rank}",
        "name": f"T{rank}",
        "rank": rank,
        "metric": "spend",
        "threshold": threshold,
        "window": "rolling_months",
        "months": 12,
    }
    fields.update(kw)
    return Tier(**fields)  # type: ignore[arg-type]


LADDER = [tier(1, 100), tier(2, 500), tier(3, 2000)]

ladders = st.lists(st.integers(1, 10_000), min_size=1, max_size=5, unique=True).map(
    lambda thresholds: [tier(i + 1, t) for i, t in enumerate(sorted(thresholds))]
)


def test_add_months_clamps_to_the_months_end() -> None:
    assert domain.add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert domain.add_months(datetime(2026, 3, 31, tzinfo=UTC), -1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert domain.add_months(datetime(2026, 11, 15, tzinfo=UTC), 14) == datetime(2028, 1, 15, tzinfo=UTC)


def test_windows_and_retention() -> None:
    year = tier(1, 100, window="calendar_year", months=0)
    assert domain.window_start(year.metric_key, NOW, ZONE) == datetime(2026, 1, 1, tzinfo=ZONE)
    assert domain.period_end(year, NOW, ZONE) == datetime(2027, 1, 1, tzinfo=ZONE)
    # Qualified in 2026: kept through 2027.
    assert domain.retention_end(year, NOW, ZONE) == datetime(2028, 1, 1, tzinfo=ZONE)
    assert domain.retention_end(LADDER[0], NOW, ZONE) == datetime(2027, 6, 15, 10, tzinfo=UTC)
    assert domain.retention_end(replace(LADDER[0], retain_next_window=False), NOW, ZONE) == NOW
    assert domain.window_start(MetricKey("orders", "lifetime", 0), NOW, ZONE) is None


@given(ladders, st.lists(st.integers(0, 20_000), min_size=2, max_size=2))
def test_more_of_the_metric_never_qualifies_lower(tiers: list[Tier], values: list[int]) -> None:
    low, high = sorted(values)
    a = domain.qualified_tier(tiers, {SPEND: low})
    b = domain.qualified_tier(tiers, {SPEND: high})
    assert (a.rank if a else 0) <= (b.rank if b else 0)
    if b is not None:
        assert high >= b.threshold
        assert all(high < t.threshold for t in tiers if t.rank > b.rank)


def test_overlaps() -> None:
    assert domain.overlaps(LADDER) is None
    clash = domain.overlaps([*LADDER, tier(4, 1500)])
    assert clash is not None and clash.field == "threshold"
    same_rank = domain.overlaps([tier(1, 100), replace(tier(1, 300), id=UUID(int=99), key="x")])
    assert same_rank is not None and same_rank.field == "rank"
    # Other metrics are not compared.
    assert domain.overlaps([*LADDER, tier(4, 5, metric="orders")]) is None


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[Tier], Holding, Tier | None, datetime | None, datetime]:
    tiers = draw(ladders)
    tiers = [
        replace(
            t,
            grace_days=draw(st.integers(0, 60)),
            warning_days=draw(st.integers(1, 60)),
            retain_next_window=draw(st.booleans()),
            downgrade_policy=draw(st.sampled_from(["one_level", "qualified"])),
        )
        for t in tiers
    ]
    held = draw(st.none() | st.sampled_from(tiers))
    source = draw(st.sampled_from(["earned", "manual"]))
    offset = st.integers(-800, 800).map(lambda d: NOW + timedelta(days=d))
    holding = Holding(
        tier_id=held.id if held else None,
        source=source,
        since=NOW - timedelta(days=draw(st.integers(0, 900))),
        manual_until=draw(st.none() | offset) if source == "manual" else None,
        warned_at=draw(st.none() | st.integers(0, 400).map(lambda d: NOW - timedelta(days=d))),
    )
    qualified = draw(st.none() | st.sampled_from(tiers))
    last = draw(st.none() | st.integers(0, 900).map(lambda d: NOW - timedelta(days=d)))
    return tiers, holding, qualified, last, NOW


@given(situations())
def test_decisions_are_never_silent_nor_early(
    case: tuple[list[Tier], Holding, Tier | None, datetime | None, datetime],
) -> None:
    tiers, holding, qualified, last, now = case
    current = next((t for t in tiers if t.id == holding.tier_id), None)
    decision = domain.decide(tiers, holding, qualified, last, now, ZONE)
    if decision.kind == "upgrade":
        assert decision.tier is not None and decision.tier == qualified
        assert current is None or decision.tier.rank > current.rank
    if decision.kind == "downgrade":
        assert current is not None and holding.warned_at is not None
        assert now >= holding.warned_at + timedelta(days=current.warning_days)
        assert qualified is None or qualified.rank < current.rank
        assert decision.tier is None or decision.tier.rank < current.rank
        if current.downgrade_policy == "one_level":
            below = [t for t in tiers if t.rank < current.rank]
            assert decision.tier == (max(below, key=lambda t: t.rank) if below else None)
        else:
            assert decision.tier == qualified
        if holding.source == "manual":
            assert holding.manual_until is not None and now >= holding.manual_until
    if decision.kind == "warn":
        assert current is not None and holding.warned_at is None
        assert decision.downgrade_at is not None
        assert decision.downgrade_at >= now + timedelta(days=current.warning_days)
    if decision.kind == "withdraw_warning":
        assert holding.warned_at is not None
    if qualified is not None and current is not None and qualified.rank >= current.rank:
        assert decision.kind in ("none", "withdraw_warning", "upgrade")


@settings(max_examples=60)
@given(ladders, st.integers(0, 3), st.lists(st.integers(1, 40), min_size=1, max_size=40))
def test_a_lapsed_customer_is_warned_before_every_step_down(
    tiers: list[Tier], start: int, gaps: list[int]
) -> None:
    """Run the re-evaluation on a customer who stopped buying, day after day: every downgrade has a
    warning at least `warning_days` before it, and each one goes down a single level."""
    held = tiers[min(start, len(tiers) - 1)]
    holding = Holding(tier_id=held.id, since=NOW)
    now = NOW
    warned_on: dict[UUID, datetime] = {}
    for gap in gaps:
        now += timedelta(days=gap)
        decision = domain.decide(tiers, holding, None, NOW, now, ZONE)
        current = next(t for t in tiers if t.id == holding.tier_id) if holding.tier_id else None
        if decision.kind == "warn":
            assert current is not None
            warned_on[current.id] = now
            holding = replace(holding, warned_at=now)
        elif decision.kind == "downgrade":
            assert current is not None and current.id in warned_on
            assert now - warned_on[current.id] >= timedelta(days=current.warning_days)
            below = [t for t in tiers if t.rank < current.rank]
            assert decision.tier == (max(below, key=lambda t: t.rank) if below else None)
            holding = Holding(tier_id=decision.tier.id if decision.tier else None, since=now)
        else:
            assert decision.kind == "none"


@given(
    ladders,
    st.integers(0, 20_000),
    st.integers(0, 5_000),
    st.integers(0, 20_000),
)
def test_an_order_is_spared_the_metrics_query_only_when_no_tier_is_in_reach(
    tiers: list[Tier], lifetime: int, order: int, window: int
) -> None:
    """The bound must never hide an upgrade: whenever the window's spend (at most the lifetime spend plus
    this order) reaches a tier, the query runs."""
    from service.tiers.service import out_of_reach

    window = min(window, lifetime + order)
    spared = out_of_reach(tiers, {"lifetime_spend": lifetime, "order_count": 0}, order, 1)
    if spared:
        assert domain.qualified_tier(tiers, {SPEND: window}) is None
    assert not out_of_reach([tier(1, 10, metric="points")], {"lifetime_spend": 0, "order_count": 0}, 0, 0)
    assert not out_of_reach(tiers, {}, 0, 0)  # no order stats read: always ask
