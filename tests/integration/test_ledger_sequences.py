"""Random sequences of earn / refund / spend / mature / expire against the real database: after each
sequence `verify` finds every cached figure equal to what lots, allocations and entries say."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.clock import FrozenClock
from service.core.errors import Problem
from service.core.work import Work
from service.earning import inputs, pipeline
from service.ledger import jobs
from service.ledger import service as ledger
from service.programs import service as programs
from service.programs.schemas import ProgramPatch
from tests.conftest import START, _truncate, in_app

operation = st.one_of(
    st.tuples(st.just("order"), st.integers(1, 3), st.integers(100, 20_000), st.integers(0, 1)),
    st.tuples(st.just("refund_lines"), st.integers(0, 9), st.integers(1, 3), st.integers(0, 1)),
    st.tuples(st.just("refund_amount"), st.integers(0, 9), st.integers(1, 20_000), st.integers(0, 1)),
    st.tuples(st.just("spend"), st.integers(1, 300), st.integers(0, 0), st.integers(0, 1)),
    st.tuples(st.just("goodwill"), st.integers(1, 50), st.integers(0, 0), st.integers(0, 1)),
    st.tuples(st.just("advance"), st.integers(1, 40), st.integers(0, 0), st.integers(0, 1)),
    # A new expiry period (0: never), applied to the points held (ledger.reschedule_expiry).
    st.tuples(st.just("expiry"), st.integers(0, 60), st.integers(0, 0), st.integers(0, 1)),
)


async def _play(ops: list[tuple[str, int, int, int]], clock: FrozenClock) -> None:
    await _truncate()
    async with db.transaction() as conn:
        program_out, _ = await programs.create_program(conn, "Seq", "EUR", clock.now())
        await programs.update(
            conn,
            program_out.id,
            ProgramPatch(pending_days=7, points_expire_after_days=30),
            clock.now(),
            reschedule_expiry=ledger.reschedule_expiry,
            actor="test",
        )
    order_ids: list[str] = []
    for index, (kind, a, b, who) in enumerate(ops):
        customer = f"c-{who}"
        try:
            async with db.transaction() as conn:
                program = await programs.load(conn, program_out.id)
                now = clock.now()
                # The pipeline as any caller drives it (its after-commit work: rule problems, none here).
                work = Work(conn, program.id, program, now, "test")
                if kind == "order":
                    lines = tuple(inputs.Line(sku=f"S{i}", quantity=a, unit_amount=b + i) for i in range(2))
                    total = sum(line.quantity * line.unit_amount for line in lines)
                    order = inputs.Order(
                        external_id=f"o-{index}",
                        placed_at=now,
                        customer=inputs.CustomerRef(customer),
                        currency="EUR",
                        lines=lines,
                        total_amount=total - total // 10,
                        discount_amount=total // 10,
                    )
                    await pipeline.record_order(work, order)
                    order_ids.append(order.external_id)
                elif kind.startswith("refund") and order_ids:
                    target = order_ids[a % len(order_ids)]
                    refund = (
                        inputs.Refund(f"r-{index}", lines=(inputs.RefundLine("S0", b),))
                        if kind == "refund_lines"
                        else inputs.Refund(f"r-{index}", amount=b)
                    )
                    await pipeline.refund_order(work, target, refund)
                elif kind in ("spend", "goodwill"):
                    from service.customers import service as customers

                    row = await customers.get(conn, program.id, customer)
                    await ledger.adjust(
                        conn,
                        ledger.customer_of(row),
                        a if kind == "goodwill" else -a,
                        reason=kind,
                        actor="test",
                        now=now,
                        available_at=now,
                        expires_at=now + timedelta(days=30),
                    )
                elif kind == "expiry":
                    await programs.update(
                        conn,
                        program.id,
                        ProgramPatch(points_expire_after_days=a or None),
                        now,
                        reschedule_expiry=ledger.reschedule_expiry,
                        actor="test",
                    )
                elif kind == "advance":
                    clock.advance(timedelta(days=a))
                    await jobs.mature(clock.now())
                    await jobs.expire(clock.now())
        except Problem:
            pass  # refused input (over-refund, overdraw, unknown customer) must change nothing
    await jobs.mature(clock.now())
    report = await jobs.verify()
    assert report.ok, report.problems
    async with db.connection() as conn:
        negative = await conn.fetchval(
            "SELECT count(*) FROM customer_balance WHERE available < 0 OR pending < 0 OR debt < 0 "
            "OR (debt > 0 AND available + pending > 0)"
        )
        assert negative == 0
        # Later, before any sweep: a customer's available points are exactly what they could spend.
        later = clock.now() + timedelta(days=20)
        for (customer_id,) in await conn.fetch("SELECT customer_id FROM customer_balance"):
            spendable = await conn.fetchval(
                "SELECT coalesce(sum(remaining), 0) FROM points_lot WHERE customer_id = $1 "
                "AND state = 'available' AND (expires_at IS NULL OR expires_at > $2)",
                customer_id,
                later,
            )
            assert (await ledger.balance(conn, customer_id, later)).available == spendable


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_any_sequence_keeps_the_ledger_consistent(
    client: AsyncTestClient[Litestar], ops: list[tuple[str, int, int, int]]
) -> None:
    clock = FrozenClock(START)
    in_app(client, _play, ops, clock)
