"""VIP tiers: the tier set (CRUD, checks, a per-process cache), upgrades inside an order's or event's
transaction, manual assignment, the customer's standing, and the history of changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.money import format_money
from service.core.pagination import decode_cursor, encode_cursor
from service.customers import service as customers
from service.programs import service as programs
from service.programs.service import Program
from service.tiers import domain, published, repository
from service.tiers.repository import Change
from service.tiers.schemas import (
    AtRisk,
    CustomerTier,
    ManualTierIn,
    MetricAmount,
    MoneyThreshold,
    TierBenefits,
    TierChangeOut,
    TierCreate,
    TierDefinition,
    TierDeleted,
    TierHistory,
    TierOut,
    TierPatch,
    TierProgress,
    TierRef,
)

# What other features read of tier state, as SQL fragments (defined, and documented, in published.py).
TIER_LATERAL = published.TIER_LATERAL
TIER_NAME_LATERAL = published.TIER_NAME_LATERAL
tier_key_held_at = published.tier_key_held_at

DEFAULT_MONTHS = 12
MAX_MULTIPLIER = Decimal(10)


# --- the tier set -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierSet:
    """A program's tiers as the evaluator uses them, with the queries built for their metrics."""

    tiers: tuple[domain.Tier, ...]  # by rank
    definitions: dict[UUID, TierDefinition]
    keys: tuple[domain.MetricKey, ...]
    one_customer: repository.MetricQuery | None
    all_customers: repository.MetricQuery | None
    by_key: dict[str, domain.Tier] = field(default_factory=dict)
    by_id: dict[UUID, domain.Tier] = field(default_factory=dict)

    def tier(self, tier_id: UUID | None) -> domain.Tier | None:
        """The tier of this id (None: no id, or not one of the program's tiers)."""
        return None if tier_id is None else self.by_id.get(tier_id)

    def starts(self, now: datetime, zone: Any) -> list[datetime]:
        query = self.all_customers
        if query is None:
            return []
        return [s for k in query.starts if (s := domain.window_start(k, now, zone)) is not None]

    def values(self, row: dict[str, Any] | None) -> dict[domain.MetricKey, int]:
        return {k: (row or {}).get(k.column) or 0 for k in self.keys}

    def qualified_sql(self) -> tuple[str, str]:
        """CASEs over the metric columns of `m` giving the id and the rank (-1: none) of the highest tier
        they reach: `domain.qualified_tier` for the database (a test holds the two together)."""
        ids = " ".join(
            f"WHEN coalesce(m.{t.metric_key.column}, 0) >= {int(t.threshold)} THEN '{t.id}'::uuid"
            for t in reversed(self.tiers)
        )
        ranks = " ".join(
            f"WHEN coalesce(m.{t.metric_key.column}, 0) >= {int(t.threshold)} THEN {int(t.rank)}"
            for t in reversed(self.tiers)
        )
        return f"CASE {ids} END", f"CASE {ranks} ELSE -1 END"

    def held_rank_sql(self) -> str:
        """A CASE giving the rank of the tier `h.tier_id` (-1: none), `h` the customer's tier row."""
        ranks = " ".join(f"WHEN '{t.id}'::uuid THEN {int(t.rank)}" for t in self.tiers)
        return f"CASE h.tier_id {ranks} ELSE -1 END"


def _threshold(definition: TierDefinition) -> int:
    threshold = definition.qualification.threshold
    return threshold.amount if isinstance(threshold, MoneyThreshold) else threshold


def to_domain(row: dict[str, Any], definition: TierDefinition) -> domain.Tier:
    q = definition.qualification
    return domain.Tier(
        id=row["id"],
        key=row["key"],
        name=definition.name,
        rank=definition.rank,
        metric=q.metric,
        threshold=_threshold(definition),
        window=q.window,
        months=(q.months or DEFAULT_MONTHS) if q.window == "rolling_months" else 0,
        retain_next_window=definition.retention.keep_until_end_of_next_window,
        grace_days=definition.retention.grace_days,
        downgrade_policy=definition.downgrade,
        warning_days=definition.retention.warning_days,
        earn_multiplier=definition.benefits.earn_multiplier,
        version=row["version"],
    )


def _definition(row: dict[str, Any]) -> TierDefinition:
    return msgspec.convert(row["definition"], TierDefinition)


def tier_of(row: dict[str, Any]) -> domain.Tier:
    """A stored tier row as the evaluator's Tier."""
    return to_domain(row, _definition(row))


def build_set(rows: Sequence[dict[str, Any]]) -> TierSet:
    definitions = {r["id"]: _definition(r) for r in rows}
    tiers = tuple(domain.by_rank([to_domain(r, definitions[r["id"]]) for r in rows]))
    keys = tuple(dict.fromkeys(t.metric_key for t in tiers))
    return TierSet(
        tiers=tiers,
        definitions=definitions,
        keys=keys,
        one_customer=repository.metric_query(keys, who="one") if keys else None,
        all_customers=repository.metric_query(keys, who="all") if keys else None,
        by_key={t.key: t for t in tiers},
        by_id={t.id: t for t in tiers},
    )


_sets: dict[UUID, tuple[int, TierSet]] = {}


async def tier_set(conn: Connection, program: Program) -> TierSet:
    """The program's tiers, cached per process until its tiers revision moves."""
    cached = _sets.get(program.id)
    if cached is not None and cached[0] == program.tiers_revision:
        return cached[1]
    built = build_set(await repository.tier_definitions(conn, program.id))
    _sets[program.id] = (program.tiers_revision, built)
    return built


# --- CRUD ---------------------------------------------------------------------------------------------------------


def _check(definition: TierDefinition, program: Program) -> None:
    q = definition.qualification
    threshold = q.threshold
    if q.metric == "spend":
        if not isinstance(threshold, MoneyThreshold):
            raise InvalidInput(
                f'a spend threshold is money: {{"amount": 50000, "currency": "{program.base_currency}"}}',
                field="qualification.threshold",
            )
        if threshold.currency != program.base_currency:
            raise InvalidInput(
                f"spend counts in the program's base currency {program.base_currency}, not {threshold.currency}",
                field="qualification.threshold.currency",
            )
    elif isinstance(threshold, MoneyThreshold):
        raise InvalidInput(
            f"a {q.metric} threshold is a whole number of {q.metric}, not money",
            field="qualification.threshold",
        )
    if q.months is not None and q.window != "rolling_months":
        raise InvalidInput("`months` belongs to a rolling_months window only", field="qualification.months")
    multiplier = definition.benefits.earn_multiplier
    if not multiplier.is_finite() or not Decimal(1) <= multiplier <= MAX_MULTIPLIER:
        raise InvalidInput(
            f"the earn multiplier is between 1 (no bonus) and {MAX_MULTIPLIER}",
            field="benefits.earn_multiplier",
        )
    if multiplier.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidInput("the earn multiplier has at most two decimals", field="benefits.earn_multiplier")


def _checked(definition: TierDefinition, program: Program) -> TierDefinition:
    """The definition checked, with a rolling window's default length written out (as it will be shown)."""
    _check(definition, program)
    q = definition.qualification
    if q.window == "rolling_months" and q.months is None:
        qualification = msgspec.structs.replace(q, months=DEFAULT_MONTHS)
        return msgspec.structs.replace(definition, qualification=qualification)
    return definition


def _check_set(tiers: Sequence[domain.Tier]) -> None:
    overlap = domain.overlaps(tiers)
    if overlap is not None:
        raise InvalidInput(
            overlap.message, field="rank" if overlap.field == "rank" else "qualification.threshold"
        )


def _out(row: dict[str, Any]) -> TierOut:
    definition = _definition(row)
    return TierOut(
        **msgspec.structs.asdict(definition),
        key=row["key"],
        id=row["id"],
        version=row["version"],
        customers=row.get("customers") or 0,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _row(conn: Connection, program_id: UUID, key: str) -> dict[str, Any]:
    row = await repository.get_tier(conn, program_id, key)
    if row is None:
        raise NotFound(f"no tier {key!r} in this program", field="path:key")
    return row


async def _others(conn: Connection, program_id: UUID, except_id: UUID | None) -> list[domain.Tier]:
    rows = await repository.tier_definitions(conn, program_id)
    return [tier_of(r) for r in rows if r["id"] != except_id]


async def create(conn: Connection, program: Program, data: TierCreate, now: datetime) -> TierOut:
    fields = msgspec.structs.asdict(data)
    key = fields.pop("key")
    definition = _checked(TierDefinition(**fields), program)
    await repository.lock_program(conn, program.id)
    if await repository.get_tier(conn, program.id, key) is not None:
        raise Conflict(f"the program has a tier {key!r} already", field="key")
    tier_id = uuid4()
    row = {"id": tier_id, "key": key, "version": 1}
    _check_set([*await _others(conn, program.id, None), to_domain(row, definition)])
    await repository.insert_tier(conn, tier_id, program.id, key, msgspec.to_builtins(definition), now)
    await programs.bump_tiers_revision(conn, program.id)
    return _out(await _row(conn, program.id, key))


async def update(conn: Connection, program: Program, key: str, patch: TierPatch, now: datetime) -> TierOut:
    await repository.lock_program(conn, program.id)
    row = await _row(conn, program.id, key)
    current = _definition(row)
    changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
    if not changes:
        return _out(row)
    definition = _checked(msgspec.structs.replace(current, **changes), program)
    _check_set([*await _others(conn, program.id, row["id"]), to_domain(row, definition)])
    await repository.update_tier(conn, row["id"], msgspec.to_builtins(definition), now)
    await programs.bump_tiers_revision(conn, program.id)
    return _out(await _row(conn, program.id, key))


async def list_all(conn: Connection, program_id: UUID) -> list[TierOut]:
    return [_out(r) for r in await repository.active_tiers(conn, program_id)]


async def get(conn: Connection, program_id: UUID, key: str) -> TierOut:
    return _out(await _row(conn, program_id, key))


async def delete(
    conn: Connection, program: Program, key: str, move_to: str | None, now: datetime
) -> TierDeleted:
    """Delete a tier; its holders move to `move_to` (a tier key, or `none`). Without `move_to`, a tier that
    customers hold is refused (409): where they go is the marketer's decision, not ours."""
    await repository.lock_program(conn, program.id)
    row = await _row(conn, program.id, key)
    target: domain.Tier | None = None
    if move_to is not None and move_to != "none":
        if move_to == key:
            raise InvalidInput("a tier's customers cannot move to the tier being deleted", field="move_to")
        target_row = await repository.get_tier(conn, program.id, move_to)
        if target_row is None:
            raise InvalidInput(f"no tier {move_to!r} to move the customers to", field="move_to")
        target = tier_of(target_row)
    holders = await repository.holders(conn, program.id, row["id"])
    if holders and move_to is None:
        raise Conflict(
            f"{len(holders)} customers hold tier {key!r}: give `move_to` (a tier key, or `none`) to delete it",
            field="move_to",
            extra={"customers": len(holders)},
        )
    deleted = tier_of(row)
    reason = f"tier {deleted.name} deleted; moved to {target.name if target else 'no tier'}"
    await repository.apply(
        conn,
        program.id,
        [move(h, target, deleted, now, "moved", "tier_deleted", reason) for h in holders],
        now,
    )
    await repository.delete_tier(conn, row["id"], now)
    await programs.bump_tiers_revision(conn, program.id)
    return TierDeleted(key=key, customers_moved=len(holders), moved_to=target.key if target else None)


# --- changes --------------------------------------------------------------------------------------------------


def holding_of(row: dict[str, Any]) -> domain.Holding:
    return domain.Holding(
        tier_id=row["tier_id"],
        source=row["tier_source"] or "earned",
        since=row["tier_since"],
        manual_until=row["tier_manual_until"],
        warned_at=row["tier_warned_at"],
    )


def move(
    row: dict[str, Any],
    to: domain.Tier | None,
    current: domain.Tier | None,
    now: datetime,
    change: str,
    cause: str,
    reason: str,
    actor: str | None = None,
    *,
    source: str = "earned",
    manual_until: datetime | None = None,
) -> Change:
    """The customer in `row` moves from `current` to tier `to` (any warning cleared), announced as
    `tier.upgraded` or `tier.downgraded` when the tier changes."""
    same = (to.id if to else None) == row["tier_id"]
    topic = payload = None
    if not same:
        up = to is not None and (current is None or to.rank > current.rank)
        topic = "tier.upgraded" if up else "tier.downgraded"
        payload = {
            "customer": row["external_id"],
            "from": _ref(current),
            "to": _ref(to),
            "cause": cause,
            "reason": reason,
        }
    return Change(
        customer_id=row["id"],
        old_tier_id=row["tier_id"],
        old_warned_at=row["tier_warned_at"],
        tier_id=to.id if to else None,
        since=row["tier_since"] if same else (now if to else None),
        source=source,
        manual_until=manual_until,
        change=change,
        from_tier_id=row["tier_id"],
        to_tier_id=to.id if to else None,
        cause=cause,
        reason=reason,
        actor=actor,
        topic=topic,
        payload=payload,
    )


def _ref(tier: domain.Tier | None) -> dict[str, Any] | None:
    """A tier as event payloads name it (the API's TierRef)."""
    return None if tier is None else msgspec.structs.asdict(_tier_ref(tier))


def describe_amount(tier: domain.Tier, amount: int, currency: str) -> str:
    if tier.metric == "spend":
        return format_money(amount, currency)
    if tier.metric == "orders":
        return f"{amount} order" + ("" if amount == 1 else "s")
    return f"{amount} point" + ("" if amount == 1 else "s")


def _window_text(tier: domain.Tier) -> str:
    if tier.window == "rolling_months":
        return f"over {tier.months} months"
    return "this year" if tier.window == "calendar_year" else "in all"


def qualification_text(tier: domain.Tier, value: int, currency: str) -> str:
    what = {"spend": "spend", "orders": "orders", "points": "points earned"}[tier.metric]
    return (
        f"{what} {_window_text(tier)} {describe_amount(tier, value, currency)} "
        f"({tier.name} needs {describe_amount(tier, tier.threshold, currency)})"
    )


def out_of_reach(above: Sequence[domain.Tier], customer: dict[str, Any], spend: int, orders: int) -> bool:
    """Whether no tier above can have been reached, by bounds the order already read: a window's spend is
    at most the lifetime spend (before this order, from the customer's order stats) plus this order's, its
    orders at most the order count plus one. Spares most orders the metrics query; points have no bound."""
    if "lifetime_spend" not in customer:
        return False
    for tier in above:
        if tier.metric == "spend":
            bound = (customer["lifetime_spend"] or 0) + spend
        elif tier.metric == "orders":
            bound = (customer["order_count"] or 0) + orders
        else:
            return False
        if bound >= tier.threshold:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Lifted:
    """The upgrade an order or event caused (activity only ever lifts a tier; downgrades come from the
    re-evaluation): from which tier (None: none), to which, and why, as the tier history says it."""

    from_tier: TierRef | None
    to_tier: TierRef
    reason: str


# How often an upgrade is decided again when the tier state it was decided on moved before it was
# written (a re-evaluation or a tier's deletion commits in between): each time on the state that won.
_LIFT_ATTEMPTS = 3


async def after_activity(
    conn: Connection,
    program: Program,
    customer: dict[str, Any],
    now: datetime,
    cause: str,
    ref: str,
    *,
    spend: int = 0,
    orders: int = 0,
) -> Lifted | None:
    """Inside the order's or event's transaction (the customer row locked): lift the customer to the
    highest tier their metrics now reach, if above the one they hold. Never down: that is for the
    re-evaluation, after a warning. `customer`: the row with TIER_LATERAL's columns (read without
    them, the tier state costs a query). Returns the upgrade written, None if the tier stays."""
    tiers = await tier_set(conn, program)
    if not tiers.tiers or tiers.one_customer is None:
        return None
    # The tier row is not locked by the customer's lock: what the upsert read may have moved since.
    row = (
        customer if "tier_id" in customer else {**customer, **await repository.holding(conn, customer["id"])}
    )
    values: dict[domain.MetricKey, int] | None = None
    for _ in range(_LIFT_ATTEMPTS):
        current = tiers.tier(row["tier_id"])
        above = [t for t in tiers.tiers if current is None or t.rank > current.rank]
        if not above or out_of_reach(above, customer, spend, orders):
            return None
        if values is None:  # the order's own transaction: its metrics do not move between attempts
            values = tiers.values(
                await repository.metrics_of(
                    conn,
                    tiers.one_customer,
                    program.id,
                    program.base_currency,
                    customer["id"],
                    tiers.starts(now, program.zone),
                )
            )
        target = domain.upgrade_on_activity(
            tiers.tiers, holding_of(row), domain.qualified_tier(above, values)
        )
        if target is None:
            return None
        reason = (
            f"{cause} {ref}: {qualification_text(target, values[target.metric_key], program.base_currency)}"
        )
        change = move(row, target, current, now, "upgrade", cause, reason)
        if customer["id"] in await repository.apply(conn, program.id, [change], now):
            return Lifted(
                from_tier=_tier_ref(current) if current else None, to_tier=_tier_ref(target), reason=reason
            )
        row = {**customer, **await repository.holding(conn, customer["id"])}
    return None


async def assign(
    conn: Connection, program: Program, external_id: str, data: ManualTierIn, now: datetime
) -> CustomerTier:
    """An admin's gesture: this tier (or none) with a reason, until a date or for good. A manual tier is a
    floor: the customer still rises by their own qualification, and drops only after it ends (warned)."""
    customer = await customers.get(conn, program.id, external_id, lock=True)
    # The tier row locked too (made if need be): a re-evaluation cannot move it under the gesture.
    row = {**customer, **await repository.lock_holding(conn, program.id, customer["id"])}
    tiers = await tier_set(conn, program)
    target = None
    if data.tier is not None:
        target = tiers.by_key.get(data.tier)
        if target is None:
            raise InvalidInput(f"no tier {data.tier!r} in this program", field="tier")
    if data.until is not None and data.until <= now:
        raise InvalidInput("`until` is in the past: the gesture would end before it starts", field="until")
    if target is None and data.until is not None:
        raise InvalidInput("`until` goes with a tier; to take the tier away leave it out", field="until")
    current = tiers.tier(row["tier_id"])
    until = f" until {data.until.date().isoformat()}" if data.until else ""
    reason = f"set by hand to {target.name if target else 'no tier'}{until}: {data.reason}"
    change = move(
        row,
        target,
        current,
        now,
        "manual",
        "manual",
        reason,
        data.actor,
        source="manual" if target else "earned",
        manual_until=data.until if target else None,
    )
    await repository.apply(conn, program.id, [change], now)
    return await standing(conn, program, external_id, now)


# --- the customer's standing -----------------------------------------------------------------------------------


def _amount(tier: domain.Tier, current: int, currency: str) -> MetricAmount:
    return MetricAmount(
        metric=tier.metric,
        window=tier.window,
        months=tier.months or None,
        current=current,
        needed=tier.threshold,
        remaining=max(0, tier.threshold - current),
        currency=currency if tier.metric == "spend" else None,
    )


def _tier_ref(tier: domain.Tier) -> TierRef:
    return TierRef(key=tier.key, name=tier.name, rank=tier.rank)


def _more_text(tier: domain.Tier, remaining: int, currency: str) -> str:
    verb = {"spend": "spend", "orders": "place", "points": "earn"}[tier.metric]
    return f"{verb} {describe_amount(tier, remaining, currency)} more"


async def last_qualified(
    conn: Connection, program: Program, tier: domain.Tier, customer_ids: Sequence[UUID]
) -> dict[UUID, datetime]:
    return await repository.last_qualified(
        conn,
        tier.metric_key,
        tier.threshold,
        program.timezone,
        program.id,
        program.base_currency,
        customer_ids,
    )


async def standing(conn: Connection, program: Program, external_id: str, now: datetime) -> CustomerTier:
    row = await customers.get(conn, program.id, external_id, TIER_LATERAL)
    return await standing_of(conn, program, row, now) or _no_tier(None)


def _no_tier(next_tier: TierProgress | None) -> CustomerTier:
    return CustomerTier(
        tier=None,
        since=None,
        source=None,
        manual_until=None,
        benefits=None,
        qualification=None,
        period_ends_at=None,
        next_tier=next_tier,
        at_risk=None,
    )


async def standing_of(
    conn: Connection, program: Program, row: dict[str, Any], now: datetime
) -> CustomerTier | None:
    """The customer's tier, progress to the next one and any risk of losing it; None if the program has
    no tiers and the customer holds none. `row`: the customer with TIER_LATERAL's columns (read without
    them, the tier state costs a query)."""
    tiers = await tier_set(conn, program)
    if not tiers.tiers:
        return None
    if "tier_id" not in row:
        row = {**row, **await repository.holding(conn, row["id"])}
    zone = program.zone
    currency = program.base_currency
    assert tiers.one_customer is not None
    values = tiers.values(
        await repository.metrics_of(
            conn, tiers.one_customer, program.id, currency, row["id"], tiers.starts(now, zone)
        )
    )
    holding = holding_of(row)
    current = tiers.tier(holding.tier_id)
    qualified = domain.qualified_tier(tiers.tiers, values)
    up = domain.next_up(tiers.tiers, current)
    next_tier = None
    if up is not None:
        amounts = _amount(up, values[up.metric_key], currency)
        next_tier = TierProgress(
            tier=_tier_ref(up),
            amounts=amounts,
            period_ends_at=domain.period_end(up, now, zone),
            text=f"{_more_text(up, amounts.remaining, currency)} to reach {up.name}",
        )
    if current is None:
        return _no_tier(next_tier)
    definition = tiers.definitions[current.id]
    qualification = _amount(current, values[current.metric_key], currency)
    at_risk = None
    if qualified is None or qualified.rank < current.rank:
        found = await last_qualified(conn, program, current, [row["id"]])
        last = min(found[row["id"]], now) if row["id"] in found else None
        planned = domain.downgrade_date(current, holding, last, now, zone)
        if planned is not None:
            warned = holding.warned_at or max(now, planned - timedelta(days=current.warning_days))
            downgrade_at = domain.effective_downgrade_at(current, planned, warned)
            to = domain.downgrade_target(tiers.tiers, current, qualified)
            at_risk = AtRisk(
                downgrade_at=downgrade_at,
                to_tier=_tier_ref(to) if to else None,
                warned_at=holding.warned_at,
                keep=qualification,
                text=f"{_more_text(current, qualification.remaining, currency)} by "
                f"{downgrade_at.astimezone(zone).strftime('%-d %b %Y')} to keep {current.name}",
            )
    return CustomerTier(
        tier=_tier_ref(current),
        since=holding.since,
        source=holding.source,
        manual_until=holding.manual_until,
        benefits=TierBenefits(
            earn_multiplier=definition.benefits.earn_multiplier,
            free_shipping=definition.benefits.free_shipping,
            perks=list(definition.benefits.perks),
        ),
        qualification=qualification,
        period_ends_at=domain.period_end(current, now, zone),
        next_tier=next_tier,
        at_risk=at_risk,
    )


async def history(
    conn: Connection, program_id: UUID, external_id: str, cursor: str | None, limit: int
) -> TierHistory:
    row = await customers.get(conn, program_id, external_id)
    before = decode_cursor(cursor)
    rows = await repository.history(conn, row["id"], before, limit + 1)

    def ref(prefix: str, r: dict[str, Any]) -> TierRef | None:
        key = r[f"{prefix}_key"]
        return None if key is None else TierRef(key=key, name=r[f"{prefix}_name"], rank=r[f"{prefix}_rank"])

    items = [
        TierChangeOut(
            id=r["id"],
            change=r["change"],
            from_tier=ref("from", r),
            to_tier=ref("to", r),
            cause=r["cause"],
            reason=r["reason"],
            actor=r["actor"],
            created_at=r["created_at"],
        )
        for r in rows[:limit]
    ]
    return TierHistory(
        items=items, next_cursor=encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None
    )


async def upgraded_before(conn: Connection, customer_id: UUID, at: datetime) -> datetime | None:
    """When the customer last moved up (to a tier from none, or to a higher-ranked one) before `at`."""
    return await repository.upgraded_before(conn, customer_id, at)
