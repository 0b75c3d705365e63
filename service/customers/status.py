"""The one-call status view: profile, points, pending dates, next expiry, orders, recent ledger entries."""

from __future__ import annotations

from uuid import UUID

import msgspec

from service.core.db import Connection
from service.core.errors import InvalidInput
from service.customers import service
from service.customers.schemas import (
    CustomerStatus,
    ExpiringPoints,
    OrderSummary,
    PendingPoints,
    PointsSummary,
)
from service.ledger import service as ledger
from service.ledger.schemas import entry_out
from service.orders import service as orders

RECENT_ENTRIES = 5


def check_external_id(external_id: str) -> None:
    if not 1 <= len(external_id) <= 128 or external_id != external_id.strip():
        raise InvalidInput(
            "a customer id has 1 to 128 characters, no surrounding spaces", field="external_id"
        )


async def customer_status(conn: Connection, program_id: UUID, external_id: str) -> CustomerStatus:
    row = await service.get(conn, program_id, external_id)
    points = await ledger.status(conn, row["id"], RECENT_ENTRIES)
    order_count, last_order_at = await orders.customer_stats(conn, row["id"])
    pending = msgspec.json.decode(points["pending_lots"], type=list[PendingPoints])
    expiry = (
        msgspec.json.decode(points["next_expiry"], type=ExpiringPoints | None)
        if points["next_expiry"]
        else None
    )
    recent = [entry_out(e) for e in msgspec.json.decode(points["recent_entries"])]
    return CustomerStatus(
        customer=service.to_out(row),
        points=PointsSummary(
            available=points["available"],
            pending=points["pending"],
            debt=points["debt"],
            lifetime_earned=points["lifetime_earned"],
        ),
        pending=pending,
        next_expiring=expiry,
        orders=OrderSummary(count=order_count, last_order_at=last_order_at),
        recent_entries=recent,
    )
