"""Properties of the pure ledger planning functions: spend (FIFO), reversal order, maturing, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.ledger.domain import (
    Draw,
    ExpiryChange,
    Lot,
    LotState,
    NotEnoughPoints,
    debt_settlement,
    expiring,
    lapsed,
    lot_dates,
    maturing,
    plan_give_back,
    plan_reversal,
    plan_spend,
    spending_order,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORDERS = [UUID(int=1000 + i) for i in range(3)]


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


_LOT_ROW = st.tuples(
    st.sampled_from(["pending", "available", "expired"]),
    st.integers(min_value=1, max_value=500),  # points
    st.integers(min_value=0, max_value=500),  # remaining, folded into 0..points
    st.integers(min_value=0, max_value=20),  # created (day)
    st.integers(min_value=0, max_value=20),  # available, days after created
    st.none() | st.integers(min_value=0, max_value=20),  # expires, days after available
    st.none() | st.sampled_from(ORDERS),
)


def _lots(rows: list[tuple[LotState, int, int, int, int, int | None, UUID | None]]) -> list[Lot]:
    lots = []
    for i, (state, points, remaining, created, wait, expires, order_id) in enumerate(rows):
        available = created + wait
        lots.append(
            Lot(
                id=UUID(int=i + 1),
                points=points,
                remaining=0 if state == "expired" else remaining % (points + 1),
                state=state,
                available_at=day(available),
                expires_at=None if expires is None else day(available + expires),
                created_at=day(created),
                order_id=order_id,
            )
        )
    return lots


def lot_lists(max_size: int = 12) -> st.SearchStrategy[list[Lot]]:
    """Lots as the service loads them (any state, any dates), with distinct ids."""
    return st.lists(_LOT_ROW, max_size=max_size).map(_lots)


def expiry_rank(lot: Lot) -> tuple[int, datetime]:
    """Independent of the implementation: a lot that never expires comes after every lot that does."""
    return (1, T0) if lot.expires_at is None else (0, lot.expires_at)


def apply_draws(lots: list[Lot], draws: tuple[Draw, ...]) -> dict[UUID, int]:
    left = {lot.id: lot.remaining for lot in lots}
    for d in draws:
        left[d.lot_id] -= d.points
    return left


def available_points(lots: list[Lot]) -> int:
    return sum(lot.remaining for lot in lots if lot.state == "available")


@settings(max_examples=200)
@given(lots=lot_lists(), points=st.integers(min_value=1, max_value=3000))
def test_plan_spend_fifo_by_expiry_and_never_overdraws(lots: list[Lot], points: int) -> None:
    available = available_points(lots)
    if available < points:
        with pytest.raises(NotEnoughPoints) as info:
            plan_spend(lots, points)
        assert info.value.requested == points
        assert info.value.available == available
        return
    draws = plan_spend(lots, points)
    by_id = {lot.id: lot for lot in lots}
    assert sum(d.points for d in draws) == points
    assert len({d.lot_id for d in draws}) == len(draws), "a lot is drawn at most once"
    for d in draws:
        lot = by_id[d.lot_id]
        assert d.points > 0
        assert lot.state == "available", "never from pending or expired lots"
        assert d.state == lot.state
        assert d.points <= lot.remaining
    left = apply_draws(lots, draws)
    drawn_ids = {d.lot_id for d in draws}
    for b in drawn_ids:
        for a in lots:
            if a.state == "available" and left[a.id] > 0 and a.id != b:
                assert not expiry_rank(a) < expiry_rank(by_id[b]), (
                    f"drew from {by_id[b]} while earlier-expiring {a} kept {left[a.id]}"
                )
                if expiry_rank(a) == expiry_rank(by_id[b]):
                    assert not a.created_at < by_id[b].created_at, "same expiry: oldest first"
    # Only the last lot drawn may be left partly full.
    for d in draws[:-1]:
        assert left[d.lot_id] == 0


@given(lots=lot_lists(max_size=3), points=st.integers(max_value=0, min_value=-5))
def test_plan_spend_rejects_non_positive(lots: list[Lot], points: int) -> None:
    with pytest.raises(ValueError):
        plan_spend(lots, points)


@settings(max_examples=200)
@given(lots=lot_lists())
def test_spending_order_is_permutation_invariant(lots: list[Lot]) -> None:
    ordered = spending_order(lots)
    assert ordered == spending_order(list(reversed(lots)))
    assert all(lot.state == "available" and lot.remaining > 0 for lot in ordered)
    assert [expiry_rank(lot) for lot in ordered] == sorted(expiry_rank(lot) for lot in ordered)


def reversal_group(lot: Lot, order_id: UUID) -> int:
    own = lot.order_id == order_id
    if own and lot.state == "pending":
        return 0
    if own:
        return 1
    if lot.state == "available":
        return 2
    return 3


@settings(max_examples=200)
@given(
    lots=lot_lists(),
    order_id=st.sampled_from(ORDERS),
    points=st.integers(min_value=0, max_value=3000),
)
def test_plan_reversal_order_and_debt(lots: list[Lot], order_id: UUID, points: int) -> None:
    plan = plan_reversal(lots, order_id, points)
    by_id = {lot.id: lot for lot in lots}
    open_points = sum(lot.remaining for lot in lots if lot.state != "expired")
    assert plan.drawn + plan.debt == points
    assert plan.debt >= 0
    assert plan.drawn == min(points, open_points)
    assert (plan.debt > 0) == (points > open_points), "a debt only when nothing at all is left"
    assert len({d.lot_id for d in plan.draws}) == len(plan.draws)
    for d in plan.draws:
        lot = by_id[d.lot_id]
        assert 0 < d.points <= lot.remaining
        assert lot.state != "expired"
        assert d.state == lot.state
    # Groups in order: own pending, own available, other available (FIFO), other pending.
    groups = [reversal_group(by_id[d.lot_id], order_id) for d in plan.draws]
    assert groups == sorted(groups)
    left = apply_draws(lots, plan.draws)
    for d in plan.draws:
        group = reversal_group(by_id[d.lot_id], order_id)
        for lot in lots:
            if lot.state != "expired" and left[lot.id] > 0:
                assert reversal_group(lot, order_id) >= group, "an earlier group still had points"
    # Within the other-available group: FIFO by expiry, as spending would.
    others = [by_id[d.lot_id] for d in plan.draws if reversal_group(by_id[d.lot_id], order_id) == 2]
    assert [expiry_rank(lot) for lot in others] == sorted(expiry_rank(lot) for lot in others)


def test_plan_reversal_rejects_negative() -> None:
    with pytest.raises(ValueError):
        plan_reversal([], ORDERS[0], -1)


@given(debt=st.integers(min_value=-5, max_value=1000), credited=st.integers(min_value=-5, max_value=1000))
def test_debt_settlement(debt: int, credited: int) -> None:
    settled = debt_settlement(debt, credited)
    assert settled >= 0
    assert settled <= max(debt, 0)
    assert settled <= max(credited, 0)
    if debt > 0 and credited > 0:
        assert settled == min(debt, credited)
    else:
        assert settled == 0


@settings(max_examples=200)
@given(lots=lot_lists(), now=st.integers(min_value=0, max_value=70))
def test_maturing_and_expiring(lots: list[Lot], now: int) -> None:
    moment = day(now)
    due = maturing(lots, moment)
    assert due == [lot for lot in lots if lot.state == "pending" and lot.available_at <= moment]
    gone = expiring(lots, moment)
    for lot in lots:
        expected = (
            lot.state != "expired"
            and lot.remaining > 0
            and lot.expires_at is not None
            and lot.expires_at <= moment
        )
        assert (lot in gone) == expected
    # Nothing matures or expires before its time, and a sweep at an earlier time finds a subset.
    earlier = day(max(now - 3, 0))
    assert {lot.id for lot in maturing(lots, earlier)} <= {lot.id for lot in due}
    assert {lot.id for lot in expiring(lots, earlier)} <= {lot.id for lot in gone}


@given(
    placed=st.integers(min_value=-60, max_value=1),
    pending_days=st.integers(min_value=0, max_value=60),
    expire_after=st.none() | st.integers(min_value=0, max_value=800),
)
def test_lot_dates(placed: int, pending_days: int, expire_after: int | None) -> None:
    now = day(0)
    placed_at = day(placed)
    available_at, expires_at = lot_dates(placed_at, now, pending_days, expire_after)
    assert available_at >= now
    if pending_days:
        assert available_at == max(placed_at + timedelta(days=pending_days), now)
    else:
        assert available_at == now
    if expire_after is None:
        assert expires_at is None
    else:
        assert expires_at == available_at + timedelta(days=expire_after)


def test_lot_dates_examples() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    # Placed 10 days ago with a 14-day return window: available in 4 days, expires a year after that.
    placed = now - timedelta(days=10)
    assert lot_dates(placed, now, 14, 365) == (now + timedelta(days=4), now + timedelta(days=369))
    # Return window already over: available now.
    assert lot_dates(now - timedelta(days=30), now, 14, None) == (now, None)
    assert lot_dates(now, now, 0, 30) == (now, now + timedelta(days=30))


def test_plan_spend_example() -> None:
    soon = Lot(UUID(int=1), 100, 60, "available", day(0), day(10), day(0))
    later = Lot(UUID(int=2), 100, 100, "available", day(0), day(20), day(0))
    never = Lot(UUID(int=3), 50, 50, "available", day(0), None, day(-5))
    pending = Lot(UUID(int=4), 500, 500, "pending", day(30), day(40), day(0))
    gone = Lot(UUID(int=5), 500, 0, "expired", day(0), day(1), day(0))
    lots = [never, pending, later, gone, soon]
    assert plan_spend(lots, 70) == (Draw(soon.id, 60, "available"), Draw(later.id, 10, "available"))
    assert plan_spend(lots, 210) == (
        Draw(soon.id, 60, "available"),
        Draw(later.id, 100, "available"),
        Draw(never.id, 50, "available"),
    )
    with pytest.raises(NotEnoughPoints) as info:
        plan_spend(lots, 211)
    assert (info.value.requested, info.value.available) == (211, 210)


def test_plan_reversal_example() -> None:
    order = ORDERS[0]
    own_pending = Lot(UUID(int=1), 30, 30, "pending", day(5), None, day(0), order)
    own_available = Lot(UUID(int=2), 40, 40, "available", day(0), None, day(0), order)
    other_available = Lot(UUID(int=3), 20, 20, "available", day(0), day(9), day(0))
    other_pending = Lot(UUID(int=4), 10, 10, "pending", day(3), None, day(0))
    lots = [other_pending, other_available, own_available, own_pending]
    plan = plan_reversal(lots, order, 110)
    assert plan.draws == (
        Draw(own_pending.id, 30, "pending"),
        Draw(own_available.id, 40, "available"),
        Draw(other_available.id, 20, "available"),
        Draw(other_pending.id, 10, "pending"),
    )
    assert plan.debt == 10
    assert plan.drawn == 100
    assert plan_reversal(lots, order, 0).draws == ()


@given(lots=lot_lists(), order_id=st.sampled_from(ORDERS))
def test_plan_reversal_of_zero_draws_nothing(lots: list[Lot], order_id: UUID) -> None:
    assume(lots)
    plan = plan_reversal(lots, order_id, 0)
    assert plan.draws == ()
    assert plan.debt == 0


def test_plan_spend_skips_lots_past_their_expiry_date_before_the_sweep() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    stale = Lot(UUID(int=1), 50, 50, "available", now - timedelta(days=60), now - timedelta(days=1), now)
    fresh = Lot(UUID(int=2), 30, 30, "available", now - timedelta(days=60), now + timedelta(days=9), now)
    assert plan_spend([stale, fresh], 30, now) == (Draw(fresh.id, 30, "available"),)
    with pytest.raises(NotEnoughPoints) as refused:
        plan_spend([stale, fresh], 31, now)
    assert refused.value.available == 30


def test_plan_reversal_forgives_expired_points_before_taking_other_points() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    order = UUID(int=7)
    own = Lot(UUID(int=1), 100, 20, "available", now, None, now, order)
    other = Lot(UUID(int=2), 100, 100, "available", now, None, now, UUID(int=8))
    plan = plan_reversal([own, other], order, 100, forgivable=50)
    assert plan.draws == (Draw(own.id, 20, "available"), Draw(other.id, 30, "available"))
    assert (plan.forgiven, plan.debt) == (50, 0)


@settings(max_examples=300)
@given(
    lots=lot_lists(),
    data=st.data(),
    now=st.integers(min_value=0, max_value=60),
)
def test_plan_give_back_returns_or_forfeits_exactly_what_was_spent(
    lots: list[Lot], data: st.DataObject, now: int
) -> None:
    """What a cancelled redemption gives back: every point it drew either goes back into the lot it came
    from or, the lot having passed its expiry date (swept or not), is forfeited."""
    assume(lots)
    drawn = data.draw(st.lists(st.sampled_from(lots), unique_by=lambda lot: lot.id, max_size=len(lots)))
    spent = [(lot.id, data.draw(st.integers(min_value=0, max_value=500))) for lot in drawn]
    at = day(now)
    plan = plan_give_back(spent, lots, at)
    by_id = {lot.id: lot for lot in lots}
    total = sum(points for _, points in spent)
    assert plan.returned + plan.forfeited == total
    assert plan.returned == sum(m.points for m in plan.moves)
    spent_by_lot = dict(spent)
    for move in plan.moves:
        lot = by_id[move.lot_id]
        assert move.lot_id in spent_by_lot, "only to a lot that was drawn from"
        assert move.points == spent_by_lot[move.lot_id] > 0, "all of what it drew"
        assert lot.state != "expired" and not lapsed(lot, at), "a lapsed lot gets nothing"
        assert move.state == lot.state
    assert len({m.lot_id for m in plan.moves}) == len(plan.moves)
    assert plan.forfeited == sum(
        points for lot_id, points in spent if by_id[lot_id].state == "expired" or lapsed(by_id[lot_id], at)
    )
    # What settles a debt first: a prefix of the moves, never more than they hold.
    for k in range(0, plan.returned + 2):
        first = plan.first(k)
        assert sum(m.points for m in first) == min(k, plan.returned)
        assert all(m.points > 0 for m in first)
        assert [m.lot_id for m in first] == [m.lot_id for m in plan.moves[: len(first)]]


def test_plan_give_back_example() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    lapsed_lot = Lot(UUID(int=1), 30, 0, "available", now - timedelta(days=40), now - timedelta(days=1), now)
    swept = Lot(UUID(int=2), 10, 0, "expired", now - timedelta(days=90), now - timedelta(days=50), now)
    held = Lot(UUID(int=3), 40, 20, "available", now - timedelta(days=10), now + timedelta(days=20), now)
    plan = plan_give_back(
        [(lapsed_lot.id, 30), (swept.id, 10), (held.id, 20)], [lapsed_lot, swept, held], now
    )
    assert plan.moves == (Draw(held.id, 20, "available"),)
    assert (plan.returned, plan.forfeited) == (20, 40)


# --- changing the programme's expiry period ----------------------------------------------------------

_periods = st.none() | st.integers(min_value=1, max_value=800)


@settings(max_examples=300)
@given(lots=lot_lists(), before=_periods, after=_periods, at=st.integers(min_value=0, max_value=60))
def test_an_expiry_change_never_takes_points_at_once_and_moves_dates_one_way(
    lots: list[Lot], before: int | None, after: int | None, at: int
) -> None:
    change = ExpiryChange(before, after, day(at))
    for lot in lots:
        if not change.applies_to(lot):
            # Spent, swept or lapsed (past its date, not swept yet) lots, or no change at all: untouched.
            assert change.kind is None or lot.remaining == 0 or lapsed(lot, day(at))
            continue
        new = change.new_expiry(lot)
        assert new is None or new > day(at)  # nobody loses points at once
        if after is None:
            assert new is None  # switched off: no held point expires
        elif change.shorter:
            # Never later than it was; sooner only down to the new period after the change, and never
            # sooner than the new period after the points became available (as a new lot would).
            assert new is not None
            assert lot.expires_at is None or new <= lot.expires_at
            assert new == lot.expires_at or new >= day(at) + timedelta(days=after)
            assert new == lot.expires_at or new == max(lot.available_at, day(at)) + timedelta(days=after)
        else:
            assert before is not None and after > before  # lengthened: every date moves by the difference
            assert new == (
                None if lot.expires_at is None else lot.expires_at + timedelta(days=after - before)
            )


@given(before=_periods, after=_periods)
def test_expiry_change_kinds(before: int | None, after: int | None) -> None:
    change = ExpiryChange(before, after, T0)
    expected = (
        None
        if before == after
        else "switched_off"
        if after is None
        else "switched_on"
        if before is None
        else "shortened"
        if after < before
        else "lengthened"
    )
    assert change.kind == expected
    assert change.rule() and change.headline()
    if change.kind is None:
        assert not any(change.applies_to(lot) for lot in _lots([("available", 5, 5, 0, 0, None, None)]))


def test_switching_expiry_on_gives_held_points_a_full_period_from_the_switch() -> None:
    switch = day(100)
    available = Lot(UUID(int=1), 90, 90, "available", day(0), None, day(0))
    pending = Lot(UUID(int=2), 20, 20, "pending", day(110), None, day(96))
    spent = Lot(UUID(int=3), 10, 0, "available", day(0), None, day(0))
    change = ExpiryChange(None, 30, switch)
    assert change.kind == "switched_on"
    assert change.new_expiry(available) == day(130)  # not day 30: that would take them at once
    assert change.new_expiry(pending) == day(140)  # 30 days after they become available, like a new lot
    assert not change.applies_to(spent)
    assert "Points now expire 30 days after they become available" in change.rule()


def test_shortening_keeps_an_earlier_date_and_lengthening_moves_every_date() -> None:
    at = day(100)
    old = Lot(UUID(int=1), 90, 90, "available", day(0), day(365), day(0))
    new = Lot(UUID(int=2), 20, 20, "available", day(100), day(465), day(100))
    lapsed_lot = Lot(UUID(int=3), 5, 5, "available", day(0), day(99), day(0))
    shorter = ExpiryChange(365, 300, at)
    assert shorter.kind == "shortened"
    assert shorter.new_expiry(old) == day(365)  # sooner than 300 days after the change: stays
    assert shorter.new_expiry(new) == day(400)
    longer = ExpiryChange(365, 400, at)
    assert longer.new_expiry(old) == day(400) and longer.new_expiry(new) == day(500)
    off = ExpiryChange(365, None, at)
    assert off.new_expiry(old) is None
    for change in (shorter, longer, off):
        assert not change.applies_to(lapsed_lot)  # past its date: expired, even if not swept yet
