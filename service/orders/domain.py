"""Pure order arithmetic: eligible amounts, points per line, and what a refund takes back.

A discount is spread over the lines in proportion to their amounts; points are earned on the
eligible amount (lines − discount, never shipping) and attributed to the lines in proportion, so a
refund reverses exactly what the refunded units earned, and refunding everything reverses every point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from service.core.errors import InvalidInput
from service.core.money import allocate, format_money


@dataclass(frozen=True, slots=True)
class LineInput:
    sku: str
    quantity: int
    unit_amount: int


@dataclass(frozen=True, slots=True)
class PricedLine:
    sku: str
    quantity: int
    unit_amount: int
    line_amount: int
    discount_amount: int
    eligible_amount: int
    points: int
    refunded_quantity: int = 0
    refunded_amount: int = 0
    refunded_points: int = 0


@dataclass(frozen=True, slots=True)
class PricedOrder:
    subtotal_amount: int
    eligible_amount: int
    points: int
    lines: tuple[PricedLine, ...]
    explanation: str


def price_order(
    lines: Sequence[LineInput],
    *,
    discount_amount: int,
    shipping_amount: int,
    total_amount: int,
    currency: str,
) -> PricedOrder:
    """Check that the amounts add up and work out each line's eligible amount (points come from the
    rules: `with_points`); raises InvalidInput naming the field."""
    if not lines:
        raise InvalidInput("an order needs at least one line", field="lines")
    seen: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line.sku in seen:
            raise InvalidInput(
                f"sku {line.sku!r} appears on lines {seen[line.sku]} and {index}; put it on one line",
                field=f"lines[{index}].sku",
            )
        seen[line.sku] = index
    amounts = [line.quantity * line.unit_amount for line in lines]
    subtotal = sum(amounts)
    if discount_amount > subtotal:
        raise InvalidInput(
            f"discount {format_money(discount_amount, currency)} exceeds the lines' "
            f"{format_money(subtotal, currency)}",
            field="discount_amount",
        )
    expected_total = subtotal - discount_amount + shipping_amount
    if expected_total != total_amount:
        raise InvalidInput(
            f"total_amount {format_money(total_amount, currency)} does not equal lines − discount + shipping "
            f"= {format_money(expected_total, currency)}",
            field="total_amount",
        )
    discounts = allocate(discount_amount, amounts)
    eligible = [amount - discount for amount, discount in zip(amounts, discounts, strict=True)]
    priced = tuple(
        PricedLine(line.sku, line.quantity, line.unit_amount, amount, discount, elig, 0)
        for line, amount, discount, elig in zip(lines, amounts, discounts, eligible, strict=True)
    )
    return PricedOrder(subtotal, subtotal - discount_amount, 0, priced, "")


def with_points(priced: PricedOrder, line_points: Sequence[int], explanation: str) -> PricedOrder:
    """The order with the points the rules gave each line (a refund takes back a line's own points)."""
    lines = tuple(replace(line, points=p) for line, p in zip(priced.lines, line_points, strict=True))
    return replace(priced, points=sum(line_points), lines=lines, explanation=explanation)


@dataclass(frozen=True, slots=True)
class RefundLine:
    sku: str
    quantity: int
    amount: int
    points: int


@dataclass(frozen=True, slots=True)
class RefundPlan:
    lines: tuple[RefundLine, ...]
    updated: tuple[PricedLine, ...]  # every line of the order after the refund
    shipping_amount: int
    amount: int
    points: int


def _refund_line(line: PricedLine, quantity: int, amount: int) -> tuple[PricedLine, RefundLine]:
    """Move `quantity` units and `amount` of eligible money of a line to refunded; points follow the money."""
    refunded_amount = line.refunded_amount + amount
    # Cumulative, so the parts of several refunds add up to exactly the line's points at the end.
    refunded_points = line.points * refunded_amount // line.eligible_amount if line.eligible_amount else 0
    points = refunded_points - line.refunded_points
    updated = replace(
        line,
        refunded_quantity=line.refunded_quantity + quantity,
        refunded_amount=refunded_amount,
        refunded_points=refunded_points,
    )
    return updated, RefundLine(line.sku, quantity, amount, points)


def plan_line_refund(
    lines: Sequence[PricedLine], requested: Sequence[tuple[str, int]], currency: str
) -> RefundPlan:
    """Refund units by sku: each unit takes back its share of the line's eligible amount and points."""
    by_sku = {line.sku: i for i, line in enumerate(lines)}
    updated = list(lines)
    refunded: list[RefundLine] = []
    seen: set[str] = set()
    for index, (sku, quantity) in enumerate(requested):
        if sku not in by_sku:
            raise InvalidInput(f"sku {sku!r} is not on this order", field=f"lines[{index}].sku")
        if sku in seen:
            raise InvalidInput(f"sku {sku!r} is listed twice", field=f"lines[{index}].sku")
        seen.add(sku)
        line = updated[by_sku[sku]]
        left = line.quantity - line.refunded_quantity
        if quantity > left:
            raise InvalidInput(
                f"{quantity} of {sku!r} to refund but only {left} of {line.quantity} left to refund",
                field=f"lines[{index}].quantity",
            )
        units_after = line.refunded_quantity + quantity
        target = line.eligible_amount * units_after // line.quantity
        # An amount refund may already have taken more of this line's money than these units are worth.
        amount = max(0, target - line.refunded_amount)
        updated[by_sku[sku]], refund_line = _refund_line(line, quantity, amount)
        refunded.append(refund_line)
    return RefundPlan(
        tuple(refunded),
        tuple(updated),
        0,
        sum(r.amount for r in refunded),
        sum(r.points for r in refunded),
    )


def plan_amount_refund(
    lines: Sequence[PricedLine], amount: int, shipping_left: int, currency: str
) -> RefundPlan:
    """Refund a sum of money: spread over the lines' unrefunded eligible amounts, then shipping."""
    line_left = [line.eligible_amount - line.refunded_amount for line in lines]
    refundable = sum(line_left) + shipping_left
    if amount > refundable:
        raise InvalidInput(
            f"refund of {format_money(amount, currency)} exceeds the {format_money(refundable, currency)} "
            "left to refund on this order",
            field="amount",
        )
    on_lines = min(amount, sum(line_left))
    shares = allocate(on_lines, line_left) if on_lines else [0 for _ in lines]
    updated = list(lines)
    refunded: list[RefundLine] = []
    for index, share in enumerate(shares):
        if share:
            updated[index], refund_line = _refund_line(lines[index], 0, share)
            refunded.append(refund_line)
    return RefundPlan(
        tuple(refunded),
        tuple(updated),
        amount - on_lines,
        amount,
        sum(r.points for r in refunded),
    )


def refund_summary(plan: RefundPlan, currency: str, *, by_lines: bool) -> str:
    """What a refund gave back, for its ledger explanation: the units and the money for a line refund
    ("1 × MUG, EUR 23.47"), the money for an amount refund ("EUR 10.00"), and the shipping part of it,
    which earned no points ("EUR 10.00, of which EUR 4.95 shipping")."""
    money = format_money(plan.amount, currency)
    if by_lines:
        return ", ".join([*(f"{r.quantity} × {r.sku}" for r in plan.lines), money])
    if plan.shipping_amount == 0:
        return money
    if plan.shipping_amount == plan.amount:
        return f"{money} of shipping"
    return f"{money}, of which {format_money(plan.shipping_amount, currency)} shipping"


def fully_refunded(lines: Sequence[PricedLine]) -> bool:
    """All merchandise returned: every line's money back, and every unit of lines that cost nothing."""
    return all(
        line.refunded_amount == line.eligible_amount
        and (line.eligible_amount > 0 or line.refunded_quantity == line.quantity)
        for line in lines
    )
