"""An in-memory model of the ledger service driven by the pure domain plans, checked for its invariants.

`LedgerModel` applies plans the way service/ledger/service.py and service/ledger/jobs.py write them:

* credit: a new lot (pending when `available_at` is after now), an `earn` entry allocating +points to it;
  an outstanding debt is settled from that lot first (`debt_settled` entry, debt_change −settled);
* debit: `plan_spend` over the open lots, one negative allocation per draw;
* reverse: `plan_reversal` over the open lots; the entry is −drawn with debt_change +debt;
* mature: `maturing` lots become available; expire: `expiring` lots lose their remainder (`expire` entry).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from service.ledger.domain import (
    Draw,
    Lot,
    LotState,
    NotEnoughPoints,
    ReversalPlan,
    debt_settlement,
    expiring,
    lot_dates,
    maturing,
    plan_reversal,
    plan_spend,
)

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


@dataclass(slots=True)
class Entry:
    kind: str
    points: int
    debt_change: int
    allocations: list[tuple[UUID, int]]


@dataclass(slots=True)
class LedgerModel:
    lots: list[Lot] = field(default_factory=list)
    debt: int = 0
    entries: list[Entry] = field(default_factory=list)
    _next_lot: int = 0
    # Per order: points that expired, and how many of those refunds have forgiven (not taken twice).
    expired_by_order: dict[UUID, int] = field(default_factory=dict)
    forgiven_by_order: dict[UUID, int] = field(default_factory=dict)

    # -- reads ---------------------------------------------------------------------------------------
    def open_lots(self) -> list[Lot]:
        """What repository.open_lots loads: every lot with points left."""
        return [lot for lot in self.lots if lot.remaining > 0]

    def held(self, state: LotState | None = None) -> int:
        return sum(lot.remaining for lot in self.lots if state is None or lot.state == state)

    @property
    def available(self) -> int:
        return self.held("available")

    @property
    def pending(self) -> int:
        return self.held("pending")

    def snapshot(self) -> tuple[dict[UUID, tuple[int, LotState]], int]:
        return {lot.id: (lot.remaining, lot.state) for lot in self.lots}, self.debt

    # -- writes --------------------------------------------------------------------------------------
    def _update(self, lot_id: UUID, **changes: Any) -> None:
        for index, lot in enumerate(self.lots):
            if lot.id == lot_id:
                self.lots[index] = dataclasses.replace(lot, **changes)
                return
        raise AssertionError(f"no lot {lot_id}")

    def _write_debit(self, kind: str, points: int, debt_change: int, draws: tuple[Draw, ...]) -> Entry:
        by_id = {lot.id: lot for lot in self.lots}
        for d in draws:
            self._update(d.lot_id, remaining=by_id[d.lot_id].remaining - d.points)
        entry = Entry(kind, points, debt_change, [(d.lot_id, -d.points) for d in draws])
        self.entries.append(entry)
        return entry

    def earn(
        self,
        order_id: UUID | None,
        points: int,
        available_at: datetime,
        expires_at: datetime | None,
        now: datetime,
    ) -> Lot | None:
        if points <= 0:
            return None
        state: LotState = "available" if available_at <= now else "pending"
        self._next_lot += 1
        lot = Lot(UUID(int=self._next_lot), points, points, state, available_at, expires_at, now, order_id)
        self.lots.append(lot)
        self.entries.append(Entry("earn", points, 0, [(lot.id, points)]))
        settled = debt_settlement(self.debt, points)
        if settled:
            self._write_debit("debt_settled", -settled, -settled, (Draw(lot.id, settled, state),))
            self.debt -= settled
        return lot

    def spend(self, points: int, now: datetime | None = None) -> tuple[Draw, ...] | None:
        try:
            draws = plan_spend(self.open_lots(), points, now)
        except NotEnoughPoints:
            return None
        self._write_debit("spend", -points, 0, draws)
        return draws

    def refund(self, order_id: UUID, points: int) -> ReversalPlan | None:
        if points <= 0:
            return None
        forgivable = self.expired_by_order.get(order_id, 0) - self.forgiven_by_order.get(order_id, 0)
        plan = plan_reversal(self.open_lots(), order_id, points, forgivable)
        self._write_debit("reverse", -plan.drawn, plan.debt, plan.draws)
        self.debt += plan.debt
        self.forgiven_by_order[order_id] = self.forgiven_by_order.get(order_id, 0) + plan.forgiven
        return plan

    def mature(self, now: datetime) -> int:
        due = maturing(self.lots, now)
        for lot in due:
            self._update(lot.id, state="available")
        return sum(lot.remaining for lot in due)

    def expire(self, now: datetime) -> int:
        gone = expiring(self.lots, now)
        for lot in gone:
            self._update(lot.id, state="expired", remaining=0)
            self.entries.append(Entry("expire", -lot.remaining, 0, [(lot.id, -lot.remaining)]))
            if lot.order_id is not None:
                self.expired_by_order[lot.order_id] = (
                    self.expired_by_order.get(lot.order_id, 0) + lot.remaining
                )
        return sum(lot.remaining for lot in gone)

    # -- the checks ----------------------------------------------------------------------------------
    def check(self) -> None:
        entry_points = sum(e.points for e in self.entries)
        assert self.available + self.pending == entry_points, "held points differ from the entries"
        assert self.debt == sum(e.debt_change for e in self.entries), "debt differs from the entries"
        lot_allocations: dict[UUID, int] = {}
        for entry in self.entries:
            assert sum(points for _, points in entry.allocations) == entry.points, entry
            for lot_id, points in entry.allocations:
                lot_allocations[lot_id] = lot_allocations.get(lot_id, 0) + points
        for lot in self.lots:
            assert 0 <= lot.remaining <= lot.points, lot
            assert lot_allocations.get(lot.id, 0) == lot.remaining, lot
            if lot.state == "expired":
                assert lot.remaining == 0, lot
        assert self.debt >= 0
        assert self.available >= 0 and self.pending >= 0
        if self.debt > 0:
            assert self.available + self.pending == 0, (
                f"debt {self.debt} while holding {self.available} + {self.pending}"
            )


# ---------------------------------------------------------------------------------------------------------
# Stateful test: random earn / refund / spend / mature / expire / clock moves.
# ---------------------------------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.now = T0
        self.earned: dict[UUID, int] = {}
        self.reversed: dict[UUID, int] = {}
        self.spent = 0
        self.expired = 0
        self.orders = 0
        self.start_debt = 0

    @initialize(debt=st.integers(min_value=0, max_value=0) | st.integers(min_value=1, max_value=300))
    def start(self, debt: int) -> None:
        # A customer may start with a debt (from refunds of points earned before any lot we model).
        if debt:
            self.model.entries.append(Entry("reverse", 0, debt, []))
            self.model.debt = debt
            self.start_debt = debt

    @rule(hours=st.integers(min_value=0, max_value=24 * 40))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(
        points=st.integers(min_value=0, max_value=400),
        placed_ago_days=st.integers(min_value=0, max_value=20),
        pending_days=st.integers(min_value=0, max_value=14),
        expire_after_days=st.none() | st.integers(min_value=0, max_value=60),
    )
    def earn(
        self, points: int, placed_ago_days: int, pending_days: int, expire_after_days: int | None
    ) -> None:
        self.orders += 1
        order_id = UUID(int=10**6 + self.orders)
        placed_at = self.now - timedelta(days=placed_ago_days)
        available_at, expires_at = lot_dates(placed_at, self.now, pending_days, expire_after_days)
        debt_before, held_before = self.model.debt, self.model.held()
        lot = self.model.earn(order_id, points, available_at, expires_at, self.now)
        self.earned[order_id] = points
        self.reversed[order_id] = 0
        if lot is not None:
            settled = min(debt_before, points)
            assert self.model.debt == debt_before - settled
            assert self.model.held() == held_before + points - settled

    def refundable(self) -> list[UUID]:
        return [o for o, p in self.earned.items() if p > self.reversed[o]]

    @precondition(lambda self: bool(self.refundable()))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.refundable()), label="order")
        left = self.earned[order_id] - self.reversed[order_id]
        points = data.draw(st.integers(min_value=1, max_value=left), label="points")
        held_before, debt_before = self.model.held(), self.model.debt
        plan = self.model.refund(order_id, points)
        assert plan is not None
        self.reversed[order_id] += points
        # What was taken back is drawn, owed, or forgiven because it had expired — never more forgiven
        # than the order lost to expiry.
        assert plan.drawn + plan.debt + plan.forgiven == points
        assert self.model.forgiven_by_order.get(order_id, 0) <= self.model.expired_by_order.get(order_id, 0)
        assert self.model.held() == held_before - plan.drawn
        assert self.model.debt == debt_before + plan.debt

    @rule(points=st.integers(min_value=1, max_value=600))
    def spend(self, points: int) -> None:
        available = self.model.available
        draws = self.model.spend(points)
        assert (draws is None) == (available < points), "NotEnoughPoints exactly when short"
        if draws is not None:
            self.spent += points
            assert self.model.available == available - points

    @rule()
    def spend_everything(self) -> None:
        if self.model.available:
            self.spent += self.model.available
            assert self.model.spend(self.model.available) is not None
            assert self.model.available == 0

    @rule()
    def mature(self) -> None:
        pending = self.model.pending
        moved = self.model.mature(self.now)
        assert self.model.pending == pending - moved
        assert not maturing(self.model.lots, self.now)

    @rule()
    def expire(self) -> None:
        self.expired += self.model.expire(self.now)
        assert not expiring(self.model.lots, self.now)

    @invariant()
    def ledger_is_consistent(self) -> None:
        self.model.check()

    @invariant()
    def points_are_conserved(self) -> None:
        # Every point earned is still held, was spent, expired, or taken back (drawn or owed as debt);
        # a refund of points that had expired forgives them instead of taking them a second time.
        earned = sum(self.earned.values())
        taken_back = sum(self.reversed.values()) - sum(self.model.forgiven_by_order.values())
        assert self.model.held() - self.model.debt == (
            earned - taken_back - self.spent - self.expired - self.start_debt
        )

    @invariant()
    def never_more_reversed_than_earned(self) -> None:
        for order_id, points in self.earned.items():
            assert 0 <= self.reversed[order_id] <= points


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase


# ---------------------------------------------------------------------------------------------------------
# Refunding all an unspent order earned restores the holdings exactly.
# ---------------------------------------------------------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(1, 300), st.integers(0, 10), st.none() | st.integers(0, 30)),
        st.tuples(st.just("spend"), st.integers(1, 400), st.just(0), st.none()),
        st.tuples(st.just("refund"), st.integers(0, 5), st.integers(1, 300), st.none()),
        st.tuples(st.just("advance"), st.integers(0, 30), st.just(0), st.none()),
        st.tuples(st.just("sweep"), st.just(0), st.just(0), st.none()),
    ),
    max_size=20,
)


def replay(ops: list[tuple[str, int, int, int | None]]) -> tuple[LedgerModel, datetime, list[UUID]]:
    """Apply a history of operations (refunds never exceed what an order has left)."""
    model = LedgerModel()
    now = T0
    orders: list[UUID] = []
    left: dict[UUID, int] = {}
    for kind, a, b, c in ops:
        if kind == "earn":
            order_id = UUID(int=10**6 + len(orders))
            available_at, expires_at = lot_dates(now, now, b, c)
            model.earn(order_id, a, available_at, expires_at, now)
            orders.append(order_id)
            left[order_id] = a
        elif kind == "spend":
            model.spend(a)
        elif kind == "refund" and orders:
            order_id = orders[a % len(orders)]
            points = min(b, left[order_id])
            if points:
                model.refund(order_id, points)
                left[order_id] -= points
        elif kind == "advance":
            now += timedelta(days=a)
        elif kind == "sweep":
            model.mature(now)
            model.expire(now)
        model.check()
    return model, now, orders


@settings(max_examples=200, deadline=None)
@given(
    history=_OPS,
    debt=st.just(0) | st.integers(min_value=1, max_value=500),
    points=st.integers(min_value=1, max_value=500),
    pending_days=st.integers(min_value=0, max_value=14),
    expire_after_days=st.none() | st.integers(min_value=1, max_value=60),
    pieces=st.lists(st.integers(min_value=1, max_value=100), max_size=4),
)
def test_refunding_everything_an_unspent_order_earned_restores_the_holdings(
    history: list[tuple[str, int, int, int | None]],
    debt: int,
    points: int,
    pending_days: int,
    expire_after_days: int | None,
    pieces: list[int],
) -> None:
    model, now, _ = replay(history)
    if debt and model.held() == 0:
        # A debt only ever exists with nothing held; give the customer one left by an earlier refund.
        model.entries.append(Entry("reverse", 0, debt, []))
        model.debt += debt
        model.check()
    lots_before, debt_before = model.snapshot()
    held_before = model.held()

    order_id = UUID(int=42)
    available_at, expires_at = lot_dates(now, now, pending_days, expire_after_days)
    lot = model.earn(order_id, points, available_at, expires_at, now)
    assert lot is not None
    # Refund in a few pieces, then the rest.
    left = points
    for piece in pieces:
        if piece < left:
            model.refund(order_id, piece)
            left -= piece
            model.check()
    model.refund(order_id, left)
    model.check()

    lots_after, debt_after = model.snapshot()
    assert lots_after.pop(lot.id)[0] == 0, "the order's lot is back to 0 remaining"
    assert lots_after == lots_before, "other lots untouched"
    assert debt_after == debt_before
    assert model.held() == held_before
    if debt_before == 0:
        assert debt_after == 0


# ---------------------------------------------------------------------------------------------------------
# Concrete examples.
# ---------------------------------------------------------------------------------------------------------


def test_model_example_refund_of_spent_points_becomes_debt_settled_by_next_earn() -> None:
    model = LedgerModel()
    order_a, order_b = UUID(int=1), UUID(int=2)
    model.earn(order_a, 100, T0, None, T0)
    assert model.spend(80) is not None
    plan = model.refund(order_a, 100)
    assert plan is not None
    assert (plan.drawn, plan.debt) == (20, 80)
    assert (model.held(), model.debt) == (0, 80)
    model.check()
    # A pending credit of 50 settles 50 of the debt; nothing is held yet.
    model.earn(order_b, 50, T0 + timedelta(days=14), None, T0)
    assert (model.held(), model.debt) == (0, 30)
    model.earn(None, 45, T0, None, T0)
    assert (model.available, model.pending, model.debt) == (15, 0, 0)
    assert [e.kind for e in model.entries] == [
        "earn",
        "spend",
        "reverse",
        "earn",
        "debt_settled",
        "earn",
        "debt_settled",
    ]
    model.check()


def test_model_example_pending_matures_then_expires() -> None:
    model = LedgerModel()
    model.earn(UUID(int=1), 70, T0 + timedelta(days=14), T0 + timedelta(days=44), T0)
    assert (model.available, model.pending) == (0, 70)
    assert model.spend(1) is None
    assert model.mature(T0 + timedelta(days=13)) == 0
    assert model.mature(T0 + timedelta(days=14)) == 70
    assert (model.available, model.pending) == (70, 0)
    assert model.spend(30) is not None
    assert model.expire(T0 + timedelta(days=43)) == 0
    assert model.expire(T0 + timedelta(days=44)) == 40
    assert model.held() == 0
    assert [e.points for e in model.entries] == [70, -30, -40]
    model.check()
