"""Ledger use cases: credit, debit (FIFO), reversal with clawback debt, adjustments, history, status.

Each function takes the caller's transaction connection and never commits; it locks the customer's
balance row first, so every change to one customer's points is serialised. Domain events are returned
to the caller, which writes all of a use case's events in one outbox insert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from service.core.db import Connection
from service.core.errors import InsufficientPoints, InvalidInput
from service.ledger import domain, repository
from service.ledger.repository import NewEntry
from service.ledger.schemas import AdjustmentIn, AdjustmentOut, LedgerEntryOut
from service.outbox.service import Event, emit
from service.programs.schemas import ExpiryChangeOut
from service.programs.service import Program


def plural_points(points: int) -> str:
    return f"{points} point" if abs(points) == 1 else f"{points} points"


@dataclass(slots=True)
class LedgerResult:
    entries: list[tuple[int, NewEntry]] = field(default_factory=list)  # (id, what was written)
    events: list[Event] = field(default_factory=list)
    debt_recorded: int = 0
    debt_settled: int = 0


@dataclass(frozen=True, slots=True)
class Customer:
    """What the ledger needs to know of a customer (ids for rows, external id for event payloads)."""

    program_id: UUID
    id: UUID
    external_id: str


def customer_of(row: Any) -> Customer:
    """The ledger's view of a customer row (any row with program_id, id, external_id)."""
    return Customer(row["program_id"], row["id"], row["external_id"])


def _credit_event(
    topic: str,
    customer: Customer,
    entry: NewEntry,
    entry_id: int,
    state: str,
    available_at: datetime,
    expires_at: datetime | None,
) -> Event:
    payload: dict[str, Any] = {
        "customer": customer.external_id,
        "points": entry.points,
        "entry_id": entry_id,
        "state": state,
        "available_at": available_at,
        "expires_at": expires_at,
        "explanation": entry.explanation,
    }
    if entry.rule_id is not None:
        payload["rule"] = {"id": str(entry.rule_id), "version": entry.rule_version}
    return Event(topic, payload)


async def credit(
    conn: Connection,
    customer: Customer,
    points: int,
    *,
    kind: str,
    reason: str,
    explanation: str,
    now: datetime,
    available_at: datetime,
    expires_at: datetime | None,
    topic: str,
    order_id: UUID | None = None,
    actor: str | None = None,
    details: Any = None,
    rule: tuple[UUID, int] | None = None,
) -> LedgerResult:
    """Add a lot of `points`; an outstanding clawback debt is settled from it first."""
    result = LedgerResult()
    if points <= 0:
        return result
    balance = await repository.lock_balance(conn, customer.program_id, customer.id, now)
    state: domain.LotState = "available" if available_at <= now else "pending"
    lot_id = uuid4()
    # The debt is settled from the new lot first; the balance gets the net change in the same statement
    # (a debt and held points never coexist, not even between two statements).
    settled = domain.debt_settlement(balance.debt, points)
    held = points - settled
    earn = NewEntry(
        customer.program_id,
        customer.id,
        kind,
        points,
        reason,
        explanation,
        now,
        order_id=order_id,
        lot_id=lot_id,
        actor=actor,
        details=details,
        rule_id=rule[0] if rule else None,
        rule_version=rule[1] if rule else None,
    )
    entry_id = await repository.insert_credit(
        conn,
        earn,
        lot_id,
        state,
        available_at,
        expires_at,
        repository.BalanceChange.credited(held, state, debt=-settled, lifetime=points),
    )
    result.entries.append((entry_id, earn))
    result.events.append(_credit_event(topic, customer, earn, entry_id, state, available_at, expires_at))
    if settled:
        await _settle_debt(
            conn,
            customer,
            (domain.Draw(lot_id, settled, state),),
            now,
            result,
            order_id=order_id,
            lot_id=lot_id,
        )
    return result


async def _settle_debt(
    conn: Connection,
    customer: Customer,
    draws: tuple[domain.Draw, ...],
    now: datetime,
    result: LedgerResult,
    *,
    order_id: UUID | None = None,
    lot_id: UUID | None = None,
) -> None:
    """Settle the customer's clawback debt with `draws` (points just credited or given back): a
    `debt_settled` entry out of those lots, added to `result`. The caller updates the cached balance."""
    settled = sum(d.points for d in draws)
    settle = NewEntry(
        customer.program_id,
        customer.id,
        "debt_settled",
        -settled,
        "clawback debt settled",
        f"{plural_points(settled)} settled the debt left by an earlier refund of spent points",
        now,
        debt_change=-settled,
        order_id=order_id,
        lot_id=lot_id,
    )
    settle_id = await repository.insert_debit(conn, settle, draws)
    result.entries.append((settle_id, settle))
    result.debt_settled = settled
    result.events.append(
        Event(
            "points.debt_settled",
            {"customer": customer.external_id, "points": settled, "entry_id": settle_id},
        )
    )


@dataclass(frozen=True, slots=True)
class Credit:
    """One of several credits written together: its points, why, and the rule version that gave them."""

    points: int
    explanation: str
    rule: tuple[UUID, int] | None = None


async def credit_many(
    conn: Connection,
    customer: Customer,
    credits: list[Credit],
    *,
    kind: str,
    reason: str,
    now: datetime,
    available_at: datetime,
    expires_at: datetime | None,
    topic: str,
    order_id: UUID | None = None,
) -> LedgerResult:
    """`credit` of several amounts at once: one lot holding them all, one entry each (each names its rule
    version and explains its points), written in one statement."""
    credits = [c for c in credits if c.points > 0]
    balance = (
        await repository.lock_balance(conn, customer.program_id, customer.id, now)
        if len(credits) > 1
        else None
    )
    if balance is None or balance.debt > 0:
        # Nothing, one, or a debt to settle first: the one-by-one path, which settles it.
        total = LedgerResult()
        for c in credits:
            one = await credit(
                conn,
                customer,
                c.points,
                kind=kind,
                reason=reason,
                explanation=c.explanation,
                now=now,
                available_at=available_at,
                expires_at=expires_at,
                topic=topic,
                order_id=order_id,
                rule=c.rule,
            )
            total.entries.extend(one.entries)
            total.events.extend(one.events)
            total.debt_settled += one.debt_settled
        return total
    state: domain.LotState = "available" if available_at <= now else "pending"
    lot_id = uuid4()
    entries = [
        NewEntry(
            customer.program_id,
            customer.id,
            kind,
            c.points,
            reason,
            c.explanation,
            now,
            order_id=order_id,
            lot_id=lot_id,
            rule_id=c.rule[0] if c.rule else None,
            rule_version=c.rule[1] if c.rule else None,
        )
        for c in credits
    ]
    held = sum(c.points for c in credits)
    ids = await repository.insert_credits(
        conn,
        entries,
        lot_id,
        state,
        available_at,
        expires_at,
        repository.BalanceChange.credited(held, state, lifetime=held),
    )
    result = LedgerResult()
    for entry_id, entry in zip(ids, entries, strict=True):
        result.entries.append((entry_id, entry))
        result.events.append(_credit_event(topic, customer, entry, entry_id, state, available_at, expires_at))
    return result


async def lock(conn: Connection, customer: Customer, now: datetime) -> repository.Balance:
    """Take the customer's ledger mutex (their balance row, made if need be) until commit: what another
    feature holds while it decides on the customer's points (a redemption's limits, a code's state), so it
    and every ledger change of the customer happen one after the other. The cached figures as they are."""
    return await repository.lock_balance(conn, customer.program_id, customer.id, now)


async def lock_all(conn: Connection, customers: list[Customer], now: datetime) -> None:
    """`lock` for several customers at once, in customer order (the order the ledger's sweeps take):
    what a job that changes many customers' points in one transaction takes before it takes anything
    else a single request takes after its customer's lock (a limited reward's row), so no cycle forms."""
    for customer in sorted({c.id: c for c in customers}.values(), key=lambda c: c.id):
        await repository.lock_balance(conn, customer.program_id, customer.id, now)


def lock_sql(customer_param: str) -> str:
    """A query that takes the customer's ledger mutex (their balance row) until commit, for another feature
    to put in a statement of its own (one round trip fewer). The ledger makes the row with the customer's
    first change of points (`repository.lock_balance`, create-or-lock): a customer without one yet has no
    points to protect, and the ledger's own functions create and lock it before they change any."""
    return f"SELECT customer_id FROM customer_balance WHERE customer_id = {customer_param} FOR UPDATE"


def _balance_deltas(draws: tuple[domain.Draw, ...]) -> tuple[int, int]:
    available = -sum(d.points for d in draws if d.state == "available")
    pending = -sum(d.points for d in draws if d.state == "pending")
    return available, pending


async def debit(
    conn: Connection,
    customer: Customer,
    points: int,
    *,
    kind: str,
    reason: str,
    explanation: str,
    now: datetime,
    topic: str,
    actor: str | None = None,
    details: Any = None,
    locked: bool = False,
) -> LedgerResult:
    """Spend `points` from available lots, FIFO by expiry. Never overdraws: raises InsufficientPoints.
    `locked`: the caller holds the customer's ledger lock already (`lock`, in this transaction)."""
    if not locked:
        await repository.lock_balance(conn, customer.program_id, customer.id, now)
    lots = await repository.open_lots(conn, customer.id)
    try:
        draws = domain.plan_spend(lots, points, now)
    except domain.NotEnoughPoints as exc:
        raise InsufficientPoints(
            f"{plural_points(points)} requested, only {exc.available} available",
            field="points",
            extra={"available": exc.available, "shortfall": points - exc.available},
        ) from exc
    entry = NewEntry(
        customer.program_id,
        customer.id,
        kind,
        -points,
        reason,
        explanation,
        now,
        actor=actor,
        details=details,
    )
    entry_id = await repository.insert_debit(conn, entry, draws)
    available, pending = _balance_deltas(draws)
    await repository.update_balance(conn, customer.id, now, available=available, pending=pending)
    return LedgerResult(
        [(entry_id, entry)],
        [Event(topic, {"customer": customer.external_id, "points": -points, "entry_id": entry_id})],
    )


@dataclass(slots=True)
class GivenBack:
    result: LedgerResult
    returned: int  # points back in their lots (less any debt they settled)
    forfeited: int  # points whose lot had passed its expiry date: not given back
    entry_id: int | None  # the entry that gave them back (None: nothing went back)


async def give_back(
    conn: Connection,
    customer: Customer,
    spend_entry_id: int,
    *,
    reason: str,
    explanation: str,
    now: datetime,
    topic: str,
    details: Any = None,
) -> GivenBack:
    """Give back what a spend entry took, into the very lots it came from with their own expiry dates
    (domain.plan_give_back). Points whose lot has lapsed meanwhile go back into it and expire at once, as
    they would have unspent: an `expire` entry of that lot (and its order) says so. An outstanding
    clawback debt is settled from the points given back first, like from any credit."""
    balance = await repository.lock_balance(conn, customer.program_id, customer.id, now)
    spent, lots = await repository.drawn_by(conn, spend_entry_id)
    plan = domain.plan_give_back(spent, lots, now)
    result = LedgerResult()
    if not plan.moves and not plan.lapsed:
        return GivenBack(result, 0, 0, None)
    if plan.forfeited:
        explanation += (
            f"; {plural_points(plan.forfeited)} of them had passed their expiry date and expire again"
        )
        details = {**(details or {}), "forfeited_expired": plan.forfeited}
    entry = NewEntry(
        customer.program_id,
        customer.id,
        "redeem_return",
        plan.returned + plan.forfeited,
        reason,
        explanation,
        now,
        details=details,
    )
    moves = [(m.lot_id, m.points) for m in (*plan.moves, *plan.lapsed)]
    entry_id = await repository.insert_moves(conn, entry, moves)
    result.entries.append((entry_id, entry))
    result.events.append(
        Event(
            topic,
            {
                "customer": customer.external_id,
                "points": plan.returned,
                "forfeited_expired": plan.forfeited,
                "entry_id": entry_id,
                "explanation": explanation,
            },
        )
    )
    by_id = {lot.id: lot for lot in lots}
    for gone in plan.lapsed:
        lot = by_id[gone.lot_id]
        on = "" if lot.expires_at is None else f" on {lot.expires_at:%Y-%m-%d}"
        expired = NewEntry(
            customer.program_id,
            customer.id,
            "expire",
            -gone.points,
            "points expired",
            f"{plural_points(gone.points)} given back from a cancelled redemption had expired{on}",
            now,
            order_id=lot.order_id,
            lot_id=lot.id,
        )
        expired_id = await repository.insert_moves(conn, expired, [(lot.id, -gone.points)])
        result.entries.append((expired_id, expired))
    if plan.lapsed:
        result.events.append(
            Event(
                "points.expired",
                {"customer": customer.external_id, "points": plan.forfeited, "lots": len(plan.lapsed)},
            )
        )
    settled = domain.debt_settlement(balance.debt, plan.returned)
    if settled:
        await _settle_debt(conn, customer, plan.first(settled), now, result)
    await repository.update_balance(conn, customer.id, now, available=plan.returned - settled, debt=-settled)
    return GivenBack(result, plan.returned - settled, plan.forfeited, entry_id)


async def reverse(
    conn: Connection,
    customer: Customer,
    points: int,
    *,
    order_id: UUID,
    refund_id: UUID,
    reason: str,
    explanation: str,
    now: datetime,
    details: Any = None,
) -> LedgerResult:
    """Take back what a refunded part of an order earned; what was already spent becomes a debt."""
    if points <= 0:
        return LedgerResult()
    await repository.lock_balance(conn, customer.program_id, customer.id, now)
    lots = await repository.open_lots(conn, customer.id)
    plan = domain.plan_reversal(lots, order_id, points, await repository.forgivable_expired(conn, order_id))
    if plan.forgiven:
        explanation += f"; {plural_points(plan.forgiven)} of them had already expired and are not taken again"
        details = {**(details or {}), "forgiven_expired": plan.forgiven}
    if plan.debt:
        explanation += (
            f"; {plural_points(plan.debt)} had already been spent and are recorded as a debt "
            "that the next points earned settle first"
        )
    entry = NewEntry(
        customer.program_id,
        customer.id,
        "reverse",
        -plan.drawn,
        reason,
        explanation,
        now,
        debt_change=plan.debt,
        order_id=order_id,
        refund_id=refund_id,
        details=details,
    )
    if plan.draws:
        entry_id = await repository.insert_debit(conn, entry, plan.draws)
    else:
        entry_id = await repository.insert_entry(conn, entry)
    available, pending = _balance_deltas(plan.draws)
    await repository.update_balance(
        conn, customer.id, now, available=available, pending=pending, debt=plan.debt, lifetime=-points
    )
    payload = {
        "customer": customer.external_id,
        "points": -points,
        "debt_recorded": plan.debt,
        "forgiven_expired": plan.forgiven,
        "entry_id": entry_id,
        "explanation": explanation,
    }
    return LedgerResult([(entry_id, entry)], [Event("points.reversed", payload)], debt_recorded=plan.debt)


async def adjust(
    conn: Connection,
    customer: Customer,
    points: int,
    *,
    reason: str,
    actor: str,
    now: datetime,
    available_at: datetime,
    expires_at: datetime | None,
) -> LedgerResult:
    """A manual goodwill credit or correction debit; a debit that would overdraw raises InsufficientPoints."""
    explanation = f"Manual adjustment by {actor}: {reason}"
    if points > 0:
        return await credit(
            conn,
            customer,
            points,
            kind="adjust",
            reason=reason,
            explanation=explanation,
            now=now,
            available_at=available_at,
            expires_at=expires_at,
            topic="points.adjusted",
            actor=actor,
        )
    return await debit(
        conn,
        customer,
        -points,
        kind="adjust",
        reason=reason,
        explanation=explanation,
        now=now,
        topic="points.adjusted",
        actor=actor,
    )


async def note(
    conn: Connection,
    customer: Customer,
    *,
    kind: str,
    reason: str,
    explanation: str,
    now: datetime,
    actor: str,
    details: Any = None,
) -> LedgerResult:
    """An entry that moves no points, so the ledger tells what else was done for the customer (a code or a
    tier given as a recovery): the customer's story in one place."""
    entry = NewEntry(
        customer.program_id, customer.id, kind, 0, reason, explanation, now, actor=actor, details=details
    )
    return LedgerResult([(await repository.insert_entry(conn, entry), entry)])


def entry_views(
    result: LedgerResult, order_external_id: str | None = None, refund_external_id: str | None = None
) -> list[LedgerEntryOut]:
    """The entries a use case just wrote, as the API shows them (no need to read them back)."""
    return [
        LedgerEntryOut(
            id=entry_id,
            kind=entry.kind,
            points=entry.points,
            debt_change=entry.debt_change,
            reason=entry.reason,
            explanation=entry.explanation,
            created_at=entry.created_at,
            actor=entry.actor,
            order_external_id=order_external_id,
            refund_external_id=refund_external_id,
            details=entry.details,
            rule_id=entry.rule_id,
            rule_version=entry.rule_version,
        )
        for entry_id, entry in result.entries
    ]


async def entries_for_refund(conn: Connection, refund_id: UUID) -> list[dict[str, Any]]:
    return await repository.entries_by_ids(conn, await repository.entry_ids_for_refund(conn, refund_id))


async def history(
    conn: Connection, program_id: UUID, customer_id: UUID, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    return await repository.list_entries(conn, program_id, customer_id, before_id, limit)


def status_lateral(customer_id: str, recent: int, now: str) -> str:
    """SQL for the ledger's columns of the customer status at `now` (SQL expressions, e.g. a bind
    parameter holding the request's clock; see repository.status_lateral)."""
    return repository.status_lateral(customer_id, recent, now)


def points_select(customer_id: str, now: str) -> str:
    """A query of a customer's points at `now` (SQL expressions; columns customer_id, available, pending,
    debt, lifetime_earned) for other features to join (`LEFT JOIN LATERAL (...) points ON true`) instead
    of reading `customer_balance`, whose cached figures still hold lapsed points until the sweep."""
    return repository.balance_select(customer_id, now)


def order_pending_until_select(order_id: str) -> str:
    """A query (for another feature's SELECT list) of when the order's pending points become available."""
    return repository.order_pending_until_select(order_id)


async def balance(conn: Connection, customer_id: UUID, now: datetime) -> repository.Balance:
    """The customer's points at `now`: lots past their expiry date no longer count, swept or not."""
    found = await repository.get_balance(conn, customer_id, now)
    return found or repository.Balance(customer_id, 0, 0, 0, 0)


async def manual_adjustment(
    conn: Connection, program: Program, customer: Customer, data: AdjustmentIn, actor: str, now: datetime
) -> AdjustmentOut:
    """An agent's goodwill credit or correction debit: a reason is required, a debit may not overdraw."""
    if data.points == 0:
        raise InvalidInput("an adjustment of 0 points changes nothing", field="points")
    reason = data.reason.strip()
    if not reason:
        raise InvalidInput("say why: the reason is shown in the customer's ledger", field="reason")
    available_at, expires_at = domain.lot_dates(now, now, 0, program.points_expire_after_days)
    result = await adjust(
        conn,
        customer,
        data.points,
        reason=reason,
        actor=actor,
        now=now,
        available_at=available_at,
        expires_at=expires_at,
    )
    await emit(conn, customer.program_id, result.events, now)
    held = await balance(conn, customer.id, now)
    return AdjustmentOut(
        entries=entry_views(result), available=held.available, pending=held.pending, debt=held.debt
    )


async def reschedule_expiry(
    conn: Connection, program_id: UUID, before: int | None, after: int | None, now: datetime, actor: str
) -> ExpiryChangeOut | None:
    """The program's expiry period changes from `before` to `after` days (None: never): give the points
    customers hold their new dates by domain.ExpiryChange's rule, and note it in each one's ledger.

    Runs in the caller's transaction (the program's change), so the new period and the new dates commit
    together. An expiry date is not a points change: the entries carry 0 points and no allocation."""
    change = domain.ExpiryChange(before, after, now)
    if change.kind is None:
        return None
    done = await repository.reschedule_expiry(
        conn,
        program_id,
        now,
        change.kind,
        after,
        None if before is None or after is None else after - before,
        change.headline(),
        actor,
        {"points_expire_after_days": {"from": before, "to": after}},
    )
    return ExpiryChangeOut(
        kind=change.kind,
        from_days=before,
        to_days=after,
        rule=change.rule(),
        customers=done.customers,
        lots=done.lots,
        points=done.points,
        earliest_expires_at=done.earliest,
        latest_expires_at=done.latest,
    )
