"""Service recovery: an agent puts a situation right on the spot (points, a code, a gift, a tier gesture)
from a monthly money budget, and cases keep the customer's story with its response times.

Lock order: the case (when a recovery names one), then the program's recovery budget, then what the action
takes (the customer's ledger, their tier). Use cases take the caller's transaction and never commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound, Problem
from service.core.money import format_money
from service.core.pagination import decode_position, encode_position
from service.customers import service as customers
from service.gifts import service as gifts
from service.gifts.domain import points_cost
from service.ledger import domain as ledger_domain
from service.ledger import service as ledger
from service.orders import service as orders
from service.outbox.service import Event, emit
from service.programs import service as programs
from service.programs.service import Program
from service.recovery import domain, repository
from service.recovery.schemas import (
    Action,
    AgentBudget,
    AgentRef,
    CaseEntryOut,
    CaseIn,
    CaseList,
    CaseOut,
    CaseSummary,
    GiftAction,
    OpenCaseOut,
    PointsAction,
    RecoveryBudgetOut,
    RecoveryGiven,
    RecoveryIn,
    RecoveryOut,
    RecoverySettingsIn,
    RecoverySettingsOut,
    RewardAction,
    TierAction,
)
from service.rewards import service as rewards
from service.rewards.schemas import Money
from service.rules import service as rules
from service.tiers import service as tiers
from service.tiers.schemas import ManualTierIn


@dataclass(frozen=True, slots=True)
class Agent:
    """Who acts: an API key (an agent's key is the agent; its name is theirs)."""

    key_id: UUID
    name: str

    @property
    def ref(self) -> tuple[UUID, str]:
        return self.key_id, self.name


class OverBudget(Conflict):
    slug = "recovery-over-budget"
    title = "The recovery budget cannot pay for this"


class CaseClosed(Conflict):
    slug = "case-closed"
    title = "The case is closed"


def _money(amount: int, program: Program) -> Money:
    return Money(amount=amount, currency=program.base_currency)


# --- settings and budget --------------------------------------------------------------------------------


def _settings_out(row: dict[str, Any] | None, program: Program) -> RecoverySettingsOut:
    if row is None:
        return RecoverySettingsOut(
            monthly_budget=_money(0, program),
            agent_monthly_budget=None,
            tier_month_values={},
            updated_at=None,
        )
    agent = row["agent_monthly_budget"]
    return RecoverySettingsOut(
        monthly_budget=_money(row["monthly_budget"], program),
        agent_monthly_budget=None if agent is None else _money(agent, program),
        tier_month_values={
            key: _money(value, program) for key, value in sorted(row["tier_month_values"].items())
        },
        updated_at=row["updated_at"],
    )


async def get_settings(conn: Connection, program: Program) -> RecoverySettingsOut:
    return _settings_out(await repository.settings(conn, program.id), program)


async def put_settings(
    conn: Connection, program: Program, data: RecoverySettingsIn, now: datetime
) -> RecoverySettingsOut:
    monthly = gifts.base_amount(data.monthly_budget, program, "monthly_budget")
    agent = None
    if data.agent_monthly_budget is not None:
        agent = gifts.base_amount(data.agent_monthly_budget, program, "agent_monthly_budget")
    known = (await tiers.tier_set(conn, program)).by_key if data.tier_month_values else {}
    values = {}
    for key, money in data.tier_month_values.items():
        if key not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise InvalidInput(
                f"no tier {key!r} in this program (tiers: {names})", field=f"tier_month_values.{key}"
            )
        values[key] = gifts.base_amount(money, program, f"tier_month_values.{key}")
    await repository.put_settings(conn, program.id, monthly, agent, values, now)
    return await get_settings(conn, program)


async def budget(conn: Connection, program: Program, month: str | None, now: datetime) -> RecoveryBudgetOut:
    """The month's budget (default: this month in the program's time zone), used and left, per agent: every
    agent key (revoked ones only if they spent) and any other key that spent."""
    month = month or domain.budget_month(now, program.zone)
    settings = await repository.settings(conn, program.id) or {
        "monthly_budget": 0,
        "agent_monthly_budget": None,
    }
    cap = settings["agent_monthly_budget"]
    by_agent = await repository.month_by_agent(conn, program.id, month)
    used_total = sum(int(r["used"]) for r in by_agent)
    spent = {r["agent_key_id"]: r for r in by_agent}
    agents = []
    for key in await programs.list_keys(conn, program.id):
        row = spent.pop(key.id, None)
        if row is None and (key.scope != "agent" or key.revoked_at is not None):
            continue
        used = int(row["used"]) if row else 0
        agents.append(
            AgentBudget(
                key_id=key.id,
                name=key.name,
                scope=key.scope,
                revoked=key.revoked_at is not None,
                recoveries=int(row["recoveries"]) if row else 0,
                used=_money(used, program),
                left=None if cap is None else _money(max(0, cap - used), program),
            )
        )
    return RecoveryBudgetOut(
        month=month,
        budget=_money(settings["monthly_budget"], program),
        used=_money(used_total, program),
        left=_money(max(0, settings["monthly_budget"] - used_total), program),
        recoveries=sum(int(r["recoveries"]) for r in by_agent),
        agent_monthly_budget=None if cap is None else _money(cap, program),
        agents=agents,
    )


# --- recovery ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Links:
    case: dict[str, Any] | None = None
    order_id: UUID | None = None
    complaint_id: UUID | None = None


async def _links(conn: Connection, program: Program, customer: dict[str, Any], data: RecoveryIn) -> _Links:
    """The order, complaint and case the recovery is about, each checked to be this customer's; the case
    (given, or the complaint's) locked and open."""
    links = _Links()
    if data.order is not None:
        links.order_id = await orders.customers_order(
            conn, program.id, customer["external_id"], data.order, "order"
        )
    case_id = data.case_id
    if data.complaint_id is not None:
        event = await rules.get_event(conn, program.id, data.complaint_id)
        if event is None or event["type"] != "complaint":
            raise NotFound(f"no complaint event {data.complaint_id} in this program", field="complaint_id")
        if event["customer_id"] != customer["id"]:
            raise InvalidInput("the complaint is another customer's", field="complaint_id")
        links.complaint_id = data.complaint_id
        if case_id is None:
            case_id = await repository.case_by_source(conn, program.id, f"complaint:{data.complaint_id}")
    if case_id is not None:
        named = data.case_id is not None
        case = await _locked_case(conn, program, case_id, "case_id" if named else "complaint_id")
        if case["customer_id"] != customer["id"]:
            raise InvalidInput("the case is another customer's", field="case_id")
        if case["status"] == "open":
            links.case = case
        elif named:  # a complaint whose case was closed: the recovery stands on its own
            raise _closed(case, "case_id")
    return links


@dataclass(slots=True)
class _Priced:
    cost: int
    gift: gifts.RecoveryGift | None = None
    tier: Any = None  # the tiers.domain.Tier a gesture gives
    until: datetime | None = None


async def _price(
    conn: Connection, program: Program, customer: dict[str, Any], action: Action, now: datetime
) -> _Priced:
    """What the action costs now (base minor units), checked as far as it can be before anything is written."""
    if isinstance(action, PointsAction):
        return _Priced(
            points_cost(action.points, program.point_value_amount, program.point_value_points, up=True)
        )
    if isinstance(action, RewardAction):
        return _Priced(
            await gifts.reward_cost(conn, program, action.reward_id, None, "action", points_price=True)
        )
    if isinstance(action, GiftAction):
        gift = await gifts.recovery_gift(conn, program, action.gift_rule_id, "action.gift_rule_id")
        return _Priced(gift.cost, gift=gift)
    tier_set = await tiers.tier_set(conn, program)
    target = tier_set.by_key.get(action.tier)
    if target is None:
        names = ", ".join(sorted(tier_set.by_key)) or "none yet"
        raise InvalidInput(f"no tier {action.tier!r} in this program (tiers: {names})", field="action.tier")
    until = domain.months_later(now, action.months, program.zone)
    standing = await tiers.standing(conn, program, customer["external_id"], now)
    held = standing.tier
    if held is not None and held.rank > target.rank:
        raise InvalidInput(
            f"the customer holds {held.name}, above {target.name}: a gesture does not lower a tier",
            field="action.tier",
        )
    if (
        held is not None
        and held.rank == target.rank
        and standing.source == "manual"
        and (standing.manual_until is None or standing.manual_until >= until)
    ):
        kept = "for good" if standing.manual_until is None else f"until {standing.manual_until:%Y-%m-%d}"
        raise InvalidInput(f"the customer holds {held.name} by hand {kept} already", field="action.months")
    settings = await repository.settings(conn, program.id)
    per_month = (settings or {}).get("tier_month_values", {}).get(action.tier, 0)
    return _Priced(per_month * action.months, tier=target, until=until)


@dataclass(slots=True)
class _Done:
    given: RecoveryGiven
    what: str  # for the explanation: `500 points`, `code X for Free coffee`
    entries: ledger.LedgerResult = field(default_factory=ledger.LedgerResult)
    events: list[Event] = field(default_factory=list)


def _given_words(given: Any) -> str:
    if given.kind == "points":
        return ledger.plural_points(given.points or 0)
    if given.kind in ("reward", "free_shipping"):
        return f"code {given.code}"
    if given.kind == "item":
        return str(given.name)
    return "a personal note"


async def _act(
    conn: Connection,
    program: Program,
    customer_row: dict[str, Any],
    agent: Agent,
    recovery_id: UUID,
    data: RecoveryIn,
    priced: _Priced,
    now: datetime,
) -> _Done:
    customer = ledger.customer_of(customer_row)
    action = data.action
    details = {"recovery_id": str(recovery_id), "agent_key_id": str(agent.key_id)}
    if isinstance(action, PointsAction):
        available_at, expires_at = ledger_domain.lot_dates(now, now, 0, program.points_expire_after_days)
        what = ledger.plural_points(action.points)
        result = await ledger.credit(
            conn,
            customer,
            action.points,
            kind="recovery",
            reason=f"recovery: {data.reason}",
            explanation=domain.explanation(agent.name, data.reason, what),
            now=now,
            available_at=available_at,
            expires_at=expires_at,
            topic="points.earned",
            actor=agent.name,
            details=details,
        )
        entry_id = result.entries[0][0] if result.entries else None
        given = RecoveryGiven(kind="points", points=action.points, entry_id=entry_id)
        return _Done(given, what, result, list(result.events))
    if isinstance(action, RewardAction):
        try:
            granted = await rewards.grant(
                conn,
                program,
                customer,
                action.reward_id,
                source="recovery",
                source_key=f"recovery:{recovery_id}",
                now=now,
                actor=agent.name,
            )
        except Problem as exc:  # out of stock, paused, a tier or a limit of the reward
            raise Conflict(f"the reward cannot be given now: {exc.detail}", field="action.reward_id") from exc
        assert granted is not None  # a fresh recovery id grants once
        name = granted.reward_name.get("en") or next(iter(granted.reward_name.values()), "")
        given = RecoveryGiven(
            kind="reward",
            redemption_id=granted.redemption_id,
            code=granted.code,
            reward_name=granted.reward_name,
            expires_at=granted.expires_at,
        )
        return _Done(given, f"code {granted.code} for {name}")
    if isinstance(action, GiftAction):
        assert priced.gift is not None
        rule_name = priced.gift.rule.name
        gift = await gifts.give_recovery(
            conn,
            program,
            customer,
            customer_row,
            priced.gift,
            key=f"recovery:{recovery_id}",
            label=f"recovery by {agent.name}: {data.reason}",
            now=now,
            field="action.gift_rule_id",
        )
        surprise = gift.surprises[0]
        things = ", ".join(_given_words(g) for g in surprise.given)
        given = RecoveryGiven(
            kind="gift", gift_id=surprise.gift_id, gift_rule_name=rule_name, gifts=list(surprise.given)
        )
        return _Done(
            given, f"gift '{rule_name}'" + (f": {things}" if things else ""), gift.entries, gift.events
        )
    assert isinstance(action, TierAction) and priced.tier is not None and priced.until is not None
    await tiers.assign(
        conn,
        program,
        customer_row["external_id"],
        ManualTierIn(
            tier=action.tier,
            reason=f"recovery by {agent.name}: {data.reason}",
            until=priced.until,
            actor=agent.name,
        ),
        now,
    )
    until_day = priced.until.astimezone(program.zone).date().isoformat()
    given = RecoveryGiven(kind="tier", tier=action.tier, until=priced.until)
    return _Done(given, f"{priced.tier.name} until {until_day}")


async def recover(
    conn: Connection, program: Program, agent: Agent, external_id: str, data: RecoveryIn, now: datetime
) -> RecoveryOut:
    """One recovery action, spent from the month's budget (the program's, and the agent's when agents have a
    cap): 409 with what is left when it does not fit, nothing changed. Recorded with its cost, explained on
    the customer's ledger, and on its case's timeline (the case's first action when it had none)."""
    row = await customers.get(conn, program.id, external_id)
    links = await _links(conn, program, row, data)
    priced = await _price(conn, program, row, data.action, now)
    month = domain.budget_month(now, program.zone)
    used = await repository.lock_budget(conn, program.id, month, agent.key_id)
    room = domain.room(used["monthly_budget"], used["used"], used["agent_monthly_budget"], used["agent_used"])
    if not room.fits(priced.cost):
        cur = program.base_currency
        whose = "the program's" if priced.cost > room.program_left else f"{agent.name}'s"
        left = room.program_left if priced.cost > room.program_left else room.agent_left
        raise OverBudget(
            f"this costs {format_money(priced.cost, cur)}; {whose} recovery budget for {month} has "
            f"{format_money(left or 0, cur)} left",
            field="action",
            extra={
                "month": month,
                "cost": {"amount": priced.cost, "currency": cur},
                "left": {"amount": room.program_left, "currency": cur},
                "agent_left": None
                if room.agent_left is None
                else {"amount": room.agent_left, "currency": cur},
            },
        )
    recovery_id = uuid4()
    done = await _act(conn, program, row, agent, recovery_id, data, priced, now)
    explanation = domain.explanation(agent.name, data.reason, done.what)
    customer = ledger.customer_of(row)
    if not isinstance(data.action, PointsAction):  # the ledger tells the whole story, points or not
        noted = await ledger.note(
            conn,
            customer,
            kind="recovery",
            reason=f"recovery: {data.reason}",
            explanation=explanation,
            now=now,
            actor=agent.name,
            details={"recovery_id": str(recovery_id), "agent_key_id": str(agent.key_id)},
        )
        done.entries.entries.extend(noted.entries)
    case_id = links.case["id"] if links.case else None
    await repository.insert_recovery(
        conn,
        {
            "id": recovery_id,
            "program_id": program.id,
            "customer_id": row["id"],
            "case_id": case_id,
            "order_id": links.order_id,
            "complaint_event_id": links.complaint_id,
            "agent_key_id": agent.key_id,
            "agent_name": agent.name,
            "reason": data.reason,
            "action": data.action.__struct_config__.tag,
            "given": msgspec.to_builtins(done.given),
            "explanation": explanation,
            "cost_amount": priced.cost,
            "currency": program.base_currency,
            "budget_period": month,
            "created_at": now,
        },
    )
    if case_id is not None:
        await repository.add_entry(
            conn, program.id, case_id, "recovery", explanation, now, by=agent.ref, recovery_id=recovery_id
        )
        await repository.acted(conn, program.id, case_id, agent.ref, now)
    after = room.after(priced.cost)
    cost = _money(priced.cost, program)
    events = [
        *done.events,
        Event(
            "recovery.given",
            {
                "recovery_id": str(recovery_id),
                "customer": row["external_id"],
                "agent": {"key_id": str(agent.key_id), "name": agent.name},
                "reason": data.reason,
                "action": data.action.__struct_config__.tag,
                "given": msgspec.to_builtins(done.given),
                "explanation": explanation,
                "cost": msgspec.to_builtins(cost),
                "month": month,
                "case_id": None if case_id is None else str(case_id),
                "order": data.order,
                "complaint_id": None if links.complaint_id is None else str(links.complaint_id),
            },
        ),
    ]
    await emit(conn, program.id, events, now)
    return RecoveryOut(
        id=recovery_id,
        customer_external_id=row["external_id"],
        agent=AgentRef(key_id=agent.key_id, name=agent.name),
        reason=data.reason,
        given=done.given,
        explanation=explanation,
        cost=cost,
        month=month,
        budget_left=_money(after.program_left, program),
        agent_left=None if after.agent_left is None else _money(after.agent_left, program),
        case_id=case_id,
        order_external_id=data.order,
        complaint_id=links.complaint_id,
        entries=ledger.entry_views(done.entries),
        created_at=now,
    )


# --- cases ------------------------------------------------------------------------------------------------


def _agent_ref(key_id: UUID | None, name: str | None) -> AgentRef | None:
    return None if key_id is None else AgentRef(key_id=key_id, name=name or "")


def _summary(row: dict[str, Any], program: Program) -> CaseSummary:
    return CaseSummary(
        id=row["id"],
        customer_external_id=row["customer_external_id"],
        status=row["status"],
        source=row["source"],
        summary=row["summary"],
        order_external_id=row["order_external_id"],
        agent=_agent_ref(row["agent_key_id"], row["agent_name"]),
        opened_at=row["opened_at"],
        first_action_at=row["first_action_at"],
        time_to_first_action_seconds=domain.seconds_between(row["opened_at"], row["first_action_at"]),
        closed_at=row["closed_at"],
        time_to_resolution_seconds=domain.seconds_between(row["opened_at"], row["closed_at"]),
        resolution=row["resolution"],
        reopened=int(row["reopened_count"]),
        recoveries=int(row["recoveries"]),
        recovery_cost=_money(int(row["recovery_cost"]), program),
    )


async def _case_out(conn: Connection, program: Program, row: dict[str, Any]) -> CaseOut:
    entries = [
        CaseEntryOut(
            id=e["id"],
            kind=e["kind"],
            text=e["text"],
            recovery_id=e["recovery_id"],
            by=_agent_ref(e["by_key_id"], e["by_name"]),
            at=e["at"],
        )
        for e in await repository.entries_of(conn, program.id, row["id"])
    ]
    return CaseOut(**msgspec.structs.asdict(_summary(row, program)), entries=entries)


async def _locked_case(conn: Connection, program: Program, case_id: UUID, field: str) -> dict[str, Any]:
    row = await repository.get_case(conn, program.id, case_id, lock=True)
    if row is None:
        raise NotFound(f"no case {case_id} in this program", field=field)
    return row


def _case_payload(row: dict[str, Any], program: Program) -> dict[str, Any]:
    summary = _summary(row, program)
    payload: dict[str, Any] = {
        "case_id": str(summary.id),
        "customer": summary.customer_external_id,
        "source": summary.source,
        "summary": summary.summary,
        "order": summary.order_external_id,
        "agent": None
        if summary.agent is None
        else {"key_id": str(summary.agent.key_id), "name": summary.agent.name},
        "opened_at": summary.opened_at,
    }
    if summary.status == "closed":
        payload |= {
            "closed_at": summary.closed_at,
            "resolution": summary.resolution,
            "reopened": summary.reopened,
            "time_to_first_action_seconds": summary.time_to_first_action_seconds,
            "time_to_resolution_seconds": summary.time_to_resolution_seconds,
            "recoveries": summary.recoveries,
            "recovery_cost": msgspec.to_builtins(summary.recovery_cost),
        }
    return payload


async def open_case(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    *,
    source: str,
    summary: str,
    now: datetime,
    opened_at: datetime | None = None,
    source_key: str | None = None,
    order_id: UUID | None = None,
    by: Agent | None = None,
    note: str | None = None,
) -> tuple[UUID | None, list[Event]]:
    """Open a case (a complaint's or a feedback's once per `source_key`: None when it was opened before) and
    the `case.opened` event for the caller's outbox insert. Opened by a person (`by`): that is its first
    action, and they hold it."""
    case_id = uuid4()
    opened_at = opened_at or now
    inserted = await repository.insert_case(
        conn,
        {
            "id": case_id,
            "program_id": program.id,
            "customer_id": customer.id,
            "source": source,
            "source_key": source_key,
            "summary": summary,
            "order_id": order_id,
            "agent_key_id": by.key_id if by else None,
            "agent_name": by.name if by else None,
            "opened_at": opened_at,
            "first_action_at": opened_at if by else None,
            "created_at": now,
        },
    )
    if not inserted:
        return None, []
    opener = f"Opened by {by.name}" if by else f"Opened by a {source}"
    await repository.add_entry(
        conn, program.id, case_id, "opened", f"{opener}: {summary}", opened_at, by=by.ref if by else None
    )
    if note is not None and by is not None:
        await repository.add_entry(conn, program.id, case_id, "note", note, now, by=by.ref)
    row = await repository.get_case(conn, program.id, case_id)
    assert row is not None
    return case_id, [Event("case.opened", _case_payload(row, program))]


async def open_by_agent(
    conn: Connection, program: Program, agent: Agent, data: CaseIn, now: datetime
) -> CaseOut:
    row = await customers.get(conn, program.id, data.customer, field="customer")
    order_id = (
        None
        if data.order is None
        else await orders.customers_order(conn, program.id, row["external_id"], data.order, "order")
    )
    case_id, events = await open_case(
        conn,
        program,
        ledger.customer_of(row),
        source="agent",
        summary=data.summary,
        now=now,
        order_id=order_id,
        by=agent,
        note=data.note,
    )
    assert case_id is not None
    await emit(conn, program.id, events, now)
    return await get_case(conn, program, case_id)


def _closed(case: dict[str, Any], field: str) -> CaseClosed:
    return CaseClosed(
        f"the case was closed at {case['closed_at']:%Y-%m-%d %H:%M} UTC: open a new one for what is still wrong",
        field=field,
    )


async def _move(
    conn: Connection, program: Program, agent: Agent, case_id: UUID, kind: str, text: str, now: datetime
) -> None:
    """A person's note or close on an open case: its timeline entry, and the case's first action and agent
    when it had none."""
    row = await _locked_case(conn, program, case_id, "path:case_id")
    if row["status"] != "open":
        raise _closed(row, "path:case_id")
    await repository.add_entry(conn, program.id, case_id, kind, text, now, by=agent.ref)
    await repository.acted(conn, program.id, case_id, agent.ref, now)


async def add_note(
    conn: Connection, program: Program, agent: Agent, case_id: UUID, text: str, now: datetime
) -> CaseOut:
    await _move(conn, program, agent, case_id, "note", text, now)
    return await get_case(conn, program, case_id)


async def close(
    conn: Connection, program: Program, agent: Agent, case_id: UUID, note: str, now: datetime
) -> CaseOut:
    await _move(conn, program, agent, case_id, "closed", note, now)
    await repository.close_case(conn, program.id, case_id, note, now)
    closed = await repository.get_case(conn, program.id, case_id)
    assert closed is not None
    await emit(conn, program.id, [Event("case.closed", _case_payload(closed, program))], now)
    return await _case_out(conn, program, closed)


async def reopen(
    conn: Connection, program: Program, case_id: UUID, text: str, now: datetime, field: str
) -> tuple[dict[str, Any], list[Event]]:
    """A closed case opened again by the customer's own answer (a follow-up still unhappy: "did we put it
    right?" — no), with `text` on its timeline; an open case stays as it is. The case row (as it is now) and
    the `case.reopened` event for the caller's outbox insert."""
    row = await _locked_case(conn, program, case_id, field)
    if row["status"] == "open":
        return row, []
    await repository.reopen_case(conn, program.id, case_id)
    await repository.add_entry(conn, program.id, case_id, "reopened", text, now, by=None)
    reopened = await repository.get_case(conn, program.id, case_id)
    assert reopened is not None
    return reopened, [Event("case.reopened", _case_payload(reopened, program))]


async def case_row(conn: Connection, program: Program, case_id: UUID, field: str) -> dict[str, Any]:
    """A case's row (customer_id, status, ...), locked until commit: 404 naming `field` if the program has none."""
    return await _locked_case(conn, program, case_id, field)


async def get_case(conn: Connection, program: Program, case_id: UUID) -> CaseOut:
    row = await repository.get_case(conn, program.id, case_id)
    if row is None:
        raise NotFound(f"no case {case_id} in this program", field="path:case_id")
    return await _case_out(conn, program, row)


async def list_cases(
    conn: Connection,
    program: Program,
    *,
    status: str | None,
    agent: str | None,
    customer: str | None,
    cursor: str | None,
    limit: int,
) -> CaseList:
    """Cases newest first (cursor pages); `agent`: a key id, or `none` for cases nobody has taken yet."""
    agent_id = None
    if agent is not None and agent != "none":
        try:
            agent_id = UUID(agent)
        except ValueError:
            raise InvalidInput(
                "an agent's key id, or `none` for cases nobody has taken", field="query:agent"
            ) from None
    rows = await repository.list_cases(
        conn,
        program.id,
        status=status,
        agent=agent_id,
        unassigned=agent == "none",
        customer=customer,
        after=decode_position(cursor),
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return CaseList(
        items=[_summary(r, program) for r in rows],
        next_cursor=encode_position(rows[-1]["opened_at"], rows[-1]["id"]) if more else None,
    )


def open_cases_lateral(customer_id: str) -> str:
    """Published for the customer status: a LATERAL join on `customer_id` adding `open_cases` (JSON)."""
    return repository.open_cases_lateral(customer_id)


def open_cases_of(row: dict[str, Any]) -> list[OpenCaseOut]:
    """The customer status' open cases, from the column `open_cases_lateral` added."""
    cases = msgspec.json.decode(row.get("open_cases") or "[]")
    return [
        OpenCaseOut(
            id=UUID(c["id"]),
            source=c["source"],
            summary=c["summary"],
            opened_at=msgspec.convert(c["opened_at"], datetime),
            first_action_at=None
            if c["first_action_at"] is None
            else msgspec.convert(c["first_action_at"], datetime),
            agent=None
            if c["agent_key_id"] is None
            else AgentRef(key_id=UUID(c["agent_key_id"]), name=c["agent_name"] or ""),
            last_entry=c["last_entry"],
        )
        for c in cases
    ]
