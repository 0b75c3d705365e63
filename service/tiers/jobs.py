"""The daily tier re-evaluation: upgrades missed, downgrade warnings, downgrades, withdrawn warnings.

Set-based: per program, one statement works out every customer's metrics and keeps only those whose
tier could change (the tier they reach is not the one they hold, or they hold a warning). Those are
decided by the pure `domain.decide`, in chunks, one transaction per chunk; each write is guarded by
the state it was decided on, so an order that moved a customer meanwhile wins and the next run looks
again. Idempotent: a second run at the same time finds nothing to do.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from service.core import db
from service.programs import service as programs
from service.programs.service import Program
from service.tiers import domain, service
from service.tiers.repository import FAR_FUTURE, Change, apply, candidates, tier_definitions

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
                tiers.held_rank_sql(),
                program.id,
                program.base_currency,
                tiers.starts(now, program.zone),
                now,
            )
        finally:
            await conn.execute("RESET work_mem")
    result.customers += len(rows)
    # One chunk is written while the next is decided: the database and Python each keep a core busy.
    writing: asyncio.Task[None] | None = None
    for start in range(0, len(rows), chunk):
        changes, kinds = await _decide(program, tiers, rows[start : start + chunk], now)
        if writing is not None:
            await writing
        writing = asyncio.create_task(_write(program.id, changes, kinds, now, result))
    if writing is not None:
        await writing


def _at_risk(row: dict[str, Any]) -> bool:
    """Holds a tier it no longer reaches, and something could happen to it (not a manual tier for good)."""
    return row["qualified_rank"] < row["held_rank"] and not (
        row["tier_source"] == "manual" and row["tier_manual_until"] is None
    )


async def _decide(
    program: Program, tiers: service.TierSet, rows: list[dict[str, Any]], now: datetime
) -> tuple[list[Change], dict[UUID, str]]:
    zone = program.zone
    currency = program.base_currency
    # When each customer at risk last reached the tier they hold: one query per tier held.
    at_risk: dict[UUID, list[UUID]] = defaultdict(list)
    for r in rows:
        if _at_risk(r):
            at_risk[r["tier_id"]].append(r["id"])
    last: dict[UUID, datetime] = {}
    async with db.connection() as conn:
        for tier_id, customer_ids in at_risk.items():
            found = await service.last_qualified(conn, program, tiers.by_id[tier_id], customer_ids)
            last.update({c: min(at, now) for c, at in found.items()})

    changes: list[Change] = []
    kinds: dict[UUID, str] = {}
    for r in rows:
        held = tiers.tier(r["tier_id"])
        qualified = tiers.tier(r["qualified_id"])
        holding = service.holding_of(r)
        decision = domain.decide(tiers.tiers, holding, qualified, last.get(r["id"]), now, zone)
        change = _change_for(r, decision, held, tiers, holding, last.get(r["id"]), now, currency, zone)
        if change is not None:
            changes.append(change)
            kinds[r["id"]] = decision.kind
    return changes, kinds


async def _write(
    program_id: UUID, changes: list[Change], kinds: dict[UUID, str], now: datetime, result: ReevaluationResult
) -> None:
    if not changes:
        return
    async with db.transaction() as conn:
        written = await apply(conn, program_id, changes, now)
    for cid in written:
        if kinds[cid] != "none":
            result.counts[kinds[cid]] += 1


def _change_for(
    r: dict[str, Any],
    decision: domain.Decision,
    held: domain.Tier | None,
    tiers: service.TierSet,
    holding: domain.Holding,
    last: datetime | None,
    now: datetime,
    currency: str,
    zone: Any,
) -> Change | None:
    values = tiers.values(r)
    if decision.kind in ("upgrade", "downgrade"):
        to = decision.tier
        basis = to if decision.kind == "upgrade" and to is not None else held
        assert basis is not None
        reason = f"re-evaluation: {service.qualification_text(basis, values[basis.metric_key], currency)}"
        if decision.kind == "downgrade" and holding.warned_at is not None:
            reason += f"; warned {holding.warned_at.date().isoformat()}"
        return service.move(r, to, held, now, decision.kind, "reevaluation", reason)
    assert held is not None or decision.kind == "none"
    if decision.kind == "warn":
        assert held is not None
        return _warning(r, decision, held, values[held.metric_key], currency, zone, now)
    if decision.kind == "withdraw_warning":
        assert held is not None
        return _keeping(
            r,
            change="warning_withdrawn",
            reason=f"qualifies again: {service.qualification_text(held, values[held.metric_key], currency)}",
        )
    # Nothing to do yet for a customer at risk: note when to look again, and leave them until then.
    if held is None or r["qualified_rank"] >= r["held_rank"]:
        return None
    planned = domain.downgrade_date(held, holding, last, now, zone)
    if holding.warned_at is not None:
        assert planned is not None
        check_after = domain.effective_downgrade_at(held, planned, holding.warned_at)
    elif planned is None:
        check_after = FAR_FUTURE
    else:
        check_after = planned - timedelta(days=held.warning_days)
    if check_after == r["tier_check_after"]:
        return None
    return _keeping(
        r,
        warned_at=r["tier_warned_at"],
        downgrade_at=r["tier_downgrade_at"],
        check_after=check_after,
        change=None,
    )


def _keeping(row: dict[str, Any], **changes: Any) -> Change:
    """The customer keeps the tier they hold (since, source, manual end); a warning is cleared unless
    `changes` says otherwise; by default a history row of the re-evaluation (`change` None: none)."""
    fields: dict[str, Any] = {
        "customer_id": row["id"],
        "old_tier_id": row["tier_id"],
        "old_warned_at": row["tier_warned_at"],
        "tier_id": row["tier_id"],
        "since": row["tier_since"],
        "source": row["tier_source"],
        "manual_until": row["tier_manual_until"],
        "from_tier_id": row["tier_id"],
        "to_tier_id": row["tier_id"],
        "cause": "reevaluation",
    }
    return Change(**(fields | changes))


def _warning(
    row: dict[str, Any],
    decision: domain.Decision,
    tier: domain.Tier,
    value: int,
    currency: str,
    zone: Any,
    now: datetime,
) -> Change:
    remaining = max(0, tier.threshold - value)
    when = decision.downgrade_at
    assert when is not None
    text = (
        f"{service.describe_amount(tier, remaining, currency)} more by "
        f"{when.astimezone(zone).strftime('%-d %b %Y')} keeps {tier.name}"
    )
    return _keeping(
        row,
        warned_at=now,
        downgrade_at=when,
        check_after=when,
        change="warning",
        reason=f"no longer qualifies: {service.qualification_text(tier, value, currency)}; {text}",
        details={"downgrade_at": when.isoformat(), "remaining": remaining},
        topic="tier.downgrade_warning",
        payload={
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
