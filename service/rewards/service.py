"""Reward use cases: the catalogue, redeeming (points spent for a code, or a code given at no cost),
codes validated and used at checkout, cancellation and expiry that give points back to their lots.

Lock order, the same on every path: the customer's ledger mutex (`ledger.lock`) first, then the
redemption rows, then (for a limited reward) the reward's row. A code changes state only by an UPDATE
guarded on its state, so of two uses at once exactly one wins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.pagination import decode_position, encode_position
from service.customers import service as customers
from service.ledger import service as ledger
from service.ledger.schemas import LedgerEntryOut
from service.orders import service as orders
from service.outbox.service import Event, emit
from service.programs.service import Program
from service.rewards import domain, repository
from service.rewards.schemas import (
    CatalogueItem,
    CodeCheckOut,
    CodeResult,
    CustomerCatalogue,
    DiscountOut,
    FreeProduct,
    LimitIn,
    Money,
    RedemptionIn,
    RedemptionList,
    RedemptionOut,
    RewardIn,
    RewardOut,
    RewardPatch,
    RewardVersionOut,
)
from service.tiers.published import TIER_RANK_LATERAL

TITLES = {
    "reward-inactive": "The reward cannot be redeemed now",
    "tier-too-low": "The customer's tier is too low for this reward",
    "customer-in-debt": "The customer owes points",
    "out-of-stock": "The reward is out of stock",
    "limit-reached": "The customer has reached this reward's limit",
    "code-used": "The code has been used",
    "code-expired": "The code has expired",
    "code-cancelled": "The code was cancelled",
    "code-not-applicable": "The code does not apply to this order",
}


class Refused(Conflict):
    """A 409 with its own problem type (`out-of-stock`, `code-used`, ...)."""

    def __init__(
        self, slug: str, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(detail, field=field, extra=extra)
        self.slug = slug
        self.title = TITLES[slug]


def _unknown_reward(reward_id: UUID, field: str = "path:reward_id") -> NotFound:
    return NotFound(f"no reward {reward_id} in this program", field=field)


def _unknown_code() -> NotFound:
    # The same for a code of another program as for no code at all: nothing tells them apart.
    return NotFound("no such code in this program", field="path:code")


# --- catalogue ---------------------------------------------------------------------------------------


def _definition(data: RewardIn) -> dict[str, Any]:
    d: dict[str, Any] = msgspec.to_builtins(data)
    d.pop("status")
    d.pop("stock")
    return d


def _money(value: Any) -> Money | None:
    return None if value is None else Money(amount=int(value["amount"]), currency=str(value["currency"]))


def _reward_out(row: Mapping[str, Any]) -> RewardOut:
    d = row["definition"]
    limit = d.get("limit")
    return RewardOut(
        id=row["id"],
        version=row["version"],
        status=row["status"],
        kind=d["kind"],
        name=d["name"],
        description=d.get("description") or {},
        cost_points=d.get("cost_points"),
        amount=_money(d.get("amount")),
        percent=d.get("percent"),
        cap=_money(d.get("cap")),
        min_order=_money(d.get("min_order")),
        sku=d.get("sku"),
        quantity=d.get("quantity", 1),
        points_step=d.get("points_step"),
        step_amount=_money(d.get("step_amount")),
        min_points=d.get("min_points"),
        max_points=d.get("max_points"),
        max_share_percent=d.get("max_share_percent"),
        value=_money(d.get("value")),
        min_tier=d.get("min_tier"),
        stock=row["stock_left"],
        limit=None if limit is None else LimitIn(count=limit["count"], period=limit["period"]),
        code_valid_days=d.get("code_valid_days"),
        starts_at=None if d.get("starts_at") is None else msgspec.convert(d["starts_at"], datetime),
        ends_at=None if d.get("ends_at") is None else msgspec.convert(d["ends_at"], datetime),
        image_url=d.get("image_url"),
        issued=int(row["issued"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _check(conn: Connection, program: Program, data: RewardIn) -> dict[str, Any]:
    definition = _definition(data)
    currencies = frozenset({program.base_currency, *program.earn_rates})
    tier_keys = frozenset(t["key"] for t in await repository.tiers(conn, program.id))
    found = domain.definition_problems(
        {**definition, "starts_at": data.starts_at, "ends_at": data.ends_at}, currencies, tier_keys
    )
    if found:
        field, problem = found[0]
        raise InvalidInput(problem, field=field)
    return definition


async def create(conn: Connection, program: Program, data: RewardIn, now: datetime) -> RewardOut:
    definition = await _check(conn, program, data)
    row = await repository.insert_reward(conn, uuid4(), program.id, data.status, definition, data.stock, now)
    return _reward_out(row)


async def _row(conn: Connection, program_id: UUID, reward_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    # Locked: about to change it (no answer from this row); else the answer counts its codes.
    row = await repository.get_reward(conn, program_id, reward_id, lock=lock, issued=not lock)
    if row is None:
        raise _unknown_reward(reward_id)
    return row


async def replace(
    conn: Connection, program: Program, reward_id: UUID, data: RewardIn, now: datetime
) -> RewardOut:
    """A new definition: a new version once the reward has issued codes (theirs keep what they were issued
    with), else written over the current one."""
    row = await _row(conn, program.id, reward_id, lock=True)
    if row["status"] == "archived":
        raise Conflict("an archived reward does not change; create a new one", field="path:reward_id")
    definition = await _check(conn, program, data)
    await repository.save_reward(
        conn,
        reward_id,
        definition=definition,
        status=data.status,
        stock=data.stock,
        new_version=row["used"],
        now=now,
    )
    return _reward_out(await _row(conn, program.id, reward_id))


async def patch(
    conn: Connection, program_id: UUID, reward_id: UUID, data: RewardPatch, now: datetime
) -> RewardOut:
    """Pause, resume or archive a reward, or set its stock (codes left to issue)."""
    row = await _row(conn, program_id, reward_id, lock=True)
    status = row["status"] if data.status is msgspec.UNSET else data.status
    if row["status"] == "archived" and status != "archived":
        raise Conflict("an archived reward stays archived; create a new one", field="status")
    stock = row["stock_left"] if data.stock is msgspec.UNSET else data.stock
    await repository.set_status_and_stock(conn, reward_id, status, stock, now)
    return _reward_out(await _row(conn, program_id, reward_id))


async def delete(conn: Connection, program_id: UUID, reward_id: UUID) -> None:
    row = await _row(conn, program_id, reward_id, lock=True)
    if row["used"]:
        raise Conflict("this reward has issued codes: archive it instead", field="path:reward_id")
    await repository.delete_reward(conn, reward_id)


async def get(conn: Connection, program_id: UUID, reward_id: UUID) -> RewardOut:
    return _reward_out(await _row(conn, program_id, reward_id))


@dataclass(frozen=True, slots=True)
class RewardValue:
    """What another feature prices a reward given at no cost by: its kind, state and fixed value."""

    kind: str
    status: str
    value: tuple[int, str] | None  # (amount, currency) fixed at issue; None: valued at use
    cost_points: int | None  # its price in points (every kind but points_for_discount)


async def value_of(conn: Connection, program_id: UUID, reward_id: UUID) -> RewardValue | None:
    """The reward's kind, state and fixed value (one read, no count of its codes); None if unknown."""
    row = await repository.get_reward(conn, program_id, reward_id)
    if row is None:
        return None
    d = row["definition"]
    value = None if d["kind"] == "points_for_discount" else domain.issue_value(d, 0)
    return RewardValue(d["kind"], row["status"], value, d.get("cost_points"))


async def list_all(conn: Connection, program_id: UUID, status: str | None) -> list[RewardOut]:
    return [_reward_out(row) for row in await repository.list_rewards(conn, program_id, status, issued=True)]


async def versions(conn: Connection, program_id: UUID, reward_id: UUID) -> list[RewardVersionOut]:
    await _row(conn, program_id, reward_id)
    return [RewardVersionOut(**row) for row in await repository.versions(conn, reward_id)]


# --- the customer's view -----------------------------------------------------------------------------


def _window(d: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    def at(name: str) -> datetime | None:
        return None if d.get(name) is None else msgspec.convert(d[name], datetime)

    return at("starts_at"), at("ends_at")


async def _customer(conn: Connection, program_id: UUID, external_id: str) -> dict[str, Any]:
    row = await customers.find(conn, program_id, external_id, TIER_RANK_LATERAL)
    if row is None:
        raise NotFound(f"no customer {external_id!r} in this program", field="path:external_id")
    return row


def _standing(
    reward: Mapping[str, Any],
    tiers: Mapping[str, Mapping[str, Any]],
    customer: Mapping[str, Any],
    debt: int,
    used_in_period: int,
) -> domain.Standing:
    d = reward["definition"]
    starts_at, ends_at = _window(d)
    min_tier = tiers.get(d["min_tier"]) if d.get("min_tier") else None
    limit = d.get("limit")
    return domain.Standing(
        status=reward["status"],
        starts_at=starts_at,
        ends_at=ends_at,
        stock_left=reward["stock_left"],
        min_tier_rank=None if min_tier is None else int(min_tier["rank"]),
        min_tier_name=None if min_tier is None else str(min_tier["name"]),
        customer_tier_rank=customer.get("tier_rank"),
        debt=debt,
        limit_count=None if limit is None else int(limit["count"]),
        used_in_period=used_in_period,
    )


async def catalogue(
    conn: Connection, program: Program, external_id: str, locale: str | None, now: datetime
) -> CustomerCatalogue:
    """Every active reward as this customer sees it now: can they have it, else what is missing."""
    customer = await _customer(conn, program.id, external_id)
    held = await ledger.balance(conn, customer["id"], now)
    tiers = {t["key"]: t for t in await repository.tiers(conn, program.id)}
    times = await repository.customer_redemption_times(conn, customer["id"])
    locale = locale or customer.get("locale") or "en"
    items: list[CatalogueItem] = []
    for reward in await repository.list_rewards(conn, program.id, "active"):
        d = reward["definition"]
        starts_at, ends_at = _window(d)
        if (starts_at is not None and now < starts_at) or (ends_at is not None and now >= ends_at):
            continue
        limit = d.get("limit")
        since = None if limit is None else domain.period_start(limit["period"], now, program.zone)
        used = sum(1 for rid, at in times if rid == reward["id"] and (since is None or at >= since))
        standing = _standing(reward, tiers, customer, held.debt, used)
        variable = d["kind"] == "points_for_discount"
        cost = domain.least_cost(d)
        state, note, missing = domain.catalogue_state(standing, now, held.available, cost)
        items.append(
            CatalogueItem(
                reward_id=reward["id"],
                kind=d["kind"],
                name=domain.localized(d["name"], locale) or "",
                description=domain.localized(d.get("description") or {}, locale),
                image_url=d.get("image_url"),
                cost_points=cost,
                state=state,  # type: ignore[arg-type]
                note=note,
                points_missing=missing,
                min_tier=d.get("min_tier"),
                max_points_now=domain.most_points_now(d, held.available) if variable else None,
                amount=_money(d.get("amount") or d.get("step_amount")),
                percent=d.get("percent"),
                value=_money(d.get("value")),
            )
        )
    return CustomerCatalogue(
        customer_external_id=external_id, locale=locale, available_points=held.available, items=items
    )


# --- redeeming ---------------------------------------------------------------------------------------


def _redemption_out(row: Mapping[str, Any], entries: Sequence[LedgerEntryOut] = ()) -> RedemptionOut:
    discount = row["discount"]
    return RedemptionOut(
        id=row["id"],
        code=row["code"],
        status=row["status"],
        source=row["source"],
        customer_external_id=row["customer_external_id"],
        reward_id=row["reward_id"],
        reward_version=row["reward_version"],
        reward_name=domain.localized(discount["name"], "en") or "",
        points=int(row["points"]),
        discount=DiscountOut(
            kind=discount["kind"],
            amount=_money(discount.get("amount")),
            percent=discount.get("percent"),
            cap=_money(discount.get("cap")),
            min_order=_money(discount.get("min_order")),
            sku=discount.get("sku"),
            quantity=discount.get("quantity"),
            max_share_percent=discount.get("max_share_percent"),
            value=_money(discount.get("value")),
        ),
        value=None
        if row["value_amount"] is None
        else Money(amount=int(row["value_amount"]), currency=str(row["currency"])),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        used_at=row["used_at"],
        order_external_id=row["order_external_id"],
        cancelled_at=row["cancelled_at"],
        expired_at=row["expired_at"],
        points_returned=int(row["points_returned"]),
        entries=list(entries),
    )


def _event_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    discount = row["discount"]
    return {
        "customer": row["customer_external_id"],
        "redemption_id": str(row["id"]),
        "code": row["code"],
        "reward": {
            "id": str(row["reward_id"]),
            "version": row["reward_version"],
            "name": dict(discount["name"]),
            "kind": discount["kind"],
        },
        "points": int(row["points"]),
        "expires_at": row["expires_at"],
        "value": None
        if row["value_amount"] is None
        else {"amount": int(row["value_amount"]), "currency": row["currency"]},
        "source": row["source"],
    }


@dataclass(frozen=True, slots=True)
class Issued:
    row: dict[str, Any]  # as `repository.get_redemption` reads it
    result: ledger.LedgerResult


async def _issue(
    conn: Connection,
    program: Program,
    customer: Mapping[str, Any],
    reward_id: UUID,
    *,
    points: int | None,
    source: str,
    source_key: str | None,
    now: datetime,
    actor: str,
    field: str,
) -> Issued | None:
    """Check and issue one code, under the customer's ledger mutex; None when `source_key` was granted
    before. Raises the refusals (409), InsufficientPoints, or a 404 for an unknown reward."""
    who = ledger.customer_of(customer)
    balance = await ledger.lock(conn, who, now)
    if source_key is not None and await repository.source_taken(conn, program.id, source_key):
        return None
    reward = await repository.get_reward(conn, program.id, reward_id)
    if reward is None:
        raise _unknown_reward(reward_id, field)
    d = reward["definition"]
    limit = d.get("limit")
    since = None if limit is None else domain.period_start(limit["period"], now, program.zone)
    used = 0 if limit is None else await repository.count_since(conn, who.id, reward_id, since)
    tiers = {t["key"]: t for t in await repository.tiers(conn, program.id)} if d.get("min_tier") else {}
    refused = domain.refusal(_standing(reward, tiers, customer, balance.debt, used), now)
    if refused is not None:
        raise Refused(refused[0], refused[1], field=field)
    free = source != "points"
    if free and d["kind"] == "points_for_discount":
        raise InvalidInput(
            "a points_for_discount reward is worth the points spent on it: it cannot be given at no cost",
            field=field,
        )
    if free:
        cost = 0
    elif d["kind"] == "points_for_discount":
        try:
            cost = domain.variable_cost(d, points)
        except domain.VariablePoints as exc:
            raise InvalidInput(str(exc), field="points") from exc
    else:
        if points is not None and points != d["cost_points"]:
            raise InvalidInput(
                f"this reward costs {d['cost_points']} points; `points` is only for a points_for_discount reward",
                field="points",
            )
        cost = int(d["cost_points"])
    if reward["stock_left"] is not None and not await repository.take_stock(conn, reward_id):
        raise Refused("out-of-stock", "this reward is out of stock", field=field)
    redemption_id = uuid4()
    result = ledger.LedgerResult()
    if cost:
        result = await ledger.debit(
            conn,
            who,
            cost,
            kind="redeem",
            reason=f"redeemed '{domain.headline(d)}'",
            explanation=domain.redeemed_explanation(d, cost),
            now=now,
            topic="points.redeemed",
            actor=actor,
            locked=True,
            details={
                "redemption_id": str(redemption_id),
                "reward_id": str(reward_id),
                "version": reward["version"],
            },
        )
    value = domain.issue_value(d, cost)
    valid_days = d.get("code_valid_days")
    values = {
        "id": redemption_id,
        "program_id": program.id,
        "customer_id": who.id,
        "reward_id": reward_id,
        "reward_version": reward["version"],
        "source": source,
        "source_key": source_key,
        "points": cost,
        "entry_id": result.entries[0][0] if result.entries else None,
        "discount": domain.discount_snapshot(d, cost),
        "value_amount": None if value is None else value[0],
        "currency": None if value is None else value[1],
        "expires_at": None if valid_days is None else now + timedelta(days=int(valid_days)),
        "created_at": now,
    }
    for _ in range(3):  # 80 random bits: a clash is all but impossible, and then a new code is drawn
        values["code"] = domain.new_code(program.code_prefix)
        values["code_key"] = domain.code_key(values["code"])
        try:
            inserted = await repository.insert_redemption(conn, values)
        except repository.RewardGone as exc:
            raise _unknown_reward(reward_id, field) from exc
        if inserted:
            break
        if source_key is not None and await repository.source_taken(conn, program.id, source_key):
            return None
    else:
        raise RuntimeError("could not draw a free code")
    if not reward["used"]:
        await repository.mark_used(conn, reward_id)
    row = {
        **values,
        "status": "issued",
        "customer_external_id": who.external_id,
        "order_id": None,
        "order_external_id": None,
        "used_at": None,
        "cancelled_at": None,
        "expired_at": None,
        "return_entry_id": None,
        "points_returned": 0,
    }
    await emit(conn, program.id, [*result.events, Event("redemption.created", _event_payload(row))], now)
    return Issued(row, result)


async def redeem(
    conn: Connection, program: Program, external_id: str, data: RedemptionIn, now: datetime, actor: str
) -> RedemptionOut:
    """Spend the customer's points on a reward: a code, its expiry, what it gives, the ledger entry."""
    customer = await _customer(conn, program.id, external_id)
    issued = await _issue(
        conn,
        program,
        customer,
        data.reward_id,
        points=data.points,
        source="points",
        source_key=None,
        now=now,
        actor=actor,
        field="reward_id",
    )
    assert issued is not None
    return _redemption_out(issued.row, ledger.entry_views(issued.result))


@dataclass(frozen=True, slots=True)
class Granted:
    redemption_id: UUID
    code: str
    expires_at: datetime | None
    reward_name: dict[str, str]
    discount: dict[str, Any]


async def grant(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    reward_id: UUID,
    *,
    source: str,
    source_key: str,
    now: datetime,
    actor: str,
) -> Granted | None:
    """A code at no cost (a gift, a recovery, a referral, a journey step), once per `source_key`: None when
    that key was granted before. The reward's state, tier, stock and limits apply as to a redemption."""
    row = await _customer(conn, program.id, customer.external_id)
    issued = await _issue(
        conn,
        program,
        row,
        reward_id,
        points=None,
        source=source,
        source_key=source_key,
        now=now,
        actor=actor,
        field="reward_id",
    )
    if issued is None:
        return None
    r = issued.row
    return Granted(r["id"], r["code"], r["expires_at"], dict(r["discount"]["name"]), dict(r["discount"]))


async def _locked_redemption(
    conn: Connection, program_id: UUID, redemption_id: UUID, now: datetime
) -> dict[str, Any]:
    """The redemption, after taking its customer's ledger mutex (the lock order of every code change)."""
    row = await repository.get_redemption(conn, program_id, redemption_id)
    if row is None:
        raise NotFound(f"no redemption {redemption_id} in this program", field="path:redemption_id")
    await ledger.lock(conn, ledger.Customer(program_id, row["customer_id"], row["customer_external_id"]), now)
    fresh = await repository.get_redemption(conn, program_id, redemption_id)
    assert fresh is not None
    return fresh


async def _close(
    conn: Connection,
    program: Program,
    row: dict[str, Any],
    *,
    to: str,
    from_: tuple[str, ...],
    give_back: bool,
    why: str,
    now: datetime,
) -> tuple[dict[str, Any] | None, list[LedgerEntryOut]]:
    """Cancel or expire the code (guarded on its state); give its points back to their lots when asked and
    restore the stock. None when the code was in none of `from_` any more."""
    closed = await repository.close(conn, row["id"], to=to, from_=from_, now=now)
    if closed is None:
        return None, []
    customer = ledger.Customer(program.id, row["customer_id"], row["customer_external_id"])
    entries: list[LedgerEntryOut] = []
    events: list[Event] = []
    returned = 0
    if give_back and closed["entry_id"] is not None:
        name = domain.localized(row["discount"]["name"], "en")
        given = await ledger.give_back(
            conn,
            customer,
            closed["entry_id"],
            reason=f"redemption {row['id']} {to}",
            explanation=f"'{name}' {why}: {ledger.plural_points(int(closed['points']))} given back to the lots "
            "they came from",
            now=now,
            topic="points.returned",
            details={"redemption_id": str(row["id"])},
        )
        events.extend(given.result.events)
        entries = ledger.entry_views(given.result)
        if given.entry_id is not None:
            returned = given.returned + given.result.debt_settled
            await repository.set_returned(conn, row["id"], given.entry_id, returned)
    await repository.return_stock(conn, row["reward_id"])
    after = await repository.get_redemption(conn, program.id, row["id"])
    assert after is not None
    payload = {**_event_payload(after), "points_returned": returned}
    topic = "redemption.cancelled" if to == "cancelled" else "redemption.expired"
    events.append(Event(topic, payload))
    await emit(conn, program.id, events, now)
    return after, entries


async def cancel(
    conn: Connection, program: Program, redemption_id: UUID, now: datetime, reason: str | None = None
) -> RedemptionOut:
    """Cancel an unused code: its points go back to the very lots they came from (with their own expiry;
    points of a lot that has lapsed meanwhile are not given back), stock and limits restored. Cancelling a
    cancelled code again answers it as it is."""
    row = await _locked_redemption(conn, program.id, redemption_id, now)
    if row["status"] == "issued" and row["expires_at"] is not None and row["expires_at"] <= now:
        # Past its date, swept or not: what happens to its points is the expiry's to say.
        raise Refused(
            "code-expired", "this code has expired and cannot be cancelled", field="path:redemption_id"
        )
    closed, entries = await _close(
        conn,
        program,
        row,
        to="cancelled",
        from_=("issued",),
        give_back=True,
        why=f"cancelled ({reason.strip()})" if reason and reason.strip() else "cancelled",
        now=now,
    )
    if closed is not None:
        return _redemption_out(closed, entries)
    if row["status"] == "cancelled":
        return _redemption_out(row)
    slug = "code-used" if row["status"] == "used" else "code-expired"
    raise Refused(slug, f"a code that is {row['status']} cannot be cancelled", field="path:redemption_id")


async def expire(conn: Connection, program: Program, redemption_id: UUID, now: datetime) -> bool:
    """An issued code past its date becomes expired (False: it was not issued any more, or not due); its
    points go back only when the program says so."""
    row = await _locked_redemption(conn, program.id, redemption_id, now)
    if row["status"] != "issued" or row["expires_at"] is None or row["expires_at"] > now:
        return False
    closed, _ = await _close(
        conn,
        program,
        row,
        to="expired",
        from_=("issued",),
        give_back=program.code_expiry_returns_points,
        why="expired unused",
        now=now,
    )
    return closed is not None


async def cancel_for_refunded_order(conn: Connection, program: Program, order_id: UUID, now: datetime) -> int:
    """A full refund of an order cancels the codes it used (a program setting, on by default) and gives
    their points back. Runs in the refund's transaction, after the ledger's reversal (ledger lock held)."""
    if not program.cancel_redemption_on_full_refund:
        return 0
    cancelled = 0
    for redemption_id in await repository.used_by_order(conn, order_id):
        row = await _locked_redemption(conn, program.id, redemption_id, now)
        closed, _ = await _close(
            conn,
            program,
            row,
            to="cancelled",
            from_=("used",),
            give_back=True,
            why="cancelled by the full refund of its order",
            now=now,
        )
        cancelled += closed is not None
    return cancelled


# --- codes at checkout -------------------------------------------------------------------------------


def cart_facts(
    customer_external_id: str, currency: str, lines: Sequence[tuple[str, int, int]], shipping_amount: int
) -> domain.CartFacts:
    return domain.CartFacts(
        customer_external_id,
        currency,
        tuple(domain.CartLine(sku, quantity, unit) for sku, quantity, unit in lines),
        shipping_amount,
    )


async def _by_code(conn: Connection, program_id: UUID, code: str) -> dict[str, Any]:
    key = domain.code_key(code)
    row = None if key is None else (await repository.by_codes(conn, program_id, [key])).get(key)
    if row is None:
        raise _unknown_code()
    return row


def _state(
    row: Mapping[str, Any], cart: domain.CartFacts, now: datetime
) -> domain.Applied | domain.NotApplied:
    return domain.check(
        row["status"], row["expires_at"], row["discount"], row["customer_external_id"], cart, now
    )


def _checked(row: Mapping[str, Any], cart: domain.CartFacts, now: datetime) -> domain.Applied:
    state = _state(row, cart, now)
    if isinstance(state, domain.NotApplied):
        raise Refused(state.reason, state.detail, field="path:code")
    return state


async def validate(
    conn: Connection, program_id: UUID, code: str, cart: domain.CartFacts, now: datetime
) -> CodeCheckOut:
    """What the code takes off this cart, or why not (409 with the reason); writes nothing."""
    row = await _by_code(conn, program_id, code)
    applied = _checked(row, cart, now)
    return CodeCheckOut(
        code=row["code"],
        redemption_id=row["id"],
        reward_name=domain.localized(row["discount"]["name"], "en") or "",
        kind=row["discount"]["kind"],
        discount=Money(amount=applied.amount, currency=cart.currency),
        free_shipping=applied.free_shipping,
        free_product=None
        if applied.free_sku is None
        else FreeProduct(sku=applied.free_sku, quantity=applied.free_quantity),
        expires_at=row["expires_at"],
    )


def _use_value(row: Mapping[str, Any], applied: domain.Applied, currency: str) -> tuple[int, str] | None:
    """The money value taken at use (percent, free shipping, free product); the others keep theirs."""
    if row["value_amount"] is not None:
        return None
    return applied.amount, currency


async def _mark_used(
    conn: Connection,
    program: Program,
    row: dict[str, Any],
    order_id: UUID | None,
    value: tuple[int, str] | None,
    now: datetime,
) -> dict[str, Any] | None:
    if not await repository.mark_code_used(conn, row["id"], now, order_id, value):
        return None
    after = await repository.get_redemption(conn, program.id, row["id"])
    assert after is not None
    await emit(
        conn,
        program.id,
        [Event("redemption.used", {**_event_payload(after), "order": after["order_external_id"]})],
        now,
    )
    return after


async def use(
    conn: Connection, program: Program, code: str, order_external_id: str | None, now: datetime
) -> RedemptionOut:
    """A shop reports a code used on its own (409 with the reason it cannot be)."""
    found = await _by_code(conn, program.id, code)
    row = await _locked_redemption(conn, program.id, found["id"], now)
    order_id: UUID | None = None
    value: tuple[int, str] | None = None
    if order_external_id is not None:
        order = await orders.find(conn, program.id, order_external_id)
        if order is None:
            raise NotFound(f"no order {order_external_id!r} in this program", field="order_external_id")
        order_id, out = order
        if out.status == "refunded":
            # Its codes were cancelled by that refund, or would have been: a use now would spend for nothing.
            raise Refused("code-not-applicable", "this order was refunded in full", field="order_external_id")
        facts = cart_facts(
            out.customer_external_id,
            out.currency,
            [(x.sku, x.quantity, x.unit_amount) for x in out.lines],
            out.shipping_amount,
        )
        value = _use_value(row, _checked(row, facts, now), out.currency)
    else:
        state = domain.code_state(row["status"], row["expires_at"], now)
        if state is not None:
            raise Refused(state.reason, state.detail, field="path:code")
    used = await _mark_used(conn, program, row, order_id, value, now)
    if used is None:  # lost to a use at the same moment: say why as it is now
        after = await repository.get_redemption(conn, program.id, row["id"])
        assert after is not None
        state = domain.code_state(after["status"], after["expires_at"], now)
        assert state is not None
        raise Refused(state.reason, state.detail, field="path:code")
    return _redemption_out(used)


async def used_at_payment(
    conn: Connection, program: Program, code: str, order_external_id: str | None, now: datetime
) -> str:
    """A code a payment provider has applied (Stripe took its promotion code: the discount is given, the
    code spent there) is used here too, whatever the cart or the customer the order was recorded for: a
    code is used once, wherever. Answers what became of it ("used", or why it was not: already used,
    cancelled or expired in Encore meanwhile)."""
    found = await _by_code(conn, program.id, code)
    row = await _locked_redemption(conn, program.id, found["id"], now)
    order_id = None
    if order_external_id is not None:
        order = await orders.find(conn, program.id, order_external_id)
        order_id = None if order is None else order[0]
    if row["status"] != "issued":
        return f"{row['status']} already"
    used = await _mark_used(conn, program, row, order_id, None, now)
    return "used" if used is not None else "used already"


def check_codes(codes: Sequence[str]) -> None:
    """Before an order is written: the same code twice is a mistake in the request (422)."""
    seen: set[str] = set()
    for i, code in enumerate(codes):
        key = domain.code_key(code) or code
        if key in seen:
            raise InvalidInput("this code is listed twice", field=f"codes[{i}]")
        seen.add(key)


async def apply_to_order(
    conn: Connection,
    program: Program,
    customer: ledger.Customer,
    order_id: UUID,
    cart: domain.CartFacts,
    codes: Sequence[str],
    now: datetime,
) -> list[CodeResult]:
    """The codes an order came with, each applied (marked used in the order's transaction) or refused with
    its reason; the order itself stands either way."""
    if not codes:
        return []
    keys = [domain.code_key(code) for code in codes]
    found = await repository.by_codes(conn, program.id, [k for k in keys if k is not None])
    if any(row["customer_id"] == customer.id for row in found.values()):
        await ledger.lock(conn, customer, now)  # before the codes' rows: the lock order of every code change
        found = await repository.by_codes(conn, program.id, [k for k in keys if k is not None])
    results: list[CodeResult] = []
    for code, key in zip(codes, keys, strict=True):
        row = None if key is None else found.get(key)
        if row is None:
            results.append(CodeResult(code=code, result="not-found", detail="no such code in this program"))
            continue
        state = _state(row, cart, now)
        if isinstance(state, domain.NotApplied):
            results.append(
                CodeResult(
                    code=row["code"], result=state.reason, detail=state.detail, redemption_id=row["id"]
                )
            )
            continue
        used = await _mark_used(conn, program, row, order_id, _use_value(row, state, cart.currency), now)
        if used is None:
            results.append(
                CodeResult(
                    code=row["code"],
                    result="code-used",
                    detail="this code has been used",
                    redemption_id=row["id"],
                )
            )
            continue
        found[key] = used  # type: ignore[index]
        results.append(
            CodeResult(
                code=row["code"],
                result="applied",
                redemption_id=row["id"],
                discount=Money(amount=state.amount, currency=cart.currency),
            )
        )
    return results


async def get_redemption(conn: Connection, program_id: UUID, redemption_id: UUID) -> RedemptionOut:
    row = await repository.get_redemption(conn, program_id, redemption_id)
    if row is None:
        raise NotFound(f"no redemption {redemption_id} in this program", field="path:redemption_id")
    return _redemption_out(row)


async def event_payload(conn: Connection, program_id: UUID, redemption_id: UUID) -> dict[str, Any] | None:
    """A redemption as its events carry it, for a feature that announces it (Stripe's `redemption.synced`)."""
    row = await repository.get_redemption(conn, program_id, redemption_id)
    return None if row is None else _event_payload(row)


async def list_redemptions(
    conn: Connection,
    program_id: UUID,
    customer_external_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> RedemptionList:
    rows = await repository.list_redemptions(
        conn, program_id, customer_external_id, status, decode_position(cursor), limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return RedemptionList(
        items=[_redemption_out(row) for row in rows],
        next_cursor=encode_position(rows[-1]["created_at"], rows[-1]["id"]) if more else None,
    )


async def codes_shown(conn: Connection, redemption_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """For messages that send a code: by redemption id, the code, its status and expiry, and its reward's
    name and description per locale (the version it was issued from)."""
    return await repository.codes_shown(conn, redemption_ids)


def open_codes_lateral(customer_id: str, now: str) -> str:
    """Published for the customer status: a LATERAL join on `customer_id` adding `open_codes`, a JSON array
    of the customer's codes still usable at `now` (redemption_id, code, reward_id, name per locale, kind,
    expires_at), soonest expiry first."""
    return f"LEFT JOIN LATERAL ({repository.open_codes_select(customer_id, now)}) AS rewards_open(open_codes) ON true"
