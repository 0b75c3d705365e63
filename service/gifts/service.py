"""Surprise gifts: rules with versions, the cached active set, and deciding and giving inside the caller's
transaction (an order, a refund, an event, the daily sweep). The decisions are in `domain` (pure).

Giving happens under the customer's ledger lock, taken before the cooldown is read, so the read sees every
gift committed before. A decision and its budget are written in one statement (both or neither); a rule
that gives codes writes in a savepoint, as a code can be refused when granted (out of stock, a limit): it
rolls back alone, is recorded on the rule after the commit, and never fails the order.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec
import structlog

from service.core import db
from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.money import format_money, is_currency
from service.core.pagination import decode_position, encode_position
from service.core.strict_input import patched
from service.gifts import domain, repository
from service.gifts.schemas import (
    BudgetUse,
    FreeShippingGift,
    GiftKeyOut,
    GiftList,
    GiftOut,
    GiftRuleCreate,
    GiftRuleDefinition,
    GiftRuleOut,
    GiftRulePatch,
    GiftRuleProblems,
    GiftRuleVersionOut,
    GiftStatsOut,
    GivenOut,
    GroupRate,
    ItemGift,
    NoteGift,
    NthOrder,
    OrderOver,
    PointsGift,
    RandomShare,
    RepeatWindow,
    ReturningCustomer,
    RewardGift,
    SurpriseOut,
)
from service.ledger import domain as ledger_domain
from service.ledger import service as ledger
from service.messaging import notes
from service.messaging import service as messaging
from service.messaging.bounds import RenderLimit
from service.messaging.locales import choose_locale
from service.messaging.rendering import TemplateProblem
from service.messaging.variables import customer_vars, order_vars
from service.orders import service as orders
from service.outbox.service import Event
from service.programs import service as programs
from service.programs.service import Program
from service.rewards import service as rewards
from service.rewards.schemas import Money
from service.tiers import service as tiers

log = structlog.get_logger("encore.gifts")

# What the decisions read of a customer besides its row (order stats, tier), as LATERAL joins.
CUSTOMER_CONTEXT = (orders.customer_stats_lateral("c.id"), tiers.TIER_LATERAL)
WAITING_LATERAL = repository.WAITING_LATERAL
MAX_DECIMALS = 6


# --- definitions: check, price, compile -------------------------------------------------------------


def _share(value: Decimal, field: str, *, positive: bool = False) -> None:
    low = "more than 0" if positive else "0"
    if not value.is_finite() or not (Decimal(0) < value if positive else Decimal(0) <= value) or value > 1:
        raise InvalidInput(f'a share from {low} to 1 (a decimal string such as "0.1")', field=field)
    if -value.as_tuple().exponent > MAX_DECIMALS:  # type: ignore[operator]
        raise InvalidInput(f"a share has at most {MAX_DECIMALS} decimal places", field=field)


def base_amount(money: Money, program: Program, field: str) -> int:
    """The amount of a cost or budget, which must be in the program's base currency (422 naming
    `field.currency` otherwise)."""
    if money.currency != program.base_currency:
        raise InvalidInput(
            f"costs and budgets are in the program's base currency {program.base_currency}",
            field=f"{field}.currency",
        )
    return money.amount


async def reward_cost(
    conn: Connection,
    program: Program,
    reward_id: UUID,
    cost: Money | None,
    field: str,
    *,
    kind: str | None = None,
    points_price: bool = False,
) -> int:
    """What a reward given as a code at no cost is worth (base minor units): `cost` when the caller may name
    it (a marketer's gift rule), else its fixed value in the base currency, else (`points_price`: a reward
    given now at a price nobody names, as recovery's budget needs) its price in points at the program's
    point value. `kind`: the reward must be of it (free shipping). Raises InvalidInput naming `field`
    (`...reward_id`, `...cost`) when it cannot be given or priced."""
    reward = await rewards.value_of(conn, program.id, reward_id)
    if reward is None:  # named in a rule, the rule is wrong (422); given now, like a redemption: 404
        unknown = NotFound if points_price else InvalidInput
        raise unknown(f"no reward {reward_id} in this program", field=f"{field}.reward_id")
    if reward.status == "archived":
        raise InvalidInput("this reward is archived", field=f"{field}.reward_id")
    if reward.kind == "points_for_discount":
        raise InvalidInput(
            "a points_for_discount reward is worth the points spent on it: it cannot be given at no cost",
            field=f"{field}.reward_id",
        )
    if kind is not None and reward.kind != kind:
        raise InvalidInput(
            f"reward {reward_id} is a {reward.kind} reward, not {kind}", field=f"{field}.reward_id"
        )
    if cost is not None:
        return base_amount(cost, program, f"{field}.cost")
    if reward.value is not None and reward.value[1] == program.base_currency:
        return reward.value[0]
    if points_price and reward.cost_points is not None:
        return domain.points_cost(
            reward.cost_points, program.point_value_amount, program.point_value_points, up=True
        )
    if points_price:
        raise InvalidInput(
            f"a {reward.kind} reward without a fixed value in {program.base_currency} or a points price "
            "cannot be priced",
            field=f"{field}.reward_id",
        )
    raise InvalidInput(
        f"a {reward.kind} reward has no fixed value in {program.base_currency}: give the `cost`",
        field=f"{field}.cost",
    )


async def _checked(conn: Connection, program: Program, definition: GiftRuleDefinition) -> int:
    """Check what the schema cannot; returns one gift's cost (base minor units)."""
    trigger = definition.trigger
    trigger_kind = trigger.__struct_config__.tag
    if isinstance(trigger, RandomShare):
        _share(trigger.share, "trigger.share", positive=True)
    if isinstance(trigger, OrderOver) and not is_currency(trigger.amount.currency):
        raise InvalidInput("not an ISO 4217 currency", field="trigger.amount.currency")
    _share(definition.probability, "probability", positive=True)
    _share(definition.holdout, "holdout")
    if definition.holdout == 1:
        raise InvalidInput("a hold-out of 1 gives nobody anything; at most 0.99", field="holdout")
    if definition.budget is not None:
        base_amount(definition.budget.amount, program, "budget.amount")
    known = (await tiers.tier_set(conn, program)).by_key if definition.eligibility.tiers else {}
    for index, key in enumerate(definition.eligibility.tiers):
        if key not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise InvalidInput(
                f"no tier {key!r} in this program (tiers: {names})", field=f"eligibility.tiers[{index}]"
            )
    kinds = [type(g) for g in definition.gifts]
    for once in (PointsGift, NoteGift):
        if kinds.count(once) > 1:
            raise InvalidInput(f"one {once.__struct_config__.tag} gift per rule", field="gifts")  # type: ignore[attr-defined]
    for index, gift in enumerate(definition.gifts):
        if isinstance(gift, NoteGift):
            for locale, source in gift.templates.items():
                try:
                    notes.check_note(source, has_order=trigger_kind in domain.ORDER_TRIGGERS)
                except TemplateProblem as exc:
                    line = f" (line {exc.line})" if getattr(exc, "line", None) else ""
                    raise InvalidInput(
                        f"the note does not render{line}: {exc.error}",
                        field=f"gifts[{index}].templates.{locale}",
                    ) from None
    cost = await price(conn, program, definition)
    if definition.budget is not None and cost > definition.budget.amount.amount:
        raise InvalidInput(
            f"one gift costs {format_money(cost, program.base_currency)}, more than the whole budget",
            field="budget.amount",
        )
    return cost


async def price(conn: Connection, program: Program, definition: GiftRuleDefinition) -> int:
    """What one gift of the rule costs now (base minor units): points at the program's point value, a
    reward's fixed value (or the gift's `cost`), an item's cost. Raises InvalidInput naming the gift when
    one cannot be priced (its reward gone, archived, changed kind)."""
    cost = 0
    for index, gift in enumerate(definition.gifts):
        where = f"gifts[{index}]"
        if isinstance(gift, PointsGift):
            cost += domain.points_cost(gift.points, program.point_value_amount, program.point_value_points)
        elif isinstance(gift, RewardGift | FreeShippingGift):
            kind = "free_shipping" if isinstance(gift, FreeShippingGift) else None
            cost += await reward_cost(conn, program, gift.reward_id, gift.cost, where, kind=kind)
        elif isinstance(gift, ItemGift):
            cost += base_amount(gift.cost, program, f"{where}.cost")
    return cost


def compile_rule(
    definition: GiftRuleDefinition, rule_id: UUID, version: int, cost: int, created_at: datetime | None
) -> domain.Rule:
    t = definition.trigger
    e = definition.eligibility
    b = definition.budget
    return domain.Rule(
        id=rule_id,
        version=version,
        name=definition.name,
        priority=definition.priority,
        trigger=t.__struct_config__.tag,  # type: ignore[arg-type]
        n=t.n if isinstance(t, NthOrder) else 0,
        repeat=t.repeat if isinstance(t, NthOrder) else False,
        min_total=(t.amount.amount, t.amount.currency) if isinstance(t, OrderOver) else None,
        days_away=t.days_away if isinstance(t, ReturningCustomer) else 0,
        share=t.share if isinstance(t, RandomShare) else Decimal(1),
        tiers=frozenset(e.tiers),
        min_orders=e.min_orders,
        no_refund_within_days=e.no_refund_within_days,
        probability=definition.probability,
        holdout=definition.holdout,
        budget=None if b is None else (b.amount.amount, b.period),
        announce=definition.announce,
        cost=cost,
        created_at=created_at,
    )


def _definition(stored: Mapping[str, Any]) -> GiftRuleDefinition:
    return msgspec.convert(stored, GiftRuleDefinition)


def _money(amount: int, program: Program) -> Money:
    return Money(amount=amount, currency=program.base_currency)


async def _budget_use(
    conn: Connection, program: Program, row: Mapping[str, Any], definition: GiftRuleDefinition, now: datetime
) -> BudgetUse | None:
    budget = definition.budget
    if budget is None:
        return None
    period = domain.budget_period(budget.period, now, program.zone)
    used = await repository.budget_used(conn, row["id"], period)
    limit = budget.amount.amount
    return BudgetUse(
        period=period,
        amount=budget.amount,
        used=_money(used, program),
        left=_money(max(0, limit - used), program),
    )


async def _out(conn: Connection, program: Program, row: Mapping[str, Any], now: datetime) -> GiftRuleOut:
    definition = _definition(row["definition"])
    return GiftRuleOut(
        **msgspec.structs.asdict(definition),
        id=row["id"],
        status=row["status"],
        version=row["current_version"],
        budget_use=await _budget_use(conn, program, row, definition, now),
        problems=GiftRuleProblems(
            count=row["problem_count"], last_error=row["last_problem"], last_at=row["last_problem_at"]
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _normalised(definition: GiftRuleDefinition) -> GiftRuleDefinition:
    return msgspec.structs.replace(definition, name=definition.name.strip() or definition.name)


# --- CRUD -------------------------------------------------------------------------------------------------


async def create(conn: Connection, program: Program, data: GiftRuleCreate, now: datetime) -> GiftRuleOut:
    fields = msgspec.structs.asdict(data)
    status = fields.pop("status")
    definition = _normalised(GiftRuleDefinition(**fields))
    cost = await _checked(conn, program, definition)
    rule_id = uuid4()
    await repository.insert_rule(
        conn,
        rule_id=rule_id,
        program_id=program.id,
        status=status,
        definition=msgspec.to_builtins(definition),
        cost_amount=cost,
        now=now,
    )
    if status == "active":
        await programs.bump_gifts_revision(conn, program.id)
    return await _out(conn, program, await _row(conn, program.id, rule_id), now)


async def _row(conn: Connection, program_id: UUID, rule_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    row = await repository.get_rule(conn, program_id, rule_id, lock=lock)
    if row is None:
        raise NotFound(f"no gift rule {rule_id} in this program", field="path:gift_rule_id")
    return row


async def get(conn: Connection, program: Program, rule_id: UUID, now: datetime) -> GiftRuleOut:
    return await _out(conn, program, await _row(conn, program.id, rule_id), now)


async def list_all(
    conn: Connection, program: Program, status: str | None, now: datetime
) -> list[GiftRuleOut]:
    return [
        await _out(conn, program, row, now) for row in await repository.list_rules(conn, program.id, status)
    ]


async def versions(conn: Connection, program_id: UUID, rule_id: UUID) -> list[GiftRuleVersionOut]:
    await _row(conn, program_id, rule_id)
    return [
        GiftRuleVersionOut(
            version=v["version"], definition=_definition(v["definition"]), created_at=v["created_at"]
        )
        for v in await repository.versions(conn, rule_id)
    ]


async def update(
    conn: Connection, program: Program, rule_id: UUID, patch: GiftRulePatch, now: datetime
) -> GiftRuleOut:
    """Change a rule. Once it has been active its versions are frozen: a change makes the next version
    (gifts name the version that gave them; the hold-out is drawn anew for it)."""
    row = await _row(conn, program.id, rule_id, lock=True)
    merged, changes = patched(row["definition"], patch, GiftRuleDefinition)
    status = changes.get("status", row["status"])
    definition = _normalised(merged)
    if status == "draft" and row["published"]:
        raise InvalidInput(
            "a gift rule that has been active cannot go back to draft; pause it", field="status"
        )
    changed = msgspec.to_builtins(definition) != row["definition"]
    # Only a changed definition is checked again: a rule whose reward was archived since can still be
    # paused or archived. Its cost is the estimate of when it was saved (a gift is priced when given).
    cost = await _checked(conn, program, definition) if changed else int(row["cost_amount"])
    await repository.update_rule(
        conn,
        rule_id,
        status=status,
        definition=msgspec.to_builtins(definition),
        cost_amount=cost,
        new_version=changed and row["published"],
        now=now,
    )
    if "active" in (status, row["status"]):
        await programs.bump_gifts_revision(conn, program.id)
    return await _out(conn, program, await _row(conn, program.id, rule_id), now)


async def delete(conn: Connection, program: Program, rule_id: UUID) -> None:
    row = await _row(conn, program.id, rule_id, lock=True)
    if row["published"]:
        raise Conflict(
            "this gift rule has been active and gifts may name its versions: archive it instead",
            field="path:gift_rule_id",
        )
    await repository.delete_rule(conn, rule_id)


def gift_key(program: Program) -> GiftKeyOut:
    return GiftKeyOut(
        key=program.gift_key,
        how="roll = first 8 bytes of HMAC-SHA256(key, parts joined by U+001F) as a big-endian integer; a share "
        "p passes when roll < floor(p × 2^64). Parts: chance: ('chance', rule id, version, customer external id, "
        "occasion); hold-out: "
        "('holdout', rule id, version, customer external id); random share: ('share', rule id, version, "
        "occasion). An order's occasion is 'order:' + its external id.",
    )


# --- the active set, cached per process by the program's gifts revision -----------------------------------

_active: dict[UUID, tuple[int, tuple[domain.Rule, ...], dict[UUID, GiftRuleDefinition]]] = {}


def compile_stored(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[domain.Rule], dict[UUID, GiftRuleDefinition]]:
    compiled, definitions = [], {}
    for row in rows:
        try:
            definition = _definition(row["definition"])
            compiled.append(
                compile_rule(
                    definition, row["id"], row["current_version"], row["cost_amount"], row["created_at"]
                )
            )
            definitions[row["id"]] = definition
        except (
            InvalidInput,
            msgspec.ValidationError,
        ) as exc:  # checked when saved; never fail an order for it
            log.error("gift_rule_not_compiled", rule_id=str(row["id"]), error=str(exc))
    return domain.ordered(compiled), definitions


async def active_set(
    conn: Connection, program: Program
) -> tuple[tuple[domain.Rule, ...], dict[UUID, GiftRuleDefinition]]:
    """The active gift rules (decision order) and their definitions, cached until the revision moves."""
    cached = _active.get(program.id)
    if cached is not None and cached[0] == program.gifts_revision:
        return cached[1], cached[2]
    rules, definitions = compile_stored(await repository.active_rules(conn, program.id))
    _active[program.id] = (program.gifts_revision, tuple(rules), definitions)
    return tuple(rules), definitions


async def triggered_by(conn: Connection, program: Program, trigger: str) -> bool:
    """Whether an active rule has this trigger (an occasion nobody waits for reads nothing more)."""
    rules, _ = await active_set(conn, program)
    return any(r.trigger == trigger for r in rules)


# --- deciding and giving ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What a gift given on an order knows of it (the note says what was bought)."""

    id: UUID
    external_id: str
    placed_at: datetime
    total_amount: int
    currency: str
    lines: Sequence[tuple[str, str | None, int, int]]  # sku, name, quantity, line amount
    available_at: datetime  # the order's points dates, for bonus points given with it
    expires_at: datetime | None


@dataclass(slots=True)
class Given:
    """What a decision run gave: the surprises for the answer, events, and rules that failed."""

    surprises: list[SurpriseOut] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    problems: list[tuple[UUID, str]] = field(default_factory=list)
    held_out: int = 0
    entries: ledger.LedgerResult = field(default_factory=ledger.LedgerResult)


def occasion_of(
    row: Mapping[str, Any],
    trigger: str,
    key: str,
    at: datetime,
    total: tuple[int, str] | None = None,
    *,
    label: str | None = None,
) -> domain.Occasion:
    """The occasion with the customer as their row (and its order stats and tier laterals) says."""
    tier = row.get("tier")
    return domain.Occasion(
        trigger=trigger,
        key=key,
        at=at,
        order_count=int(row.get("order_count") or 0),
        last_order_at=row.get("last_order_at"),
        total=total,
        tier=tier,
        upgraded_at=row.get("tier_since") if tier else None,
        marketing_consent=bool(row.get("marketing_consent")),
        label=label,
    )


def _item_of(order: OrderFacts | None) -> dict[str, Any] | None:
    if order is None or not order.lines:
        return None
    sku, name, _, _ = max(order.lines, key=lambda line: line[3])
    return {"sku": sku, "name": name or sku}


def _problem(rule: domain.Rule, exc: BaseException) -> tuple[UUID, str]:
    log.warning("gift_rule_failed", rule_id=str(rule.id), version=rule.version, error=str(exc))
    return rule.id, str(exc)[:1000]


class _GiftFailed(Exception):
    """A rule's gift cannot be given now (recorded on the rule; the order goes on)."""


async def _plan(
    conn: Connection,
    program: Program,
    row: Mapping[str, Any],
    definition: GiftRuleDefinition,
    order: OrderFacts | None,
) -> list[dict[str, Any] | None]:
    """What the gift gives as its record will say, before anything is written: points, items and the note
    (rendered); None where a code goes (known once granted)."""
    planned: list[dict[str, Any] | None] = []
    for gift in definition.gifts:
        if isinstance(gift, PointsGift):
            planned.append({"kind": "points", "points": gift.points})
        elif isinstance(gift, ItemGift):
            planned.append(
                {
                    "kind": "item",
                    "sku": gift.sku,
                    "name": gift.name,
                    "pick_note": gift.pick_note,
                    "in_parcel": order is not None,
                }
            )
        elif isinstance(gift, NoteGift):
            planned.append({"kind": "note", "text": await _note(conn, program, row, gift, order)})
        else:
            planned.append(None)
    return planned


async def _give(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    rule: domain.Rule,
    definition: GiftRuleDefinition,
    gift_id: UUID,
    occasion: domain.Occasion,
    order: OrderFacts | None,
    now: datetime,
    planned: list[dict[str, Any] | None],
    given: Given,
) -> tuple[list[dict[str, Any]], bool]:
    """Credit the points and grant the codes of a recorded gift; what it gave, and whether codes were
    added to the plan (the record then needs them)."""
    recorded: list[dict[str, Any]] = []
    coded = False
    for index, (gift, plan) in enumerate(zip(definition.gifts, planned, strict=True)):
        if isinstance(gift, PointsGift):
            if order is not None:
                available_at, expires_at = order.available_at, order.expires_at
            else:
                available_at, expires_at = ledger_domain.lot_dates(
                    now, now, 0, program.points_expire_after_days
                )
            result = await ledger.credit(
                conn,
                customer,
                gift.points,
                kind="gift",
                reason=f"gift {rule.name}",
                explanation=f"{'Recovery' if occasion.trigger == 'recovery' else 'Surprise'} gift '{rule.name}' "
                f"({_occasion_words(occasion, order)}): {ledger.plural_points(gift.points)}",
                now=now,
                available_at=available_at,
                expires_at=expires_at,
                topic="points.earned",
                # Not the order's own points: a refund of the order reverses what it earned, not a gift.
                actor=f"gift rule {rule.id}",
                details={
                    "gift_id": str(gift_id),
                    "rule_id": str(rule.id),
                    "version": rule.version,
                    "order": order.external_id if order else None,
                },
            )
            given.entries.entries.extend(result.entries)
            given.events.extend(result.events)
        elif isinstance(gift, RewardGift | FreeShippingGift):
            try:
                granted = await rewards.grant(
                    conn,
                    program,
                    customer,
                    gift.reward_id,
                    source="gift",
                    source_key=f"gift:{gift_id}:{index}",
                    now=now,
                    actor=f"gift rule {rule.id}",
                )
            except (Conflict, NotFound, InvalidInput) as exc:  # out of stock, paused, tier, limit, gone
                raise _GiftFailed(f"gifts[{index}]: {exc.detail if hasattr(exc, 'detail') else exc}") from exc
            if granted is None:
                continue
            coded = True
            plan = {
                "kind": "free_shipping" if isinstance(gift, FreeShippingGift) else "reward",
                "redemption_id": str(granted.redemption_id),
                "code": granted.code,
                "reward_name": granted.reward_name,
                "expires_at": granted.expires_at,
            }
        if plan is not None:
            recorded.append(plan)
    return recorded, coded


async def _note(
    conn: Connection, program: Program, row: Mapping[str, Any], gift: NoteGift, order: OrderFacts | None
) -> str:
    default_locale = (await messaging.get_settings(conn, program.id)).default_locale
    locale = choose_locale(row.get("locale"), default_locale).template_locale
    source = gift.templates.get(locale)  # type: ignore[call-overload]
    order_facts = None
    if order is not None:
        order_facts = order_vars(
            {
                "external_id": order.external_id,
                "total_amount": order.total_amount,
                "currency": order.currency,
                "placed_at": order.placed_at,
                "lines": [{"sku": sku, "name": name, "quantity": qty} for sku, name, qty, _ in order.lines],
                "points_earned": 0,
            }
        )
    try:
        return notes.render_note(
            row.get("locale"),
            default_locale,
            source,
            customer=customer_vars({**row, "points": 0}),
            item=_item_of(order),
            order=order_facts,
            program={"name": program.name},
        )
    except Exception as exc:  # a marketer's template over its limits on this customer's values
        raise _GiftFailed(f"the note did not render: {exc}") from exc


def _occasion_words(occasion: domain.Occasion, order: OrderFacts | None) -> str:
    if order is not None:
        return f"order {order.external_id}"
    return occasion.label or occasion.key.split(":", 1)[0].replace("_", " ")


def _pick(shown: Sequence[GivenOut]) -> str | None:
    items = [(g.sku or "", g.name or "", g.pick_note or "") for g in shown if g.kind == "item"]
    return domain.pick_instructions(items, next((g.text for g in shown if g.kind == "note"), None))


def _surprise(
    gift_id: UUID,
    rule_id: UUID,
    version: int,
    name: str,
    trigger: str,
    announce: str,
    shown: list[GivenOut],
    *,
    from_earlier: bool = False,
) -> SurpriseOut:
    return SurpriseOut(
        gift_id=gift_id,
        rule_id=rule_id,
        rule_version=version,
        rule_name=name,
        trigger=trigger,
        announce="message" if announce == "message" else "parcel",
        given=shown,
        pick_instructions=_pick(shown),
        from_earlier=from_earlier,
    )


async def decide(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    row: Mapping[str, Any],
    occasion: domain.Occasion,
    now: datetime,
    *,
    order: OrderFacts | None = None,
    ledger_locked: bool = False,
) -> Given:
    """Decide every active rule the occasion may trigger, give what is granted and record hold-outs.
    `ledger_locked`: the caller's transaction took the customer's ledger lock in an earlier statement (an
    order that earned points), so the cooldown's read needs no lock of its own."""
    given = Given()
    rules, definitions = await active_set(conn, program)
    candidates = [r for r in rules if domain.may_trigger(r, occasion)]
    if not candidates:
        return given
    key = program.gift_key.encode()
    up, last = occasion.upgraded_at, occasion.last_order_at
    if (
        up is not None
        and (last is None or last <= up)
        and any(r.trigger == "first_order_after_upgrade" for r in candidates)
    ):
        # `tier_since` is when the current tier began, by an upgrade or not (a downgrade, by hand): no
        # order since then, so read when the customer last really moved up.
        occasion = dataclasses.replace(
            occasion, upgraded_at=await tiers.upgraded_before(conn, customer.id, occasion.at)
        )
    nearest: datetime | None = None
    latest: datetime | None = None
    locked, read = ledger_locked, False
    refund_at: datetime | None = None
    refund_read = False
    for rule in candidates:
        try:
            # A first look without the cooldown or the refund date (both can only refuse more): only a
            # rule that would give takes the lock and reads them.
            first = domain.decide(
                key, rule, occasion, customer.external_id, last_gift_at=None, cooldown_days=0
            )
        except Exception as exc:  # a rule that fails to decide never fails the order
            given.problems.append(_problem(rule, exc))
            continue
        if first.outcome is None:
            continue
        # Reads outside a savepoint: a database error here is the caller's (the transaction is lost).
        if not read:
            # The customer's ledger lock is their gift mutex (in the ledger's lock order), taken in a
            # statement of its own: the reads after it see whatever its last holder committed (a statement
            # that waited for a lock still reads from the snapshot it started with).
            if not locked:
                await ledger.lock(conn, customer, now)
            nearest, latest = await repository.nearest_gift(conn, customer.id, occasion.at)
            read = True
        if domain.needs_refund_date(rule) and not refund_read:
            own = UUID(occasion.key.split(":", 1)[1]) if occasion.trigger == "refund" else None
            refund_at = await orders.last_refund_at(conn, customer.id, occasion.at, besides=own)
            refund_read = True
        decision = domain.decide(
            key,
            rule,
            occasion,
            customer.external_id,
            last_gift_at=nearest,
            cooldown_days=program.gift_cooldown_days,
            last_refund_at=refund_at,
            last_given_at=latest,
            now=now,
        )
        if decision.outcome is None:
            continue
        try:
            # A rule's writes are one statement, or a savepoint when it gives codes: what is caught
            # here leaves the transaction whole.
            if await _record(
                conn,
                program,
                customer,
                row,
                rule,
                definitions[rule.id],
                decision,
                occasion,
                order,
                now,
                given,
            ):
                nearest, latest = occasion.at, now
        except (_GiftFailed, TemplateProblem, RenderLimit) as exc:
            given.problems.append(_problem(rule, exc))
    return given


async def _record(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    row: Mapping[str, Any],
    rule: domain.Rule,
    definition: GiftRuleDefinition,
    decision: domain.Decision,
    occasion: domain.Occasion,
    order: OrderFacts | None,
    now: datetime,
    given: Given,
) -> bool:
    """Write the decision (and give, if granted); False if nothing was written (another order decided this
    occasion, or the budget cannot pay). The gift is priced now (today's point value
    and reward), and spent from the budget period of now. A hold-out is recorded only where the budget
    could have paid for the gift, so both groups are drawn from the same customers."""
    gift_id = uuid4()
    by_agent = decision.outcome == "recovery"  # the recovery budget pays, not the rule's
    granted = decision.outcome == "granted" or by_agent
    trigger = occasion.trigger if by_agent else rule.trigger
    has_item = any(isinstance(g, ItemGift) for g in definition.gifts)
    budget = None if by_agent else rule.budget
    period = None if budget is None else domain.budget_period(budget[1], now, program.zone)
    # Pricing and the note come first and write nothing: a failure there leaves nothing to undo.
    try:
        cost = await price(conn, program, definition)
    except InvalidInput as exc:
        raise _GiftFailed(f"{exc.field}: {exc.detail}") from exc
    if budget is not None and cost > budget[0]:  # priced higher since it was saved: say so, not silence
        raise _GiftFailed(
            f"one gift now costs {format_money(cost, program.base_currency)}, more than the whole budget"
        )
    planned = await _plan(conn, program, row, definition, order) if granted else []
    values = {
        "id": gift_id,
        "program_id": program.id,
        "rule_id": rule.id,
        "rule_version": rule.version,
        "customer_id": customer.id,
        "occasion": decision.occasion,
        "trigger": trigger,
        "outcome": decision.outcome,
        "order_id": order.id if order else None,
        "cost_amount": cost if granted else 0,
        "currency": program.base_currency,
        "budget_period": period if granted else None,
        "given": [plan for plan in planned if plan is not None],
        "item_status": None if not (granted and has_item) else "in_parcel" if order else "waiting",
        "decided_at": occasion.at,
        "created_at": now,
    }
    spend = None
    if budget is not None and period is not None:  # a hold-out spends nothing but needs the room
        spend = (period, cost if granted else 0, budget[0], 0 if granted else cost)
    # A code can be refused when it is granted (out of stock, a limit): such a rule's writes go in a
    # savepoint that rolls back alone. Points, items and notes cannot be refused once the decision is
    # written (both or neither of it and its budget, in one statement), so they need none.
    codes = any(plan is None for plan in planned)
    mark = len(given.events), len(given.entries.entries)
    try:
        async with conn.transaction() if codes else contextlib.nullcontext():
            if await repository.record_decision(conn, values, spend) != "recorded":
                return False  # another order decided this occasion, or the budget cannot pay: nothing written
            if not granted:
                given.held_out += 1
                return True
            recorded, coded = await _give(
                conn, program, customer, rule, definition, gift_id, occasion, order, now, planned, given
            )
            if coded:
                await repository.set_given(conn, gift_id, recorded)
    except BaseException as exc:
        del given.events[mark[0] :]
        del given.entries.entries[mark[1] :]
        if codes and isinstance(exc, asyncpg.PostgresError):  # rolled back with its savepoint
            raise _GiftFailed(f"{type(exc).__name__}: {exc}") from exc
        raise
    shown = [_given_out(g) for g in recorded]
    announce = "message" if rule.by_message else "parcel"
    given.surprises.append(_surprise(gift_id, rule.id, rule.version, rule.name, trigger, announce, shown))
    given.events.append(
        Event(
            "gift.granted",
            {
                "gift_id": str(gift_id),
                "rule_id": str(rule.id),
                "rule_version": rule.version,
                "rule_name": rule.name,
                "customer": customer.external_id,
                "trigger": trigger,
                "occasion": decision.occasion,
                "about": _occasion_words(occasion, order),
                "order": order.external_id if order else None,
                "announce": announce,
                "cost": {"amount": cost, "currency": program.base_currency},
                "gifts": recorded,
            },
        )
    )
    return True


@dataclass(frozen=True, slots=True)
class RecoveryGift:
    """A gift rule an agent gives as a recovery, priced before anything is written."""

    rule: domain.Rule
    definition: GiftRuleDefinition
    cost: int


async def recovery_gift(conn: Connection, program: Program, rule_id: UUID, field: str) -> RecoveryGift:
    """The gift rule's current version as a recovery gives it (any status but archived: a paused rule is
    the agents' template) and what it costs now; InvalidInput / NotFound naming `field`."""
    stored = await repository.get_rule(conn, program.id, rule_id)
    if stored is None:
        raise NotFound(f"no gift rule {rule_id} in this program", field=field)
    if stored["status"] == "archived":
        raise InvalidInput("this gift rule is archived", field=field)
    definition = _definition(stored["definition"])
    try:
        cost = await price(conn, program, definition)
    except InvalidInput as exc:
        raise InvalidInput(f"the gift rule's {exc.field} cannot be given: {exc.detail}", field=field) from exc
    rule = compile_rule(
        definition, rule_id, stored["current_version"], stored["cost_amount"], stored["created_at"]
    )
    return RecoveryGift(rule, definition, cost)


async def give_recovery(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    row: Mapping[str, Any],
    gift: RecoveryGift,
    *,
    key: str,
    label: str,
    now: datetime,
    field: str,
) -> Given:
    """Give the rule's gifts as a recovery (`key`: `recovery:<id>`, one gift per recovery), recorded as a
    gift of outcome `recovery` that the effect stats leave out; Conflict naming `field` when a code of it
    cannot be granted (stock, a limit) or its note does not render."""
    occasion = occasion_of(row, "recovery", key, now, label=label)
    decision = domain.Decision(outcome="recovery", reason="recovery", occasion=key)
    given = Given()
    try:
        recorded = await _record(
            conn, program, customer, row, gift.rule, gift.definition, decision, occasion, None, now, given
        )
    except (_GiftFailed, TemplateProblem, RenderLimit) as exc:
        raise Conflict(f"the gift cannot be given now: {exc}", field=field) from exc
    if not recorded:  # a fresh recovery id is never given twice; should it be, nothing is written
        raise Conflict("this recovery's gift was given already", field=field)
    return given


def _given_out(stored: Mapping[str, Any]) -> GivenOut:
    """What a gift row's `given` says of one thing, as the API shows it."""
    return msgspec.convert(stored, GivenOut, strict=False)


async def waiting_items(
    conn: Connection, customer: ledger.Customer, row: Mapping[str, Any], order_id: UUID
) -> list[SurpriseOut]:
    """Items of gifts decided without an order (a birthday), now picked for this order's parcel, with
    the gift's note."""
    if not row.get("gifts_waiting"):
        return []
    out = []
    for gift in await repository.take_waiting(conn, customer.id, order_id):
        shown = [_given_out(g) for g in gift["given"] if g["kind"] in ("item", "note")]
        out.append(
            _surprise(
                gift["id"],
                gift["rule_id"],
                gift["rule_version"],
                gift["rule_name"],
                gift["trigger"],
                "message",
                shown,
                from_earlier=True,
            )
        )
    return out


async def list_gifts(
    conn: Connection,
    program: Program,
    *,
    customer: str | None,
    order: str | None,
    rule_id: UUID | None,
    outcome: str | None,
    item_status: str | None,
    cursor: str | None,
    limit: int,
) -> GiftList:
    """Gifts and hold-outs, newest first (cursor pages): what a parcel should carry, what waits."""
    rows = await repository.list_gifts(
        conn,
        program.id,
        customer=customer,
        order=order,
        rule_id=rule_id,
        outcome=outcome,
        item_status=item_status,
        after=decode_position(cursor),
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = []
    for row in rows:
        given = [_given_out(g) for g in row["given"]]
        items.append(
            GiftOut(
                id=row["id"],
                rule_id=row["rule_id"],
                rule_version=row["rule_version"],
                rule_name=row["rule_name"],
                customer_external_id=row["customer"],
                trigger=row["trigger"],
                occasion=row["occasion"],
                outcome=row["outcome"],
                order_external_id=row["order_external_id"],
                cost=Money(amount=row["cost_amount"], currency=row["currency"]),
                given=given,
                item_status=row["item_status"],
                picked_order_external_id=row["picked_order_external_id"],
                pick_instructions=_pick(given),
                decided_at=row["decided_at"],
                created_at=row["created_at"],
            )
        )
    return GiftList(
        items=items,
        next_cursor=encode_position(rows[-1]["created_at"], rows[-1]["id"]) if more else None,
    )


async def record_problems(problems: Sequence[tuple[UUID, str]], now: datetime) -> None:
    """Make run-time failures visible on their rules, in a transaction of its own after the caller's."""
    if not problems:
        return
    async with db.transaction() as conn:
        await repository.record_problems(conn, sorted(set(problems)), now)


# --- the effect --------------------------------------------------------------------------------------------

REPEAT_WINDOWS = (30, 60, 90)


async def stats(
    conn: Connection, program: Program, rule_id: UUID, version: int | None, now: datetime
) -> GiftStatsOut:
    """Granted, cost, budget, and whether recipients came back more often than the hold-out: the share of
    each group with another order within 30, 60 and 90 days of the decision (customers whose window has
    passed), the difference and its 95 % confidence interval."""
    row = await _row(conn, program.id, rule_id)
    if version is not None and not 1 <= version <= row["current_version"]:
        raise NotFound(f"gift rule {rule_id} has no version {version}", field="version")
    totals = await repository.totals(conn, rule_id, version)
    counts = {
        (c["days"], c["outcome"]): (int(c["repeated"]), int(c["customers"]))
        for c in await repository.repeat_counts(conn, rule_id, version, list(REPEAT_WINDOWS), now)
    }
    windows = []
    for days in REPEAT_WINDOWS:
        recipients = counts.get((days, "granted"), (0, 0))
        holdout = counts.get((days, "held_out"), (0, 0))
        difference, interval = domain.difference_ci(recipients, holdout)
        windows.append(
            RepeatWindow(
                days=days,
                recipients=GroupRate(
                    customers=recipients[1], repeated=recipients[0], rate=domain.rate(*recipients)
                ),
                holdout=GroupRate(customers=holdout[1], repeated=holdout[0], rate=domain.rate(*holdout)),
                difference=difference,
                ci95=None if interval is None else [interval[0], interval[1]],
            )
        )
    granted, cost = int(totals["granted"]), int(totals["cost"])
    return GiftStatsOut(
        rule_id=rule_id,
        version=version,
        granted=granted,
        held_out=int(totals["held_out"]),
        cost=_money(cost, program),
        cost_per_gift=_money(round(cost / granted), program) if granted else None,
        budget_use=await _budget_use(conn, program, row, _definition(row["definition"]), now),
        repeat=windows,
    )
