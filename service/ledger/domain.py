"""Pure ledger decisions: which lots a debit draws from, what a credit settles, what matures or expires.

No I/O. The service loads a customer's open lots (under the customer's balance lock), asks these
functions for a plan, and writes the plan as entries, allocations and lot updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

LotState = Literal["pending", "available", "expired"]


@dataclass(frozen=True, slots=True)
class Lot:
    id: UUID
    points: int
    remaining: int
    state: LotState
    available_at: datetime
    expires_at: datetime | None
    created_at: datetime
    order_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Draw:
    """Take `points` (> 0) out of one lot."""

    lot_id: UUID
    points: int
    state: LotState


@dataclass(frozen=True, slots=True)
class ReversalPlan:
    draws: tuple[Draw, ...]
    debt: int  # the part that no lot could cover: recorded as a clawback debt
    forgiven: int = 0  # the part that had expired: the customer lost it already, it is not taken twice

    @property
    def drawn(self) -> int:
        return sum(d.points for d in self.draws)


class NotEnoughPoints(Exception):
    def __init__(self, requested: int, available: int) -> None:
        super().__init__(f"requested {requested} points, {available} available")
        self.requested = requested
        self.available = available


def _fifo_key(lot: Lot) -> tuple[bool, datetime, datetime, str]:
    # Soonest expiry first; lots that never expire last; then oldest first; id breaks ties.
    far = lot.created_at if lot.expires_at is None else lot.expires_at
    return (lot.expires_at is None, far, lot.created_at, str(lot.id))


def spending_order(lots: Iterable[Lot]) -> list[Lot]:
    """Available lots with points left, in the order spending consumes them (FIFO by expiry)."""
    return sorted((lot for lot in lots if lot.state == "available" and lot.remaining > 0), key=_fifo_key)


def _draw(ordered: Iterable[Lot], points: int) -> tuple[list[Draw], int]:
    draws: list[Draw] = []
    left = points
    for lot in ordered:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            draws.append(Draw(lot.id, take, lot.state))
            left -= take
    return draws, left


def lapsed(lot: Lot, now: datetime) -> bool:
    """Past its expiry date: the points are gone from `now` on, even before the expire sweep zeroes the lot
    (spending refuses them, balances leave them out, expiry changes do not bring them back)."""
    return lot.expires_at is not None and lot.expires_at <= now


def plan_spend(lots: Sequence[Lot], points: int, now: datetime | None = None) -> tuple[Draw, ...]:
    """Draw `points` from available lots, FIFO by expiry; never overdraws. With `now`, lots already past
    their expiry date are not spendable even before the expire sweep has zeroed them."""
    if points <= 0:
        raise ValueError("points to spend must be positive")
    ordered = [lot for lot in spending_order(lots) if now is None or not lapsed(lot, now)]
    available = sum(lot.remaining for lot in ordered)
    if available < points:
        raise NotEnoughPoints(points, available)
    draws, _ = _draw(ordered, points)
    return tuple(draws)


def plan_reversal(lots: Sequence[Lot], order_id: UUID, points: int, forgivable: int = 0) -> ReversalPlan:
    """Take back `points` that an order earned.

    From the order's own lots first (pending before available); then up to `forgivable` points are
    forgiven — the order's points that expired, which the customer has lost already; then from the
    customer's other points (available FIFO, then pending, soonest available first) — so a debt exists
    only when the customer holds nothing at all; whatever is still missing becomes a clawback debt.
    """
    if points < 0:
        raise ValueError("points to reverse must not be negative")
    open_lots = [lot for lot in lots if lot.remaining > 0 and lot.state != "expired"]
    own = [lot for lot in open_lots if lot.order_id == order_id]
    others = [lot for lot in open_lots if lot.order_id != order_id]
    own_ordered = sorted((lot for lot in own if lot.state == "pending"), key=lambda lot: lot.available_at)
    own_ordered += spending_order(own)
    own_draws, left = _draw(own_ordered, points)
    forgiven = min(left, max(forgivable, 0))
    others_ordered = spending_order(others) + sorted(
        (lot for lot in others if lot.state == "pending"),
        key=lambda lot: (lot.available_at, str(lot.id)),
    )
    other_draws, left = _draw(others_ordered, left - forgiven)
    return ReversalPlan(tuple(own_draws + other_draws), left, forgiven)


@dataclass(frozen=True, slots=True)
class GiveBackPlan:
    """Points a spend took, going back into the very lots they came from (each with its own expiry date):
    `moves` into lots still good; `lapsed` into lots that have passed their expiry date meanwhile, where
    they expire at once — they would have expired had they never been spent. Written as an expiry of
    their lot (not simply left out), a later refund of the order that earned them sees them as expired
    and does not take them again."""

    moves: tuple[Draw, ...]  # points (> 0) back into lots still good
    lapsed: tuple[Draw, ...] = ()  # points (> 0) back into lapsed lots, expiring at once

    @property
    def returned(self) -> int:
        return sum(m.points for m in self.moves)

    @property
    def forfeited(self) -> int:
        return sum(m.points for m in self.lapsed)

    def first(self, points: int) -> tuple[Draw, ...]:
        """`points` of what goes back, from the first lots on (what settles a debt)."""
        taken: list[Draw] = []
        left = points
        for move in self.moves:
            if left <= 0:
                break
            take = min(move.points, left)
            taken.append(Draw(move.lot_id, take, move.state))
            left -= take
        return tuple(taken)


def plan_give_back(spent: Sequence[tuple[UUID, int]], lots: Sequence[Lot], now: datetime) -> GiveBackPlan:
    """Give back what a spend drew: `spent` is (lot id, points drawn) per lot; `lots` those lots as they are
    now. A lot past its expiry date (swept or not) keeps nothing of it: those points expire at once."""
    by_id = {lot.id: lot for lot in lots}
    moves: list[Draw] = []
    gone: list[Draw] = []
    for lot_id, points in spent:
        if points <= 0:
            continue
        lot = by_id[lot_id]
        if lot.state == "expired" or lapsed(lot, now):
            gone.append(Draw(lot_id, points, lot.state))
        else:
            moves.append(Draw(lot_id, points, lot.state))
    return GiveBackPlan(tuple(moves), tuple(gone))


def debt_settlement(debt: int, credited: int) -> int:
    """How much of a new credit settles an outstanding debt first."""
    return min(debt, credited) if debt > 0 and credited > 0 else 0


def maturing(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    return [lot for lot in lots if lot.state == "pending" and lot.available_at <= now]


def expiring(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    return [lot for lot in lots if lot.state != "expired" and lot.remaining > 0 and lapsed(lot, now)]


def lot_dates(
    placed_at: datetime, now: datetime, pending_days: int, expire_after_days: int | None
) -> tuple[datetime, datetime | None]:
    """When a purchase's points become available (end of the return window, counted from the purchase)
    and when they expire (`expire_after_days` after they became available; None = never)."""
    available_at = max(placed_at + timedelta(days=pending_days), now) if pending_days else now
    expires_at = None if expire_after_days is None else available_at + timedelta(days=expire_after_days)
    return available_at, expires_at


ExpiryChangeKind = Literal["switched_on", "shortened", "lengthened", "switched_off"]


@dataclass(frozen=True, slots=True)
class ExpiryChange:
    """The programme's expiry period going from `before` to `after` days after points become available
    (None: points never expire), and what that does to the points customers hold at `at`.

    One rule in each direction, so nobody loses points at once and nobody is surprised by a later date:
    - shorter (switching on is shortening from "never"): a held lot expires `after` days after it became
      available, but no sooner than `after` days after the change, and never later than it would have;
    - longer (switching off is lengthening to "never"): every held lot's date moves `after - before`
      days later (or goes).
    Lots already past their date stay expired; only lots with points left are touched; the 30- and
    7-day notices start again for every date that changed.
    """

    before: int | None
    after: int | None
    at: datetime

    @property
    def kind(self) -> ExpiryChangeKind | None:
        if self.before == self.after:
            return None
        if self.after is None:
            return "switched_off"
        if self.before is None:
            return "switched_on"
        return "shortened" if self.after < self.before else "lengthened"

    @property
    def shorter(self) -> bool:
        return self.kind in ("switched_on", "shortened")

    def applies_to(self, lot: Lot) -> bool:
        """A lot that still holds points and has not passed its date (a lapsed one stays lapsed)."""
        return (
            self.kind is not None
            and lot.remaining > 0
            and lot.state != "expired"
            and not lapsed(lot, self.at)
        )

    def new_expiry(self, lot: Lot) -> datetime | None:
        """The date a lot that `applies_to` the change expires on after it."""
        if self.after is None:
            return None
        if self.shorter:
            floor = max(lot.available_at, self.at) + timedelta(days=self.after)
            return floor if lot.expires_at is None else min(lot.expires_at, floor)
        assert self.before is not None  # lengthened
        return None if lot.expires_at is None else lot.expires_at + timedelta(days=self.after - self.before)

    def rule(self) -> str:
        """The rule applied to the points held, in words (for the API answer)."""
        kind, before, after = self.kind, self.before, self.after
        if kind == "switched_on":
            return (
                f"Points now expire {after} days after they become available. Points held at the change "
                f"expire {after} days after they became available but no sooner than {after} days after "
                "the change, so nobody loses points at once; the usual notices warn 30 and 7 days ahead."
            )
        if kind == "shortened":
            return (
                f"Points now expire {after} instead of {before} days after they become available. Points "
                f"held at the change expire {after} days after they became available but no sooner than "
                f"{after} days after the change (an earlier date stays); the usual notices warn 30 and 7 "
                "days ahead."
            )
        if kind == "lengthened":
            assert before is not None and after is not None
            return (
                f"Points now expire {after} instead of {before} days after they become available. Every "
                f"date of the points held at the change moves {after - before} days later."
            )
        if kind == "switched_off":
            return "Points no longer expire, including the points held at the change."
        return "The expiry period did not change."

    def headline(self) -> str:
        """The start of the explanation in each customer's ledger entry."""
        return {
            "switched_on": f"Points expiry switched on ({self.after} days after points become available)",
            "shortened": f"Points expiry shortened from {self.before} to {self.after} days",
            "lengthened": f"Points expiry lengthened from {self.before} to {self.after} days",
            "switched_off": "Points expiry switched off",
            None: "Points expiry unchanged",
        }[self.kind]
