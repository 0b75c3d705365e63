"""The daily tier re-evaluation: upgrades missed, downgrade warnings, downgrades, withdrawn warnings.

Set-based: per program, one statement works out every customer's metrics and keeps only those whose
tier could change (the tier they reach is not the one they hold, or they hold a warning). Those are
decided by the pure `domain.decide`, in chunks, one transaction per chunk; each write is guarded by
the state it was decided on, so an order that moved a customer meanwhile wins and the next run looks
again. Idempotent: a second run at the same time finds nothing to do.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from service.core import db
from service.outbox.service import Event, emit
from service.programs import service as programs
from service.programs.service import Program
from service.tiers import domain, service
from service.tiers.repository import Change, apply, candidates, tier_definitions

CHUNK = 5_000


@dataclass(slots=True)
class ReevaluationResult:
    customers: int = 0  # candidates looked at
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # decision kind -> customers

    @property
    def changed(self) -> int:
        return sum(self.counts.values())


async def _programs_with_tiers() -> list[UUID]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT id FROM program p
            WHERE EXISTS (SELECT 1 FROM tier t WHERE t.program_id = p.id)
            ORDER BY id
            """
        )
    return [r["id"] for r in rows]


async def reevaluate(now: datetime, program_id: UUID | None = None, chunk: int = CHUNK) -> ReevaluationResult:
    result = ReevaluationResult()
    ids = [program_id] if program_id is not None else await _programs_with_tiers()
    for pid in ids:
        async with db.connection() as conn:
            program = await programs.load(conn, pid)
        await _program(program, now, chunk, result)
    return result


async def _program(program: Program, now: datetime, chunk: int, result: ReevaluationResult) -> None:
    async with db.connection() as conn:
        tiers = service.build_set(await tier_definitions(conn, program.id))
        query = tiers.all_customers
        if query is None:
            # No tiers left: nobody can hold one (deleting a tier moves its holders), nothing to do.
            return
        await conn.execute("SET work_mem = '64MB'")  # a million customers' metrics hash in memory
        try:
            rows = await candidates(
                conn,
                query,
                tiers.qualified_sql(),
                program.id,
                program.base_currency,
                tiers.starts(now, program.zone),
            )
        finally:
            await conn.execute("RESET work_mem")
    result.customers += len(rows)
    for start in range(0, len(rows), chunk):
        await _chunk(program, tiers, rows[start : start + chunk], now, result)


def _warning(
    row: dict[str, Any],
    decision: domain.Decision,
    tier: domain.Tier,
    value: int,
    currency: str,
    zone: Any,
    now: datetime,
) -> tuple[Change, Event]:
    remaining = max(0, tier.threshold - value)
    when = decision.downgrade_at
    assert when is not None
    text = (
        f"{service.describe_amount(tier, remaining, currency)} more by "
        f"{when.astimezone(zone).strftime('%-d %b %Y')} keeps {tier.name}"
    )
    change = Change(
        customer_id=row["id"],
        old_tier_id=row["tier_id"],
        old_warned_at=row["tier_warned_at"],
        tier_id=row["tier_id"],
        since=row["tier_since"],
        source=row["tier_source"],
        manual_until=row["tier_manual_until"],
        warned_at=now,
        downgrade_at=when,
        change="warning",
        from_tier_id=row["tier_id"],
        to_tier_id=row["tier_id"],
        cause="reevaluation",
        reason=f"no longer qualifies: {service.qualification_text(tier, value, currency)}; {text}",
        actor=None,
        details={"downgrade_at": when.isoformat(), "remaining": remaining},
    )
    event = Event(
        "tier.downgrade_warning",
        {
            "customer": row["external_id"],
            "tier": {"key": tier.key, "name": tier.name, "rank": tier.rank},
            "downgrade_at": when,
            "keep": {
                "metric": tier.metric,
                "current": value,
                "needed": tier.threshold,
                "remaining": remaining,
                "currency": currency if tier.metric == "spend" else None,
                "text": text,
            },
        },
    )
    return change, event


async def _chunk(
    program: Program,
    tiers: service.TierSet,
    rows: list[dict[str, Any]],
    now: datetime,
    result: ReevaluationResult,
) -> None:
    zone = program.zone
    currency = program.base_currency
    qualified = {r["id"]: domain.qualified_tier(tiers.tiers, tiers.values(r)) for r in rows}
    # When each customer at risk last reached the tier they hold, one query per tier held.
    at_risk: dict[UUID, list[UUID]] = defaultdict(list)
    for r in rows:
        held = tiers.by_id.get(r["tier_id"]) if r["tier_id"] else None
        q = qualified[r["id"]]
        if (
            held is not None
            and (q is None or q.rank < held.rank)
            and not (r["tier_source"] == "manual" and r["tier_manual_until"] is None)
        ):
            at_risk[held.id].append(r["id"])
    last: dict[UUID, datetime] = {}
    async with db.connection() as conn:
        for tier_id, customer_ids in at_risk.items():
            found = await service.last_qualified(conn, program, tiers.by_id[tier_id], customer_ids)
            last.update({c: min(at, now) for c, at in found.items()})

    changes: list[Change] = []
    events: dict[UUID, Event] = {}
    kinds: dict[UUID, str] = {}
    for r in rows:
        holding = service.holding_of(r)
        decision = domain.decide(tiers.tiers, holding, qualified[r["id"]], last.get(r["id"]), now, zone)
        if decision.kind == "none":
            continue
        held = tiers.by_id.get(r["tier_id"]) if r["tier_id"] else None
        if decision.kind in ("upgrade", "downgrade"):
            to = decision.tier
            basis = to if decision.kind == "upgrade" and to is not None else held
            assert basis is not None
            reason = f"re-evaluation: {service.qualification_text(basis, tiers.values(r)[basis.metric_key], currency)}"
            if decision.kind == "downgrade":
                reason += f"; warned {holding.warned_at.date().isoformat() if holding.warned_at else '?'}"
            changes.append(
                service.move(
                    r,
                    to,
                    now,
                    decision.kind,
                    "reevaluation",
                    reason,
                    None,
                    source="earned",
                    manual_until=None,
                )
            )
            events[r["id"]] = service._moved_event(r["external_id"], held, to, "reevaluation", reason)
        elif decision.kind == "warn":
            assert held is not None
            change, event = _warning(r, decision, held, tiers.values(r)[held.metric_key], currency, zone, now)
            changes.append(change)
            events[r["id"]] = event
        else:  # withdraw_warning
            assert held is not None
            changes.append(
                Change(
                    customer_id=r["id"],
                    old_tier_id=r["tier_id"],
                    old_warned_at=r["tier_warned_at"],
                    tier_id=r["tier_id"],
                    since=r["tier_since"],
                    source=r["tier_source"],
                    manual_until=r["tier_manual_until"],
                    warned_at=None,
                    downgrade_at=None,
                    change="warning_withdrawn",
                    from_tier_id=r["tier_id"],
                    to_tier_id=r["tier_id"],
                    cause="reevaluation",
                    reason=f"qualifies again: {service.qualification_text(held, tiers.values(r)[held.metric_key], currency)}",
                    actor=None,
                    details={},
                )
            )
        kinds[r["id"]] = decision.kind
    if not changes:
        return
    async with db.transaction() as conn:
        written = await apply(conn, program.id, changes, now)
        await emit(conn, program.id, [e for cid, e in events.items() if cid in written], now)
    for cid in written:
        result.counts[kinds[cid]] += 1
