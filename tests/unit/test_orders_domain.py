"""Properties of order pricing (discount spread, points, per-line points) and of the refund split."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.core.errors import InvalidInput
from service.core.money import exponent, format_money
from service.orders import domain as orders_domain
from service.orders.domain import (
    LineInput,
    PricedLine,
    PricedOrder,
    RefundPlan,
    fully_refunded,
    plan_amount_refund,
    plan_line_refund,
    refund_summary,
)
from service.rules.conditions import Facts, LineFacts, compile_conditions
from service.rules.domain import Effect, Limits, Rule, Subject, describe_rate, evaluate
from service.rules.domain import points_at_rate as points_for

# The Foundation's earn rate is now the default rule: pricing an order = its amounts + that rule.
BASE_RULE = Rule(
    uuid.UUID(int=1),
    1,
    "Base earn rate",
    0,
    "order",
    compile_conditions(None, None, "order"),
    Effect("base_rate"),
    exclusive=True,
)
UTC_ZONE = ZoneInfo("UTC")
PLACED_AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def price_order(
    lines: list[LineInput],
    *,
    discount_amount: int,
    shipping_amount: int,
    total_amount: int,
    currency: str,
    rate: Decimal | None,
) -> PricedOrder:
    priced = orders_domain.price_order(
        lines,
        discount_amount=discount_amount,
        shipping_amount=shipping_amount,
        total_amount=total_amount,
        currency=currency,
    )
    facts = tuple(
        LineFacts(line.sku, None, None, line.quantity, line.unit_amount, line.eligible_amount)
        for line in priced.lines
    )
    subject = Subject("order", PLACED_AT, Facts({}), currency, facts, rate)
    evaluation = evaluate([BASE_RULE], subject, Limits(), UTC_ZONE)
    return orders_domain.with_points(
        priced, evaluation.unit_points(len(priced.lines)), evaluation.explanation()
    )


CURRENCIES = ["EUR", "USD", "JPY", "KWD", "CLF", "GBP"]
rates = (
    st.none()
    | st.sampled_from(
        [Decimal(r) for r in ("0", "0.01", "0.5", "1", "1.00", "1.5", "2", "3.333", "10", "12.75", "1000")]
    )
    | st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
)

line_inputs = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=20),
        st.integers(min_value=0, max_value=0) | st.integers(min_value=1, max_value=200_000),
    ),
    min_size=1,
    max_size=8,
).map(lambda rows: [LineInput(f"sku-{i}", q, u) for i, (q, u) in enumerate(rows)])


@st.composite
def orders(draw: st.DrawFn) -> tuple[list[LineInput], int, int, str, Decimal | None]:
    """A consistent order: lines, discount (<= subtotal), shipping, currency and rate."""
    lines = draw(line_inputs)
    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    discount = draw(st.sampled_from([0, subtotal]) | st.integers(min_value=0, max_value=subtotal))
    shipping = draw(st.just(0) | st.integers(min_value=0, max_value=10_000))
    return lines, discount, shipping, draw(st.sampled_from(CURRENCIES)), draw(rates)


def price(
    lines: list[LineInput], discount: int, shipping: int, currency: str, rate: Decimal | None
) -> PricedOrder:
    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    return price_order(
        lines,
        discount_amount=discount,
        shipping_amount=shipping,
        total_amount=subtotal - discount + shipping,
        currency=currency,
        rate=rate,
    )


def exact_points(eligible: int, rate: Decimal | None, currency: str) -> int:
    if rate is None:
        return 0
    return int(Fraction(eligible) * Fraction(rate) / 10 ** exponent(currency) // 1)


# ---------------------------------------------------------------------------------------------------------
# price_order
# ---------------------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(order=orders())
def test_price_order_spreads_discount_and_points(
    order: tuple[list[LineInput], int, int, str, Decimal | None],
) -> None:
    lines, discount, shipping, currency, rate = order
    priced = price(lines, discount, shipping, currency, rate)
    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    assert priced.subtotal_amount == subtotal
    assert sum(line.discount_amount for line in priced.lines) == discount
    for given_line, line in zip(lines, priced.lines, strict=True):
        assert (line.sku, line.quantity, line.unit_amount) == (
            given_line.sku,
            given_line.quantity,
            given_line.unit_amount,
        )
        assert line.line_amount == line.quantity * line.unit_amount
        assert 0 <= line.discount_amount <= line.line_amount
        assert line.eligible_amount == line.line_amount - line.discount_amount
        assert (line.refunded_quantity, line.refunded_amount, line.refunded_points) == (0, 0, 0)
        if subtotal:
            share = Fraction(discount * line.line_amount, subtotal)
            assert abs(line.discount_amount - share) < 1
    assert sum(line.eligible_amount for line in priced.lines) == subtotal - discount == priced.eligible_amount
    assert priced.points == exact_points(priced.eligible_amount, rate, currency)
    assert sum(line.points for line in priced.lines) == priced.points
    for line in priced.lines:
        assert line.points >= 0
        if line.eligible_amount == 0:
            assert line.points == 0
        if priced.eligible_amount:
            share = Fraction(priced.points * line.eligible_amount, priced.eligible_amount)
            assert abs(line.points - share) < 1
    if rate is None:
        assert priced.points == 0
        assert priced.explanation == (
            f"No earn rate is set for {currency}: no points on {format_money(priced.eligible_amount, currency)}"
        )
    elif priced.points == 0:
        assert priced.explanation == "No rule matched: no points"
    else:
        assert priced.explanation == (
            f"Base earn rate v1: {describe_rate(rate, currency)} on {format_money(priced.eligible_amount, currency)}"
        )


@settings(max_examples=200)
@given(order=orders(), delta=st.integers(min_value=-10_000, max_value=10_000).filter(bool))
def test_price_order_rejects_a_total_that_does_not_add_up(
    order: tuple[list[LineInput], int, int, str, Decimal | None], delta: int
) -> None:
    lines, discount, shipping, currency, rate = order
    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    with pytest.raises(InvalidInput) as info:
        price_order(
            lines,
            discount_amount=discount,
            shipping_amount=shipping,
            total_amount=subtotal - discount + shipping + delta,
            currency=currency,
            rate=rate,
        )
    assert info.value.field == "total_amount"


@settings(max_examples=200)
@given(order=orders(), excess=st.integers(min_value=1, max_value=10_000), total=st.integers(0, 10**6))
def test_price_order_rejects_a_discount_above_the_lines(
    order: tuple[list[LineInput], int, int, str, Decimal | None], excess: int, total: int
) -> None:
    lines, _, shipping, currency, rate = order
    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    with pytest.raises(InvalidInput) as info:
        price_order(
            lines,
            discount_amount=subtotal + excess,
            shipping_amount=shipping,
            total_amount=total,
            currency=currency,
            rate=rate,
        )
    assert info.value.field == "discount_amount"


@settings(max_examples=200)
@given(order=orders(), data=st.data())
def test_price_order_rejects_duplicate_skus(
    order: tuple[list[LineInput], int, int, str, Decimal | None], data: st.DataObject
) -> None:
    lines, discount, shipping, currency, rate = order
    original = data.draw(st.integers(min_value=0, max_value=len(lines) - 1), label="duplicated line")
    at = data.draw(st.integers(min_value=original + 1, max_value=len(lines)), label="inserted at")
    copy = LineInput(lines[original].sku, 1, 0)
    with_duplicate = [*lines[:at], copy, *lines[at:]]
    with pytest.raises(InvalidInput) as info:
        price(with_duplicate, discount, shipping, currency, rate)
    assert info.value.field == f"lines[{at}].sku"


def test_price_order_rejects_no_lines() -> None:
    with pytest.raises(InvalidInput) as info:
        price_order([], discount_amount=0, shipping_amount=0, total_amount=0, currency="EUR", rate=Decimal(1))
    assert info.value.field == "lines"


def test_price_order_examples() -> None:
    priced = price_order(
        [LineInput("shirt", 2, 2500), LineInput("socks", 3, 1150)],
        discount_amount=0,
        shipping_amount=0,
        total_amount=8450,
        currency="EUR",
        rate=Decimal(1),
    )
    assert priced.eligible_amount == 8450
    assert priced.points == 84
    assert priced.explanation == "Base earn rate v1: 1 point per EUR 1.00 on EUR 84.50"
    assert [line.points for line in priced.lines] == [50, 34]

    # A discount spread in proportion (5000 : 3450), shipping earns nothing.
    priced = price_order(
        [LineInput("shirt", 2, 2500), LineInput("socks", 3, 1150)],
        discount_amount=1000,
        shipping_amount=495,
        total_amount=7945,
        currency="EUR",
        rate=Decimal("2.5"),
    )
    assert [line.discount_amount for line in priced.lines] == [592, 408]
    assert [line.eligible_amount for line in priced.lines] == [4408, 3042]
    assert priced.points == 186  # floor(74.50 × 2.5) = floor(186.25)
    assert priced.explanation == "Base earn rate v1: 2.5 points per EUR 1.00 on EUR 74.50"
    assert sum(line.points for line in priced.lines) == 186

    jpy = price_order(
        [LineInput("tea", 3, 1200)],
        discount_amount=0,
        shipping_amount=500,
        total_amount=4100,
        currency="JPY",
        rate=Decimal("0.01"),
    )
    assert jpy.points == 36
    assert jpy.explanation == "Base earn rate v1: 0.01 points per JPY 1 on JPY 3600"

    kwd = price_order(
        [LineInput("oud", 1, 12_345)],
        discount_amount=0,
        shipping_amount=0,
        total_amount=12_345,
        currency="KWD",
        rate=Decimal(10),
    )
    assert kwd.points == 123
    assert kwd.explanation == "Base earn rate v1: 10 points per KWD 1.000 on KWD 12.345"

    none = price_order(
        [LineInput("gift", 1, 999)],
        discount_amount=0,
        shipping_amount=0,
        total_amount=999,
        currency="USD",
        rate=None,
    )
    assert none.points == 0
    assert none.explanation == "No earn rate is set for USD: no points on USD 9.99"


def test_price_order_examples_of_bad_input() -> None:
    lines = [LineInput("a", 1, 1000), LineInput("b", 2, 500), LineInput("a", 1, 100)]
    with pytest.raises(InvalidInput) as info:
        price_order(lines, discount_amount=0, shipping_amount=0, total_amount=2100, currency="EUR", rate=None)
    assert info.value.field == "lines[2].sku"
    with pytest.raises(InvalidInput) as info:
        price_order(
            lines[:2], discount_amount=2001, shipping_amount=0, total_amount=0, currency="EUR", rate=None
        )
    assert info.value.field == "discount_amount"
    assert "EUR 20.01" in info.value.detail and "EUR 20.00" in info.value.detail
    with pytest.raises(InvalidInput) as info:
        price_order(
            lines[:2], discount_amount=0, shipping_amount=100, total_amount=2000, currency="EUR", rate=None
        )
    assert info.value.field == "total_amount"


def test_describe_rate_and_points_for_examples() -> None:
    assert describe_rate(Decimal(1), "EUR") == "1 point per EUR 1.00"
    assert describe_rate(Decimal("1.00"), "EUR") == "1 point per EUR 1.00"
    assert describe_rate(Decimal("2.50"), "USD") == "2.5 points per USD 1.00"
    assert describe_rate(Decimal("1E+1"), "KWD") == "10 points per KWD 1.000"
    assert describe_rate(Decimal(0), "JPY") == "0 points per JPY 1"
    assert points_for(8450, Decimal(1), "EUR") == 84
    assert points_for(8499, Decimal(1), "EUR") == 84
    assert points_for(1500, Decimal(1), "JPY") == 1500
    assert points_for(1999, Decimal(1), "KWD") == 1
    assert points_for(0, Decimal(1000), "EUR") == 0


# Regression: points_for once multiplied in the 28-digit Decimal context and rounded up across an integer.
def test_points_for_is_an_exact_floor_for_any_accepted_rate() -> None:
    rate = Decimal("0.99999999999999999999999999999")  # within the accepted 0..1000, finite
    # EUR 1.00 × 0.999… = 0.999… points: floor is 0.
    assert points_for(100, rate, "EUR") == exact_points(100, rate, "EUR") == 0


# ---------------------------------------------------------------------------------------------------------
# Refund split
# ---------------------------------------------------------------------------------------------------------


class RefundTracker:
    """Applies refund plans the way the order service stores them and checks each step."""

    def __init__(self, priced: PricedOrder, shipping: int) -> None:
        self.priced = priced
        self.lines: tuple[PricedLine, ...] = priced.lines
        self.shipping = shipping
        self.shipping_refunded = 0
        self.money = 0
        self.points = 0

    @property
    def total(self) -> int:
        return self.priced.eligible_amount + self.shipping

    @property
    def money_left(self) -> int:
        return sum(line.eligible_amount - line.refunded_amount for line in self.lines) + self.shipping_left

    @property
    def shipping_left(self) -> int:
        return self.shipping - self.shipping_refunded

    def apply(self, plan: RefundPlan) -> None:
        before = {line.sku: line for line in self.lines}
        assert [line.sku for line in plan.updated] == [line.sku for line in self.lines]
        assert plan.amount == sum(r.amount for r in plan.lines) + plan.shipping_amount
        assert plan.points == sum(r.points for r in plan.lines)
        assert 0 <= plan.shipping_amount <= self.shipping_left
        for r in plan.lines:
            assert r.amount >= 0 and r.points >= 0 and r.quantity >= 0
        for line in plan.updated:
            old = before[line.sku]
            assert (line.quantity, line.eligible_amount, line.points) == (
                old.quantity,
                old.eligible_amount,
                old.points,
            )
            assert old.refunded_quantity <= line.refunded_quantity <= line.quantity
            assert old.refunded_amount <= line.refunded_amount <= line.eligible_amount
            assert old.refunded_points <= line.refunded_points <= line.points
            # Points follow the money, cumulatively.
            if line.eligible_amount:
                assert line.refunded_points == line.points * line.refunded_amount // line.eligible_amount
            else:
                assert line.refunded_points == 0
        self.lines = plan.updated
        self.shipping_refunded += plan.shipping_amount
        self.money += plan.amount
        self.points += plan.points
        assert self.points == sum(line.refunded_points for line in self.lines)
        assert self.money == sum(line.refunded_amount for line in self.lines) + self.shipping_refunded
        assert 0 <= self.points <= self.priced.points, "never reverses more points than the order earned"
        assert 0 <= self.money <= self.total, "never refunds more money than the order's total"

    def units_left(self) -> list[tuple[int, int]]:
        return [(i, line.quantity - line.refunded_quantity) for i, line in enumerate(self.lines)]


@st.composite
def line_refund_requests(draw: st.DrawFn, tracker: RefundTracker) -> list[tuple[str, int]]:
    left = [(i, n) for i, n in tracker.units_left() if n > 0]
    chosen = draw(st.lists(st.sampled_from(left), min_size=1, max_size=len(left), unique=True))
    return [(tracker.lines[i].sku, draw(st.integers(min_value=1, max_value=n))) for i, n in chosen]


@settings(max_examples=200, deadline=None)
@given(order=orders(), finish=st.sampled_from(["lines", "amount"]), data=st.data())
def test_refund_sequences_never_overreach_and_a_full_refund_reverses_every_point(
    order: tuple[list[LineInput], int, int, str, Decimal | None], finish: str, data: st.DataObject
) -> None:
    lines, discount, shipping, currency, rate = order
    priced = price(lines, discount, shipping, currency, rate)
    tracker = RefundTracker(priced, shipping)
    steps = data.draw(st.integers(min_value=0, max_value=6), label="partial refunds")
    for _ in range(steps):
        can_lines = any(n for _, n in tracker.units_left())
        can_amount = tracker.money_left > 0
        kinds = [k for k, ok in (("lines", can_lines), ("amount", can_amount)) if ok]
        if not kinds:
            break
        kind = data.draw(st.sampled_from(kinds), label="kind")
        if kind == "lines":
            requested = data.draw(line_refund_requests(tracker), label="lines")
            tracker.apply(plan_line_refund(tracker.lines, requested, currency))
        else:
            amount = data.draw(st.integers(min_value=1, max_value=tracker.money_left), label="amount")
            tracker.apply(plan_amount_refund(tracker.lines, amount, tracker.shipping_left, currency))

    if finish == "lines":
        requested = [(tracker.lines[i].sku, n) for i, n in tracker.units_left() if n > 0]
        if requested:
            tracker.apply(plan_line_refund(tracker.lines, requested, currency))
        assert all(line.refunded_quantity == line.quantity for line in tracker.lines)
        assert fully_refunded(tracker.lines)
    else:
        if tracker.money_left:
            tracker.apply(
                plan_amount_refund(tracker.lines, tracker.money_left, tracker.shipping_left, currency)
            )
        assert tracker.money == tracker.total
        assert tracker.shipping_refunded == shipping
        # Every line's money is back; a line that cost nothing needs its units returned too.
        assert fully_refunded(tracker.lines) == all(
            line.eligible_amount > 0 or line.refunded_quantity == line.quantity for line in tracker.lines
        )
    assert all(line.refunded_amount == line.eligible_amount for line in tracker.lines)
    assert all(line.refunded_points == line.points for line in tracker.lines)
    assert tracker.points == priced.points, "a full refund reverses exactly what the order earned"


@settings(max_examples=200, deadline=None)
@given(order=orders(), data=st.data())
def test_over_refunds_raise_naming_the_field(
    order: tuple[list[LineInput], int, int, str, Decimal | None], data: st.DataObject
) -> None:
    lines, discount, shipping, currency, rate = order
    priced = price(lines, discount, shipping, currency, rate)
    tracker = RefundTracker(priced, shipping)
    # Some refund first, so "left" is not simply the order's quantities.
    if data.draw(st.booleans(), label="refund some first"):
        requested = data.draw(line_refund_requests(tracker), label="first lines")
        tracker.apply(plan_line_refund(tracker.lines, requested, currency))
    if tracker.money_left and data.draw(st.booleans(), label="refund an amount first"):
        amount = data.draw(st.integers(min_value=1, max_value=tracker.money_left), label="first amount")
        tracker.apply(plan_amount_refund(tracker.lines, amount, tracker.shipping_left, currency))

    # Too many units of one line, after some valid ones.
    left = tracker.units_left()
    valid = [(tracker.lines[i].sku, n) for i, n in left if n > 0]
    prefix = data.draw(st.lists(st.sampled_from(valid), unique=True), label="valid prefix") if valid else []
    used = {sku for sku, _ in prefix}
    candidates = [(i, n) for i, n in left if tracker.lines[i].sku not in used]
    assume(candidates)
    i, n = data.draw(st.sampled_from(candidates), label="over-refunded line")
    excess = data.draw(st.integers(min_value=1, max_value=5), label="excess")
    requested = [*prefix, (tracker.lines[i].sku, n + excess)]
    with pytest.raises(InvalidInput) as info:
        plan_line_refund(tracker.lines, requested, currency)
    assert info.value.field == f"lines[{len(prefix)}].quantity"

    # An unknown sku, and a sku listed twice.
    with pytest.raises(InvalidInput) as info:
        plan_line_refund(tracker.lines, [*prefix, ("no-such-sku", 1)], currency)
    assert info.value.field == f"lines[{len(prefix)}].sku"
    if prefix:
        with pytest.raises(InvalidInput) as info:
            plan_line_refund(tracker.lines, [*prefix, prefix[0]], currency)
        assert info.value.field == f"lines[{len(prefix)}].sku"

    # More money than is left.
    with pytest.raises(InvalidInput) as info:
        plan_amount_refund(tracker.lines, tracker.money_left + excess, tracker.shipping_left, currency)
    assert info.value.field == "amount"


def test_refund_examples() -> None:
    priced = price_order(
        [LineInput("shirt", 2, 2500), LineInput("socks", 3, 1150)],
        discount_amount=0,
        shipping_amount=495,
        total_amount=8945,
        currency="EUR",
        rate=Decimal(1),
    )
    assert [line.points for line in priced.lines] == [50, 34]
    one_shirt = plan_line_refund(priced.lines, [("shirt", 1)], "EUR")
    assert (one_shirt.amount, one_shirt.points, one_shirt.shipping_amount) == (2500, 25, 0)
    # EUR 30.00 over what is left (2500 : 3450) → 1261 + 1739; points follow the money.
    money = plan_amount_refund(one_shirt.updated, 3000, 495, "EUR")
    assert [(r.sku, r.amount, r.points) for r in money.lines] == [("shirt", 1261, 12), ("socks", 1739, 17)]
    assert money.points == 29
    # The rest, shipping last.
    rest = plan_amount_refund(money.updated, 8945 - 2500 - 3000, 495, "EUR")
    assert rest.shipping_amount == 495
    assert one_shirt.points + money.points + rest.points == 84
    assert fully_refunded(rest.updated)
    assert not fully_refunded(money.updated)

    with pytest.raises(InvalidInput) as info:
        plan_line_refund(priced.lines, [("socks", 1), ("shirt", 3)], "EUR")
    assert info.value.field == "lines[1].quantity"
    with pytest.raises(InvalidInput) as info:
        plan_line_refund(priced.lines, [("hat", 1)], "EUR")
    assert info.value.field == "lines[0].sku"
    with pytest.raises(InvalidInput) as info:
        plan_amount_refund(priced.lines, 8946, 495, "EUR")
    assert info.value.field == "amount"


@settings(max_examples=200, deadline=None)
@given(order=orders(), data=st.data())
def test_a_refund_summary_names_its_money_once_and_the_shipping_part(
    order: tuple[list[LineInput], int, int, str, Decimal | None], data: st.DataObject
) -> None:
    lines, discount, shipping, currency, rate = order
    tracker = RefundTracker(price(lines, discount, shipping, currency, rate), shipping)
    assume(tracker.money_left > 0)
    amount = data.draw(st.integers(min_value=1, max_value=tracker.money_left), label="amount")
    plan = plan_amount_refund(tracker.lines, amount, tracker.shipping_left, currency)
    summary = refund_summary(plan, currency, by_lines=False)
    money = format_money(plan.amount, currency)
    assert summary.startswith(money) and summary.count(money) == 1  # was "(EUR 10.00, EUR 10.00)"
    assert ("shipping" in summary) == (plan.shipping_amount > 0)
    requested = data.draw(line_refund_requests(tracker), label="lines")
    by_lines = plan_line_refund(tracker.lines, requested, currency)
    assert refund_summary(by_lines, currency, by_lines=True).endswith(format_money(by_lines.amount, currency))


def test_refund_summary_examples() -> None:
    line = PricedLine("MUG", 2, 2500, 5000, 0, 5000, 50)
    amount = plan_amount_refund([line], 1000, 495, "EUR")
    assert refund_summary(amount, "EUR", by_lines=False) == "EUR 10.00"
    everything = plan_amount_refund([line], 5495, 495, "EUR")
    assert refund_summary(everything, "EUR", by_lines=False) == "EUR 54.95, of which EUR 4.95 shipping"
    shipping_only = plan_amount_refund([replace(line, refunded_amount=5000)], 495, 495, "EUR")
    assert refund_summary(shipping_only, "EUR", by_lines=False) == "EUR 4.95 of shipping"
    units = plan_line_refund([line], [("MUG", 1)], "EUR")
    assert refund_summary(units, "EUR", by_lines=True) == "1 × MUG, EUR 25.00"
