"""What a gift rule would have given: its current version (active or not) played over what happened in a past
period [from, to), with the same dice and the same `domain.decide` as the live path. Writes nothing.

The occasions are the ones the rule's trigger can use, oldest first, each with the customer as they were then,
built as the live path builds them (`service.occasion_of`, `earning.pipeline`, `jobs`):

- orders (`order:<external id>` at `placed_at`): the customer's orders placed before it (count, the latest),
  the order's total, the tier held just before it and, for `first_order_after_upgrade`, the latest move up
  to a higher-ranked tier (or to a tier from none) before it, from the tier history the tiers feature
  publishes (`tier_upgraded_at`), as the live path reads it;
- refunds (`refund:<id>` at the refund's `created_at`) and `complaint` events (`event:<id>` at
  `occurred_at`), with the customer's orders and tier at that moment;
- birthdays and first-order anniversaries (`birthday:<year>`, `first_order_anniversary:<year>` at the local
  midnight of the program's date, as the daily sweep decides them): only dates that have begun by now, and
  a birthday only for a customer who existed that day; 29 February is kept on the 28th for a birthday and
  skipped for an anniversary in a year without one, as the sweep does.

The cooldown is kept per customer in memory, starting from their latest real gift or hold-out of any rule
before `from`; inside the period only this rule's simulated decisions count (its own live gifts in the
period, and other rules', are ignored, so a rule simulated over a period it decided live gives what it gave).
The budget starts empty, per budget period of the rule; each gift is priced as the live path prices it
today (the program's point value, the rewards' values). Each occasion is played as if decided when it
happened: the live path charges the budget period of the moment it decides and keeps the cooldown around
that moment too, so an order recorded a day late lands in the next day's (or month's) budget there.

Not covered, as nothing records it: a customer's marketing consent as it was then (today's is used); a gift
that would have failed when given (a reward out of stock); `detractor` rules (no feedback is recorded yet);
the live path's differences when orders arrive out of their `placed_at` order (it counts the orders recorded
before, the replay the orders placed before).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from service.core.db import Connection
from service.core.errors import InvalidInput, NotFound
from service.customers import service as customers
from service.gifts import domain, repository, service
from service.gifts.schemas import GiftRuleDefinition, SimulationIn, SimulationOut
from service.orders import service as orders
from service.programs.service import Program
from service.rewards.schemas import Money
from service.rules import service as rules
from service.rules.simulation import collector_paused
from service.tiers import published as tiers

MAX_PERIOD_DAYS = 366
ONE_DAY = timedelta(days=1)
# (customer id, customer external id, occasion): the id keys the cooldown, the external id the hold-out dice.
Seen = tuple[UUID, str, domain.Occasion]


@dataclass(slots=True)
class Tally:
    occasions: int = 0
    triggered: int = 0
    gifts: int = 0
    held_out: int = 0
    cost: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_period: dict[str, list[int]] = field(default_factory=dict)  # period -> [gifts, held out, cost]


def play(
    key: bytes,
    rule: domain.Rule,
    seen: Iterable[Seen],
    *,
    last_decided: Mapping[UUID, datetime],
    cooldown_days: int,
    zone: ZoneInfo,
    refunds: Mapping[UUID, Sequence[datetime]] | None = None,
) -> Tally:
    """Decide the occasions in their order, as the live path would have: `domain.decide`, then the budget
    (a gift it cannot pay gives nothing and starts no cooldown), then one decision per rule, customer and
    occasion (the table's unique key). `last_decided`: each customer's latest decision before the period;
    `refunds`: each customer's refund times, sorted (only for a rule with `no_refund_within_days`)."""
    tally = Tally()
    last = dict(last_decided)
    budget = domain.Budget(rule.budget[0]) if rule.budget is not None else None
    period_kind = rule.budget[1] if rule.budget is not None else "month"
    decided: set[tuple[UUID, str]] = set()
    decide, budget_period, cost = domain.decide, domain.budget_period, rule.cost
    for customer_id, customer, occasion in seen:
        tally.occasions += 1
        refund_at = None
        if refunds is not None:
            times = refunds.get(customer_id)
            if times:
                # As the live path: the latest refund recorded by the occasion, a refund's own not counted.
                find = bisect_left if occasion.trigger == "refund" else bisect_right
                index = find(times, occasion.at)
                refund_at = times[index - 1] if index else None
        decision = decide(
            key,
            rule,
            occasion,
            customer,
            last_gift_at=last.get(customer_id),
            cooldown_days=cooldown_days,
            last_refund_at=refund_at,
        )
        if decision.occasion is None:
            continue
        tally.triggered += 1
        if decision.outcome is None:
            tally.skipped[decision.reason] += 1
            continue
        once = (customer_id, decision.occasion)
        if once in decided:
            tally.skipped["decided already"] += 1
            continue
        period = budget_period(period_kind, occasion.at, zone)
        granted = decision.outcome == "granted"
        # As the live path: a hold-out only where the budget could have paid for the gift.
        if budget is not None and not budget.spend(
            period, cost if granted else 0, room=0 if granted else cost
        ):
            tally.skipped["budget"] += 1
            continue
        decided.add(once)
        last[customer_id] = occasion.at
        counts = tally.by_period.get(period)
        if counts is None:
            counts = tally.by_period[period] = [0, 0, 0]
        if granted:
            tally.gifts += 1
            tally.cost += cost
            counts[0] += 1
            counts[2] += cost
        else:
            tally.held_out += 1
            counts[1] += 1
    return tally


# --- the occasions ----------------------------------------------------------------------------------------


def birthday_on(birthday: date, year: int) -> date:
    """The day a birthday is celebrated in `year`: 29 February on the 28th in a year without one."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def _years(zone: ZoneInfo, start: datetime, end: datetime) -> range:
    return range(start.astimezone(zone).year, end.astimezone(zone).year + 1)


def birthday_moments(
    rows: Iterable[Mapping[str, Any]], zone: ZoneInfo, start: datetime, end: datetime, now: datetime
) -> list[tuple[UUID, str, datetime]]:
    """(customer id, key, local midnight) of the birthdays in [start, end) that had begun by `now`, of the
    customers who existed that day (the sweep could not see a customer created later)."""
    moments = []
    years = _years(zone, start, end)
    for row in rows:
        birthday: date = row["birthday"]
        for year in years:
            day = birthday_on(birthday, year)
            at = datetime.combine(day, time(), zone)
            if start <= at < end and at <= now and day >= birthday and row["created_at"] < at + ONE_DAY:
                moments.append((row["id"], f"birthday:{year}", at))
    return moments


def anniversary_moments(
    rows: Iterable[Mapping[str, Any]], zone: ZoneInfo, start: datetime, end: datetime, now: datetime
) -> list[tuple[UUID, str, datetime]]:
    """(customer id, key, local midnight) of the first-order anniversaries in [start, end) that had begun by
    `now`: the first order's local date in a later year (a 29 February one only in leap years)."""
    moments = []
    years = _years(zone, start, end)
    for row in rows:
        first: date = row["first_at"].astimezone(zone).date()
        for year in years:
            if year <= first.year or (first.month == 2 and first.day == 29 and not calendar.isleap(year)):
                continue
            at = datetime.combine(first.replace(year=year), time(), zone)
            if start <= at < end and at <= now:
                moments.append((row["customer_id"], f"first_order_anniversary:{year}", at))
    return moments


def _tiered(program: Program, rule: domain.Rule) -> bool:
    """Whether the tier held matters (and can be anything but none: a program that never had tiers)."""
    wanted = bool(rule.tiers) or rule.trigger == "first_order_after_upgrade"
    return wanted and bool(program.tiers_revision)


async def _orders(
    conn: Connection, program: Program, rule: domain.Rule, start: datetime, end: datetime
) -> list[Seen]:
    tiered = _tiered(program, rule)
    tier_sql = tiers.tier_key_held_at("h.customer_id", "h.placed_at") if tiered else "NULL"
    upgraded = tiered and rule.trigger == "first_order_after_upgrade"
    upgrade_sql = tiers.tier_upgraded_at("h.customer_id", "h.placed_at") if upgraded else "NULL::timestamptz"
    rows = await orders.replay_orders(
        conn, program.id, start, end, program.base_currency, tier_sql, upgrade_sql
    )
    occasion = domain.Occasion
    return [
        (
            row["customer_id"],
            row["customer_external_id"],
            occasion(
                trigger="order",
                key="order:" + row["external_id"],
                at=row["placed_at"],
                order_count=row["order_count"],
                last_order_at=row["last_order_at"],
                total=(row["total_amount"], row["currency"]),
                tier=row["tier"],
                # As service.occasion_of: an upgrade counts while a tier is held.
                upgraded_at=row["upgraded_at"] if row["tier"] else None,
                marketing_consent=row["marketing_consent"],
            ),
        )
        for row in rows
    ]


async def _as_they_were(
    conn: Connection,
    program: Program,
    rule: domain.Rule,
    moments: list[tuple[UUID, str, datetime]],
) -> list[Seen]:
    """Occasions without an order, with each customer as they were at its moment."""
    if not moments:
        return []
    tier_sql = tiers.tier_key_held_at("s.customer_id", "s.at") if _tiered(program, rule) else "NULL"
    rows = await repository.customers_at(
        conn,
        program.id,
        [(customer_id, at) for customer_id, _, at in moments],
        orders.customer_stats_lateral("s.customer_id", before="s.at"),
        tier_sql,
    )
    if len(rows) != len(moments):  # every occasion names a customer of the program (foreign keys)
        raise RuntimeError("a simulated occasion's customer is missing")
    return [
        (
            customer_id,
            row["external_id"],
            domain.Occasion(
                trigger=rule.trigger,
                key=key,
                at=at,
                order_count=int(row["order_count"]),
                last_order_at=row["last_order_at"],
                tier=row["tier"],
                marketing_consent=row["marketing_consent"],
            ),
        )
        for (customer_id, key, at), row in zip(moments, rows, strict=True)
    ]


async def occasions(
    conn: Connection, program: Program, rule: domain.Rule, start: datetime, end: datetime, now: datetime
) -> list[Seen]:
    """The occasions of [start, end) the rule's trigger can use, oldest first (only that kind is read)."""
    trigger = rule.trigger
    if trigger in domain.ORDER_TRIGGERS:
        return await _orders(conn, program, rule, start, end)
    if trigger == "refund":
        refunds = await orders.refunds_between(conn, program.id, start, end)
        return await _as_they_were(
            conn, program, rule, [(r["customer_id"], f"refund:{r['id']}", r["created_at"]) for r in refunds]
        )
    if trigger == "complaint":
        events = await rules.events_between(conn, program.id, "complaint", start, end)
        return await _as_they_were(
            conn, program, rule, [(e["customer_id"], f"event:{e['id']}", e["occurred_at"]) for e in events]
        )
    if trigger == "birthday":
        moments = birthday_moments(
            await customers.with_birthdays(conn, program.id), program.zone, start, end, now
        )
    elif trigger == "first_order_anniversary":
        firsts = await orders.first_orders(conn, program.id, end)
        moments = anniversary_moments(firsts, program.zone, start, end, now)
    else:
        raise InvalidInput(
            f"a {trigger!r} rule cannot be simulated: no such occasions are recorded to replay",
            field="path:gift_rule_id",
        )
    seen = await _as_they_were(conn, program, rule, moments)
    # The sweep decides a day's customers in the order of their external ids (it matters for the budget).
    seen.sort(key=lambda s: (s[2].at, s[1]))
    return seen


async def _refund_times(
    conn: Connection, program_id: UUID, rule: domain.Rule, start: datetime, end: datetime
) -> dict[UUID, list[datetime]]:
    """Each customer's refund times that a `no_refund_within_days` rule can see from the period."""
    assert rule.no_refund_within_days is not None
    since = start - timedelta(days=rule.no_refund_within_days)
    times: dict[UUID, list[datetime]] = {}
    for refund in await orders.refunds_between(conn, program_id, since, end):
        times.setdefault(refund["customer_id"], []).append(refund["created_at"])
    return times  # oldest first, as read


# --- the use case -----------------------------------------------------------------------------------------


async def simulate(
    conn: Connection, program: Program, rule_id: UUID, data: SimulationIn, now: datetime
) -> SimulationOut:
    if data.to <= data.from_:
        raise InvalidInput("`to` must be after `from`", field="to")
    if data.to - data.from_ > timedelta(days=MAX_PERIOD_DAYS):
        raise InvalidInput(f"simulate at most {MAX_PERIOD_DAYS} days at a time", field="to")
    row = await repository.get_rule(conn, program.id, rule_id)
    if row is None:
        raise NotFound(f"no gift rule {rule_id} in this program", field="path:gift_rule_id")
    definition = msgspec.convert(row["definition"], GiftRuleDefinition)
    # Priced as the live path prices a gift now: today's point value and rewards.
    cost = await service.price(conn, program, definition)
    rule = service.compile_rule(definition, row["id"], row["current_version"], cost, row["created_at"])
    cooldown = program.gift_cooldown_days
    with collector_paused():  # a few hundred thousand objects, none in a cycle (see rules.simulation)
        seen = await occasions(conn, program, rule, data.from_, data.to, now)
        last = (
            await repository.latest_decisions(
                conn, program.id, data.from_ - timedelta(days=cooldown), data.from_
            )
            if cooldown and seen
            else {}
        )
        refunds = (
            await _refund_times(conn, program.id, rule, data.from_, data.to)
            if domain.needs_refund_date(rule) and seen
            else None
        )
        tally = play(
            program.gift_key.encode(),
            rule,
            seen,
            last_decided=last,
            cooldown_days=cooldown,
            zone=program.zone,
            refunds=refunds,
        )
        del seen
    currency = program.base_currency
    return SimulationOut(
        rule_id=rule.id,
        rule_version=rule.version,
        from_=data.from_,
        to=data.to,
        occasions=tally.occasions,
        triggered=tally.triggered,
        gifts=tally.gifts,
        held_out=tally.held_out,
        cost=Money(amount=tally.cost, currency=currency),
        skipped=dict(sorted(tally.skipped.items())),
        by_period=[
            {"period": period, "gifts": g, "held_out": h, "cost": {"amount": c, "currency": currency}}
            for period, (g, h, c) in tally.by_period.items()
        ],
    )
