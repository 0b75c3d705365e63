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


def plan_spend(lots: Sequence[Lot], points: int, now: datetime | None = None) -> tuple[Draw, ...]:
    """Draw `points` from available lots, FIFO by expiry; never overdraws. With `now`, lots already past
    their expiry date are not spendable even before the expire sweep has zeroed them."""
    if points <= 0:
        raise ValueError("points to spend must be positive")
    ordered = [
        lot for lot in spending_order(lots) if now is None or lot.expires_at is None or lot.expires_at > now
    ]
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


def debt_settlement(debt: int, credited: int) -> int:
    """How much of a new credit settles an outstanding debt first."""
    return min(debt, credited) if debt > 0 and credited > 0 else 0


def maturing(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    return [lot for lot in lots if lot.state == "pending" and lot.available_at <= now]


def expiring(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    return [
        lot
        for lot in lots
        if lot.state != "expired"
        and lot.remaining > 0
        and lot.expires_at is not None
        and lot.expires_at <= now
    ]


def lot_dates(
    placed_at: datetime, now: datetime, pending_days: int, expire_after_days: int | None
) -> tuple[datetime, datetime | None]:
    """When a purchase's points become available (end of the return window, counted from the purchase)
    and when they expire (`expire_after_days` after they became available; None = never)."""
    available_at = max(placed_at + timedelta(days=pending_days), now) if pending_days else now
    expires_at = None if expire_after_days is None else available_at + timedelta(days=expire_after_days)
    return available_at, expires_at
