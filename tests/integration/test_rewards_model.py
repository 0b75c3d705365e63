"""A hypothesis state machine over the REAL rewards and ledger services on PostgreSQL (no in-memory model):
earn (orders, adjustments), redeem, use a code (on its own or at checkout), cancel, refund (partial and
full), mature and expire lots on a moving clock, expire codes. After every step: `verify` finds the
ledger consistent, nothing is negative, every cancelled (or returning expired) redemption accounts for all
its points (given back, or forfeited because their lots lapsed) lot by lot, and a used code is never
given back except by the full refund of its order."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.db import json_value
from service.core.errors import InsufficientPoints, Problem
from service.core.work import Work
from service.customers import service as customers
from service.earning import inputs, pipeline
from service.ledger import jobs
from service.ledger import service as ledger
from service.programs import service as programs
from service.programs.schemas import CodeSettings, ProgramPatch
from service.rewards import repository as rewards_repository
from service.rewards import service as rewards
from service.rewards.schemas import Money, RedemptionIn, RewardIn
from tests.conftest import START, _truncate, in_app

CUSTOMERS = ("c-0", "c-1")
# (cost, reward): a EUR 5 code valid 10 days; a 10 % code that never expires, 2 in stock.
REWARDS = (
    RewardIn(
        kind="amount_off",
        name={"en": "EUR 5 off"},
        cost_points=50,
        amount=Money(amount=500, currency="EUR"),
        code_valid_days=10,
    ),
    RewardIn(
        kind="percent_off", name={"en": "10 % off"}, cost_points=30, percent=10, code_valid_days=None, stock=2
    ),
)
pick = st.integers(0, 1_000)


class Rewards(RuleBasedStateMachine):
    client: ClassVar[AsyncTestClient[Litestar]]

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.program_id: UUID | None = None
        self.reward_ids: list[UUID] = []
        self.codes: list[tuple[UUID, str]] = []  # (redemption id, code)
        self.orders: list[str] = []
        self.coded_orders: list[str] = []  # orders a code was applied to
        self.seen: dict[UUID, dict[str, Any]] = {}  # each redemption as the last step left it
        self.refunded_orders: set[UUID] = set()  # orders a full refund has closed
        self.steps = 0
        self.reached: set[str] = set()  # which checks found something to check

    def _run(self, fn: Any, *args: Any) -> Any:
        return in_app(self.client, fn, *args)

    async def _tx(self, fn: Any) -> Any:
        """`fn(work)` in one transaction on the current clock; a Problem rolls it back (and is returned)."""
        assert self.program_id is not None
        try:
            async with db.transaction() as conn:
                program = await programs.load(conn, self.program_id)
                return await fn(Work(conn, program.id, program, self.now, "model"))
        except Problem as problem:
            return problem

    def tx(self, fn: Any) -> Any:
        self.steps += 1
        return self._run(self._tx, fn)

    @initialize(expiry_returns=st.booleans(), seed=st.integers(0, 300))
    def program(self, expiry_returns: bool, seed: int) -> None:
        async def setup() -> None:
            await _truncate()
            async with db.transaction() as conn:
                made, _ = await programs.create_program(conn, "Model", "EUR", self.now)
                await programs.update(
                    conn,
                    made.id,
                    ProgramPatch(
                        pending_days=7,
                        points_expire_after_days=30,
                        codes=CodeSettings(expiry_returns_points=expiry_returns),
                    ),
                    self.now,
                    reschedule_expiry=ledger.reschedule_expiry,
                    actor="model",
                )
                program = await programs.load(conn, made.id)
                for data in REWARDS:
                    self.reward_ids.append((await rewards.create(conn, program, data, self.now)).id)
                self.program_id = made.id

        self._run(setup)
        self.expiry_returns = expiry_returns
        if seed:  # points to spend from the first step on
            self.adjustment("c-0", seed)

    # --- helpers -------------------------------------------------------------------------------------

    async def _available(self, conn: db.Connection, external_id: str) -> int | None:
        assert self.program_id is not None
        row = await customers.find(conn, self.program_id, external_id)
        if row is None:
            return None
        return (await ledger.balance(conn, row["id"], self.now)).available

    async def _redemption(self, conn: db.Connection, redemption_id: UUID) -> dict[str, Any]:
        assert self.program_id is not None
        row = await rewards_repository.get_redemption(conn, self.program_id, redemption_id)
        assert row is not None
        return row

    def _code(self, i: int) -> tuple[UUID, str] | None:
        """A code by index; an odd index picks among those still issued at the last step, if any (so uses,
        cancels and refunds of used codes are not left to chance)."""
        issued = [c for c in self.codes if self.seen.get(c[0], {}).get("status") == "issued"]
        among = issued if i % 2 and issued else self.codes
        return among[i // 2 % len(among)] if among else None

    def _usable(self, row: dict[str, Any], customer: str | None) -> bool:
        return (
            row["status"] == "issued"
            and (row["expires_at"] is None or row["expires_at"] > self.now)
            and (customer is None or row["customer_external_id"] == customer)
        )

    # --- rules ---------------------------------------------------------------------------------------

    @rule(who=st.sampled_from(CUSTOMERS), quantity=st.integers(1, 4), code=st.none() | pick)
    def order(self, who: str, quantity: int, code: int | None) -> None:
        """An order (its points pending 7 days), maybe with a code: recorded whatever the code does."""
        chosen = None if code is None else self._code(code)
        external_id = f"o-{len(self.orders)}"

        async def run(work: Work[Any]) -> tuple[bool, Any]:
            before = None if chosen is None else await self._redemption(work.conn, chosen[0])
            order = inputs.Order(
                external_id=external_id,
                placed_at=work.now,
                customer=inputs.CustomerRef(who),
                currency="EUR",
                lines=(inputs.Line(sku="A", quantity=quantity, unit_amount=2500),),
                total_amount=quantity * 2500,
                codes=() if chosen is None else (chosen[1],),
            )
            made = await pipeline.record_order(work, order)
            return before is not None and self._usable(before, who), made

        answer = self.tx(run)
        assert not isinstance(answer, Problem), answer
        usable, made = answer
        self.orders.append(external_id)
        if chosen is not None:
            assert [c.result == "applied" for c in made.codes] == [usable], (made.codes, usable)
            if usable:
                self.coded_orders.append(external_id)

    @rule(who=st.sampled_from(CUSTOMERS), points=st.integers(1, 200))
    def adjustment(self, who: str, points: int) -> None:
        async def run(work: Work[Any]) -> None:
            assert work.program is not None
            row = await customers.find(work.conn, work.program_id, who)
            if row is None:
                row, _, _ = await customers.upsert(work.conn, work.program_id, who, {}, work.now)
            await ledger.adjust(
                work.conn,
                ledger.customer_of(row),
                points,
                reason="model",
                actor="model",
                now=work.now,
                available_at=work.now,
                expires_at=work.now + timedelta(days=work.program.points_expire_after_days or 30),
            )

        assert self.tx(run) is None

    @rule(who=st.sampled_from(CUSTOMERS), which=st.integers(0, len(REWARDS) - 1))
    def redeem(self, who: str, which: int) -> None:
        """Spends exactly the cost when the points are there, else is refused and spends nothing."""
        cost = int(REWARDS[which].cost_points or 0)

        async def run(work: Work[Any]) -> tuple[int | None, Any]:
            before = await self._available(work.conn, who)
            try:
                made = await rewards.redeem(
                    work.conn,
                    work.program,
                    who,
                    RedemptionIn(reward_id=self.reward_ids[which]),
                    work.now,
                    "model",
                )
            except Problem as problem:
                return before, problem
            return before, (made, await self._available(work.conn, who))

        before, outcome = self.tx(run)
        if isinstance(outcome, InsufficientPoints):
            assert before is not None and before < cost
        elif isinstance(outcome, Problem):
            assert before is None or outcome.slug in ("out-of-stock", "customer-in-debt"), outcome  # type: ignore[attr-defined]
        else:
            made, after = outcome
            assert before is not None and before >= cost and after == before - cost
            self.codes.append((made.id, made.code))

    @precondition(lambda self: bool(self.codes))
    @rule(code=pick)
    def use(self, code: int) -> None:
        """A code used on its own: exactly when it is issued and not past its date."""
        chosen = self._code(code)
        if chosen is None:
            return

        async def run(work: Work[Any]) -> tuple[bool, Any]:
            usable = self._usable(await self._redemption(work.conn, chosen[0]), None)
            try:
                return usable, await rewards.use(work.conn, work.program, chosen[1], None, work.now)
            except Problem as problem:
                return usable, problem

        usable, outcome = self.tx(run)
        assert usable == (not isinstance(outcome, Problem)), outcome

    @precondition(lambda self: bool(self.codes))
    @rule(code=pick)
    def cancel(self, code: int) -> None:
        chosen = self._code(code)
        if chosen is None:
            return

        async def run(work: Work[Any]) -> tuple[str, Any]:
            row = await self._redemption(work.conn, chosen[0])
            # Past its date (swept or not) a code is the expiry's: it cannot be cancelled any more.
            status = "expired" if row["status"] == "issued" and not self._usable(row, None) else row["status"]
            try:
                return status, await rewards.cancel(work.conn, work.program, chosen[0], work.now)
            except Problem as problem:
                return status, problem

        status, outcome = self.tx(run)
        if status in ("issued", "cancelled"):
            assert not isinstance(outcome, Problem) and outcome.status == "cancelled", outcome
        else:
            assert isinstance(outcome, Problem) and outcome.slug == f"code-{status}", outcome  # type: ignore[attr-defined]

    @precondition(lambda self: bool(self.orders))
    @rule(order=pick, full=st.booleans())
    def refund(self, order: int, full: bool) -> None:
        """Part of what is left of an order, or all of it (which cancels the codes it used); an odd index
        picks among the orders that used a code."""
        among = self.coded_orders if order % 2 and self.coded_orders else self.orders
        external_id = among[order // 2 % len(among)]

        async def run(work: Work[Any]) -> None:
            found = await work.conn.fetchrow(
                "SELECT id, total_amount - refunded_amount AS left FROM orders WHERE program_id = $1 AND external_id = $2",
                work.program_id,
                external_id,
            )
            assert found is not None
            left = int(found["left"])
            amount = left if full else left // 3
            if amount <= 0:
                return
            await pipeline.refund_order(work, external_id, inputs.Refund(f"r-{self.steps}", amount=amount))
            if full:
                self.refunded_orders.add(found["id"])

        outcome = self.tx(run)
        assert outcome is None, outcome

    @rule(days=st.integers(1, 30))
    def mature(self, days: int) -> None:
        """The clock moves on; lots past their return window become available."""
        self.now += timedelta(days=days)
        self._run(jobs.mature, self.now)

    @rule()
    def expire(self) -> None:
        self._run(jobs.expire, self.now)

    @rule()
    def expire_codes(self) -> None:
        """Every due code through `rewards.expire`, as the sweep does; each says True exactly once."""

        async def run(work: Work[Any]) -> None:
            assert work.program is not None
            for _, redemption_id in await rewards_repository.due_to_expire(work.conn, work.now, 1000):
                assert await rewards.expire(work.conn, work.program, redemption_id, work.now)
                assert not await rewards.expire(work.conn, work.program, redemption_id, work.now)

        assert self.tx(run) is None

    @precondition(lambda self: bool(self.codes))
    @rule(code=pick)
    def expire_one(self, code: int) -> None:
        """`rewards.expire` on any code: True only for an issued one past its date."""
        chosen = self._code(code)
        if chosen is None:
            return

        async def run(work: Work[Any]) -> tuple[bool, bool]:
            assert work.program is not None
            row = await self._redemption(work.conn, chosen[0])
            due = (
                row["status"] == "issued" and row["expires_at"] is not None and row["expires_at"] <= work.now
            )
            return due, await rewards.expire(work.conn, work.program, chosen[0], work.now)

        due, expired = self.tx(run)
        assert due == expired

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def ledger_consistent(self) -> None:
        if self.program_id is None:
            return
        report = self._run(jobs.verify)
        assert report.ok, report.problems
        self.notes: set[str] = set()
        self._run(self._checked)
        self.reached |= self.notes
        for note in sorted(self.notes):  # what the run reached (--hypothesis-show-statistics)
            with contextlib.suppress(InvalidArgument):  # driven by hand, not by hypothesis
                event(note)

    async def _checked(self) -> None:
        async with db.connection() as conn:
            bad = await conn.fetchval(
                "SELECT count(*) FROM customer_balance WHERE available < 0 OR pending < 0 OR debt < 0"
            )
            assert bad == 0
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM points_lot WHERE remaining < 0 OR remaining > points"
                )
                == 0
            )
            for (customer_id,) in await conn.fetch("SELECT customer_id FROM customer_balance"):
                assert (await ledger.balance(conn, customer_id, self.now)).available >= 0
            rows = await conn.fetch(
                """SELECT d.id, d.status, d.points, d.entry_id, d.return_entry_id, d.points_returned, d.used_at,
                          d.order_id, d.cancelled_at, d.expired_at, o.status AS order_status
                   FROM redemption d LEFT JOIN orders o ON o.id = d.order_id"""
            )
            for row in rows:
                await self._redemption_checked(conn, dict(row))

    async def _redemption_checked(self, conn: db.Connection, row: dict[str, Any]) -> None:
        rid, status = row["id"], row["status"]
        before = self.seen.get(rid)
        self.seen[rid] = row
        if before is not None:
            moves = {
                ("issued", "used"),
                ("issued", "cancelled"),
                ("issued", "expired"),
                ("used", "cancelled"),
            }
            assert before["status"] == status or (before["status"], status) in moves, (before, row)
            if before["return_entry_id"] is not None:
                assert row["return_entry_id"] == before["return_entry_id"]  # given back once
        returns = status == "cancelled" or (status == "expired" and self.expiry_returns)
        self.notes.add(f"reached {status}")
        if not returns:
            # Issued, used, or expired without return: nothing given back.
            assert row["return_entry_id"] is None and row["points_returned"] == 0, row
            return
        if row["used_at"] is not None:  # a used code comes back only through the full refund of its order
            assert row["order_status"] == "refunded" and row["order_id"] in self.refunded_orders, row
        at: datetime = row["cancelled_at"] if status == "cancelled" else row["expired_at"]
        drawn = await conn.fetch(
            """SELECT a.lot_id, -a.points AS points, l.expires_at FROM points_allocation a
               JOIN points_lot l ON l.id = a.lot_id WHERE a.entry_id = $1 AND a.points < 0""",
            row["entry_id"],
        )
        if row["return_entry_id"] is None:  # nothing was spent on it (a code given at no cost)
            assert row["points"] == 0 and row["points_returned"] == 0 and not drawn
            return
        entry = await conn.fetchrow(
            "SELECT kind, points, details, created_at FROM points_entry WHERE id = $1", row["return_entry_id"]
        )
        assert entry is not None and entry["kind"] == "redeem_return"
        forfeited = int((json_value(entry["details"]) or {}).get("forfeited_expired", 0))
        assert entry["points"] == row["points_returned"] + forfeited == row["points"], (row, forfeited)
        back = {
            r["lot_id"]: int(r["points"])
            for r in await conn.fetch(
                "SELECT lot_id, points FROM points_allocation WHERE entry_id = $1", row["return_entry_id"]
            )
        }
        self.notes.add(
            f"{status}{' after use' if row['used_at'] else ''}, {'some' if forfeited else 'none'} forfeited"
        )
        # Lot by lot: every lot gets back what it gave; one that had lapsed when the code closed loses it
        # again at once, by an `expire` entry of that lot (so a refund of its order sees it as expired).
        assert back == {d["lot_id"]: int(d["points"]) for d in drawn}, (back, drawn)
        lapsed = {
            d["lot_id"]: int(d["points"])
            for d in drawn
            if d["expires_at"] is not None and d["expires_at"] <= at
        }
        expired_again = {
            r["lot_id"]: -int(r["points"])
            for r in await conn.fetch(
                # Written right after the return entry, one per lapsed lot, in the same transaction.
                """SELECT lot_id, points FROM points_entry WHERE kind = 'expire'
                   AND id > $1 AND id <= $1 + $2""",
                row["return_entry_id"],
                len(lapsed),
            )
        }
        assert expired_again == lapsed, (expired_again, lapsed)
        assert forfeited == sum(lapsed.values())


def test_rewards_keep_the_ledger_invariants(client: AsyncTestClient[Litestar]) -> None:
    Rewards.client = client
    run_state_machine_as_test(
        Rewards,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


async def _fetchval(sql: str) -> Any:
    async with db.connection() as conn:
        return await conn.fetchval(sql)


async def _fetchall(sql: str) -> Any:
    async with db.connection() as conn:
        return " | ".join(f"{r[0]} {r[1]} {r[2]}" for r in await conn.fetch(sql))


def test_the_rare_paths_through_the_same_machine(client: AsyncTestClient[Litestar]) -> None:
    """The paths random runs reach only now and then, played by hand through the machine's own rules and
    checks: points forfeited on cancel (lot lapsed), codes expiring with and without return, a used code
    given back by the full refund of its order, a give-back that settles a clawback debt."""
    Rewards.client = client
    for expiry_returns in (False, True):
        _rare_paths(Rewards(), expiry_returns)


def _rare_paths(m: Rewards, expiry_returns: bool) -> None:
    m.program(expiry_returns=expiry_returns, seed=0)

    def step(rule: Any, *args: Any) -> None:
        rule(*args)
        m.ledger_consistent()

    def last() -> int:
        return 2 * (len(m.codes) - 1)  # an even index: this code, whatever its state

    step(m.adjustment, "c-0", 100)  # expires in 30 days
    step(m.redeem, "c-0", 1)  # 30 points, a code that never expires
    step(m.mature, 31)  # the lot has lapsed (not swept yet)
    step(m.cancel, last())  # nothing comes back: all 30 forfeited
    step(m.adjustment, "c-0", 100)
    step(m.redeem, "c-0", 0)  # 50 points, a code valid 10 days
    step(m.mature, 11)
    step(m.expire_one, last())
    step(m.cancel, last())  # expired: refused
    step(m.adjustment, "c-1", 200)
    step(m.redeem, "c-1", 0)
    step(m.order, "c-1", 2, last())  # the code applied
    step(m.refund, 0, False)  # partial: the code stays used
    step(m.refund, 1, True)  # full: the code cancelled, its points back
    # Debt: the order's points spent on a code, the order refunded, the code cancelled.
    step(m.order, "c-0", 4, None)  # 100 points pending
    step(m.mature, 8)
    step(m.expire)
    for _ in range(3 if expiry_returns else 2):  # the adjustment's last 50 or 100 first (it expires
        step(m.redeem, "c-0", 0)  # first), then 50 of the order's points
    step(m.refund, 2 * (len(m.orders) - 1), True)  # 100 reversed, 50 of them spent: a debt of 50
    step(m.cancel, last())  # the 50 come back to the order's lot and settle the debt
    settled = m._run(
        _fetchval, "SELECT coalesce(sum(-points), 0) FROM points_entry WHERE kind = 'debt_settled'"
    )
    assert settled == 50, m._run(_fetchall, "SELECT kind, points, debt_change FROM points_entry ORDER BY id")
    step(m.mature, 20)
    step(m.expire_codes)
    assert {
        "cancelled, some forfeited",
        "cancelled after use, none forfeited",
        "reached expired",
        "cancelled, none forfeited",
    } <= m.reached, m.reached
    if expiry_returns:
        assert {n for n in m.reached if n.startswith("expired")}, m.reached
    m.teardown()
