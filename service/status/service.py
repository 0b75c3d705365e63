"""The one-call status view: profile, points, pending dates, next expiry, orders, recent ledger entries,
tier and messages — read from what each owner publishes, in as few round trips as they allow."""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.core.db import Connection
from service.customers import service as customers
from service.ledger import service as ledger
from service.ledger.schemas import entry_out
from service.messaging import service as messaging
from service.orders import service as orders
from service.programs.service import Program
from service.recovery import service as recovery
from service.rewards import domain as rewards_domain
from service.rewards import service as rewards
from service.status.schemas import (
    CustomerStatus,
    ExpiringPoints,
    OpenCode,
    OrderSummary,
    PendingPoints,
    PointsSummary,
)
from service.tiers import service as tiers

RECENT_ENTRIES = 5


async def customer_status(
    conn: Connection, program: Program, external_id: str, now: datetime
) -> CustomerStatus:
    row = await customers.get(
        conn,
        program.id,
        external_id,
        ledger.status_lateral("c.id", RECENT_ENTRIES, "$3"),
        orders.customer_stats_lateral("c.id"),
        tiers.TIER_LATERAL,
        rewards.open_codes_lateral("c.id", "$3"),
        recovery.open_cases_lateral("c.id"),
        params=(now,),
    )
    pending = msgspec.json.decode(row["pending_lots"] or "[]", type=list[PendingPoints])
    expiry = msgspec.json.decode(row["next_expiry"], type=ExpiringPoints) if row["next_expiry"] else None
    recent = [entry_out(e) for e in msgspec.json.decode(row["recent_entries"] or "[]")]
    return CustomerStatus(
        customer=customers.to_out(row),
        points=PointsSummary(
            available=row["available"] or 0,
            pending=row["pending"] or 0,
            debt=row["debt"] or 0,
            lifetime_earned=row["lifetime_earned"] or 0,
        ),
        pending=pending,
        next_expiring=expiry,
        orders=OrderSummary(count=row["order_count"], last_order_at=row["last_order_at"]),
        recent_entries=recent,
        tier=await tiers.standing_of(conn, program, row, now),
        recent_messages=await messaging.recent_for_customer(conn, program.id, row["id"]),
        open_codes=[
            OpenCode(
                redemption_id=c["redemption_id"],
                code=c["code"],
                reward_id=c["reward_id"],
                name=rewards_domain.localized(c["name"], row["locale"]) or "",
                kind=c["kind"],
                expires_at=None if c["expires_at"] is None else msgspec.convert(c["expires_at"], datetime),
            )
            for c in msgspec.json.decode(row["open_codes"] or "[]")
        ],
        open_cases=recovery.open_cases_of(row),
    )
