from __future__ import annotations

from msgspec import Struct


class Backlog(Struct, kw_only=True):
    """This program's events and deliveries that are waiting."""

    undispatched: int
    outbox_lag_seconds: float
    deliveries_due: int
    delivery_lag_seconds: float
    deliveries_pending: int
    deliveries_dead: int
    deliveries_paused: int


class JobsOut(Struct, kw_only=True):
    backlog: Backlog
