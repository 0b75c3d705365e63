"""Properties of rule evaluation (service/rules/domain.py) and of condition trees (conditions.py).

Each property is checked against an independent statement of the rule, not against the code's own
arithmetic: caps and budgets never exceeded, exclusive rules never sharing a line, stack rules always
adding their full amount, a failing rule never costing the others, the same input the same answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.errors import InvalidInput
from service.rules.conditions import Facts, LineFacts, Money, RuleRuntimeError, compile_conditions
from service.rules.domain import (
    UNKNOWN_LIMITS,
    Audience,
    Caps,
    Effect,
    Limits,
    Rule,
    Subject,
    Window,
    evaluate,
    period_key,
    within_limits,
)

UTC_ZONE = ZoneInfo("UTC")
MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CATEGORIES = ["shoes", "socks", "hats", None]


def rule(
    n: int,
    effect: Effect,
    *,
    priority: int = 0,
    exclusive: bool = False,
    conditions: Any = None,
    trigger: str = "order",
    caps: Caps = Caps(),
    budget: int | None = None,
    window: Window = Window(),
    audience: Audience = Audience(),
) -> Rule:
    return Rule(
        uuid.UUID(int=n),
        1,
        f"rule {n}",
        priority,
        trigger,
        compile_conditions(conditions, None, trigger),
        effect,
        exclusive=exclusive,
        window=window,
        audience=audience,
        caps=caps,
        budget_points=budget,
    )


def order(lines: list[tuple[str | None, int, int]], at: datetime = MONDAY_NOON, **values: Any) -> Subject:
    facts = tuple(
        LineFacts(f"SKU-{i}", category, None, quantity, unit, quantity * unit)
        for i, (category, quantity, unit) in enumerate(lines)
    )
    base = {"order.currency": "EUR", "order.total": sum(f.amount for f in facts), "customer.is_new": False}
    return Subject("order", at, Facts({**base, **values}), "EUR", facts, Decimal(1))


line_st = st.tuples(st.sampled_from(CATEGORIES), st.integers(1, 4), st.integers(0, 20_000))
orders_st = st.lists(line_st, min_size=1, max_size=6)
effect_st = st.one_of(
    st.builds(lambda s: Effect("base_rate", s), st.sampled_from(["lines", "order"])),
    st.builds(
        lambda r, s: Effect("rate", s, rates={"EUR": Decimal(r)}),
        st.sampled_from(["0.5", "1", "2.25", "3"]),
        st.sampled_from(["lines", "order"]),
    ),
    st.builds(
        lambda m, s: Effect("multiplier", s, multiplier=Decimal(m)),
        st.sampled_from(["1", "1.5", "2", "10"]),
        st.sampled_from(["lines", "order"]),
    ),
    st.builds(
        lambda p, s: Effect("fixed", s, points=p), st.integers(1, 500), st.sampled_from(["lines", "order"])
    ),
)
condition_st = st.one_of(
    st.none(),
    st.builds(lambda c: {"field": "line.category", "op": "eq", "value": c}, st.sampled_from(CATEGORIES[:3])),
    st.builds(lambda q: {"field": "line.quantity", "op": "gte", "value": q}, st.integers(1, 4)),
    st.builds(
        lambda a: {"field": "order.total", "op": "gte", "value": {"amount": a, "currency": "EUR"}},
        st.integers(0, 50_000),
    ),
)


@st.composite
def rule_sets(draw: st.DrawFn, size: int = 6) -> list[Rule]:
    count = draw(st.integers(1, size))
    return [
        rule(
            i + 1,
            draw(effect_st),
            priority=draw(st.sampled_from([0, 5, 10])),
            exclusive=draw(st.booleans()),
            conditions=draw(condition_st),
            caps=Caps(per_order=draw(st.none() | st.integers(1, 300))),
        )
        for i in range(count)
    ]


def by_rule(evaluation: Any) -> dict[uuid.UUID, int]:
    return {a.rule.id: a.points for a in evaluation.awards}


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), lines=orders_st)
def test_awards_are_deterministic_non_negative_and_spread_exactly(
    rules: list[Rule], lines: list[Any]
) -> None:
    subject = order(lines)
    first = evaluate(tuple(rules), subject, Limits(), UTC_ZONE)
    second = evaluate(list(rules), subject, Limits(), UTC_ZONE)
    assert [(a.rule.id, a.points, a.unit_points) for a in first.awards] == [
        (a.rule.id, a.points, a.unit_points) for a in second.awards
    ]
    assert [a.explanation for a in first.awards] == [a.explanation for a in second.awards]
    for award in first.awards:
        assert award.points > 0
        assert len(award.unit_points) == len(lines)
        assert all(p >= 0 for p in award.unit_points)
        assert sum(award.unit_points) == award.points
        if award.rule.caps.per_order is not None:
            assert award.points <= award.rule.caps.per_order
        assert award.explanation.startswith(f"{award.rule.name} v1: ")
    assert first.points == sum(first.unit_points(len(lines)))


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), lines=orders_st)
def test_exclusive_awards_never_share_a_line_and_stack_awards_are_whole(
    rules: list[Rule], lines: list[Any]
) -> None:
    subject = order(lines)
    evaluation = evaluate(tuple(rules), subject, Limits(), UTC_ZONE)
    exclusive_lines: dict[int, uuid.UUID] = {}
    for award in evaluation.awards:
        if award.rule.exclusive and award.rule.effect.kind != "percent_bonus":
            for i, points in enumerate(award.unit_points):
                if points:
                    assert i not in exclusive_lines, "two exclusive rules rewarded one line"
                    exclusive_lines[i] = award.rule.id
    # A stack rule, uncapped, gives what it would give alone.
    for r in rules:
        if not r.exclusive and r.caps.per_order is None:
            alone = by_rule(evaluate((r,), subject, Limits(), UTC_ZONE)).get(r.id, 0)
            assert by_rule(evaluation).get(r.id, 0) == alone


@settings(max_examples=150, deadline=None)
@given(
    demand=st.lists(st.tuples(st.integers(0, 3), orders_st), min_size=1, max_size=25),
    day_cap=st.integers(1, 400),
    budget=st.integers(1, 2_000),
)
def test_caps_and_budget_hold_over_a_sequence_of_orders(
    demand: list[tuple[int, list[Any]]], day_cap: int, budget: int
) -> None:
    capped = rule(1, Effect("rate", "lines", rates={"EUR": Decimal(2)}), caps=Caps(per_customer_day=day_cap))
    budgeted = rule(2, Effect("fixed", "order", points=90), budget=budget)
    budget_left: dict[uuid.UUID, int] = {}  # the program's, shared by every customer
    given_by_customer: dict[int, int] = {}
    given_budget = wanted_budget = 0
    for customer, lines in demand:
        subject = order(lines)
        key = (capped.id, period_key("day", subject.at, UTC_ZONE))
        limits = Limits({key: given_by_customer.get(customer, 0)}, budget_left)
        evaluation = evaluate((capped, budgeted), subject, limits, UTC_ZONE)
        got = by_rule(evaluation)
        assert limits.used[key] == given_by_customer.get(customer, 0) + got.get(capped.id, 0)
        given_by_customer[customer] = given_by_customer.get(customer, 0) + got.get(capped.id, 0)
        given_budget += got.get(budgeted.id, 0)
        wanted_budget += 90
        assert given_by_customer[customer] <= day_cap
        assert given_budget <= budget
    assert given_budget == min(budget, wanted_budget)


def test_a_failing_rule_is_a_problem_and_the_others_still_award() -> None:
    broken = rule(
        1,
        Effect("fixed", "order", points=50),
        conditions={"field": "order.attributes.wrap", "op": "gte", "value": 3},
    )
    base = rule(2, Effect("base_rate"), exclusive=True)
    subject = order([("shoes", 1, 4_000)])
    subject = subject._replace(facts=Facts(subject.facts.values, {"wrap": "yes"}))
    evaluation = evaluate((broken, base), subject, Limits(), UTC_ZONE)
    assert by_rule(evaluation) == {base.id: 40}
    [problem] = evaluation.problems
    assert problem.rule is broken and "cannot compare" in problem.error
    # A number compares; true is not the number 1.
    ok = subject._replace(facts=Facts(subject.facts.values, {"wrap": 3}))
    assert by_rule(evaluate((broken, base), ok, Limits(), UTC_ZONE)) == {broken.id: 50, base.id: 40}
    flag = subject._replace(facts=Facts(subject.facts.values, {"wrap": True}))
    assert evaluate((broken, base), flag, Limits(), UTC_ZONE).problems


def test_exclusive_priority_and_the_best_of_one_priority() -> None:
    base = rule(1, Effect("base_rate"), exclusive=True)
    double_shoes = rule(
        2,
        Effect("multiplier", multiplier=Decimal(2)),
        priority=10,
        exclusive=True,
        conditions={"field": "line.category", "op": "eq", "value": "shoes"},
    )
    triple_shoes = rule(
        3,
        Effect("multiplier", multiplier=Decimal(3)),
        priority=10,
        exclusive=True,
        conditions={"field": "line.category", "op": "eq", "value": "shoes"},
    )
    bonus = rule(4, Effect("percent_bonus", percent=Decimal(10)))
    subject = order([("shoes", 1, 6_000), ("socks", 3, 1_000)])
    evaluation = evaluate((base, double_shoes, triple_shoes, bonus), subject, Limits(), UTC_ZONE)
    assert by_rule(evaluation) == {triple_shoes.id: 180, base.id: 30, bonus.id: 21}
    texts = [a.explanation for a in evaluation.awards]
    assert "rule 3 v1: 3 × 1 point per EUR 1.00 on EUR 60.00 of shoes" in texts
    assert "rule 1 v1: 1 point per EUR 1.00 on EUR 30.00 of socks" in texts
    assert "rule 4 v1: 10% bonus on 210 points" in texts
    # A capped winner still holds its lines; a rule capped to nothing gives them back.
    capped_out = rule(
        5,
        Effect("multiplier", multiplier=Decimal(5)),
        priority=20,
        exclusive=True,
        caps=Caps(per_customer_day=10),
    )
    limits = Limits({(capped_out.id, period_key("day", subject.at, UTC_ZONE)): 10})
    again = evaluate((base, double_shoes, triple_shoes, capped_out), subject, limits, UTC_ZONE)
    assert by_rule(again) == {triple_shoes.id: 180, base.id: 30}


def test_within_limits_says_when_a_second_evaluation_is_needed() -> None:
    capped = rule(1, Effect("fixed", "order", points=100), caps=Caps(per_customer_month=150))
    subject = order([("hats", 1, 1_000)])
    unlimited = evaluate((capped,), subject, UNKNOWN_LIMITS, UTC_ZONE)
    key = (capped.id, period_key("month", subject.at, UTC_ZONE))
    assert within_limits(unlimited, Limits({key: 50}), subject.at, UTC_ZONE)
    assert not within_limits(unlimited, Limits({key: 60}), subject.at, UTC_ZONE)
    cut = evaluate((capped,), subject, Limits({key: 60}), UTC_ZONE)
    assert by_rule(cut) == {capped.id: 90}
    assert "capped by the 150 points per customer per month: 90 left" in cut.awards[0].explanation


SUNDAY_LATE = datetime(2026, 3, 8, 23, 30, tzinfo=UTC)
HOUR = (MONDAY_NOON, MONDAY_NOON + timedelta(hours=1))


@pytest.mark.parametrize(
    ("window", "zone", "at", "inside"),
    [
        (Window(days_of_week=frozenset({6})), "UTC", SUNDAY_LATE, True),
        (Window(days_of_week=frozenset({6})), "Pacific/Auckland", SUNDAY_LATE, False),  # Monday there
        (Window(days_of_week=frozenset({0})), "Pacific/Auckland", SUNDAY_LATE, True),
        (Window(hours=(22, 6)), "UTC", datetime(2026, 3, 2, 23, 0, tzinfo=UTC), True),
        (Window(hours=(22, 6)), "UTC", datetime(2026, 3, 2, 5, 59, tzinfo=UTC), True),
        (Window(hours=(22, 6)), "UTC", datetime(2026, 3, 2, 6, 0, tzinfo=UTC), False),
        (Window(hours=(9, 17)), "America/Los_Angeles", MONDAY_NOON, False),  # 04:00 there
        (Window(starts_at=HOUR[0], ends_at=HOUR[1]), "UTC", HOUR[0], True),
        (Window(starts_at=HOUR[0], ends_at=HOUR[1]), "UTC", HOUR[1], False),
    ],
)
def test_windows(window: Window, zone: str, at: datetime, inside: bool) -> None:
    assert window.contains(at, ZoneInfo(zone)) is inside


def test_audience_and_events() -> None:
    welcome = rule(
        1, Effect("fixed", "order", points=100), trigger="signup", audience=Audience(customers="new")
    )
    vip = rule(
        2, Effect("fixed", "order", points=7), trigger="signup", audience=Audience(frozenset({"gold"}))
    )
    new = Subject("signup", MONDAY_NOON, Facts({"customer.is_new": True, "customer.tier": None}))
    assert by_rule(evaluate((welcome, vip), new, Limits(), UTC_ZONE)) == {welcome.id: 100}
    gold = Subject("signup", MONDAY_NOON, Facts({"customer.is_new": False, "customer.tier": "gold"}))
    evaluation = evaluate((welcome, vip), gold, Limits(), UTC_ZONE)
    assert by_rule(evaluation) == {vip.id: 7} and evaluation.awards[0].unit_points == (7,)
    # An order rule ignores events; a missing earn rate is said, not silently zero.
    base = rule(3, Effect("base_rate"), exclusive=True)
    assert not evaluate((base,), gold, Limits(), UTC_ZONE).awards
    no_rate = order([("hats", 1, 999)])._replace(base_rate=None)
    assert evaluate((base,), no_rate, Limits(), UTC_ZONE).explanation() == (
        "No earn rate is set for EUR: no points on EUR 9.99"
    )


# --- conditions --------------------------------------------------------------------------------------

BAD_TREES: list[tuple[Any, dict[str, Any] | None, str, str]] = [
    ({"field": "order.colour", "op": "eq", "value": 1}, None, "order", "conditions.field"),
    (
        {"all": [{"field": "order.total", "op": "contains", "value": "x"}]},
        None,
        "order",
        "conditions.all[0].op",
    ),
    ({"any": []}, None, "order", "conditions.any"),
    ({"not": {"field": "line.sku", "op": "eq", "value": 5}}, None, "order", "conditions.not.value"),
    ({"field": "line.sku", "op": "eq", "value": "A"}, None, "signup", "conditions.field"),
    ({"field": "event.type", "op": "eq", "value": "x"}, None, "order", "conditions.field"),
    ({"field": "order.total", "op": "gt", "value": 5}, None, "order", "conditions.value"),
    (
        {"field": "order.total", "op": "gt", "value": {"amount": 5, "currency": "XXX"}},
        None,
        "order",
        "conditions.value",
    ),
    ({"field": "line.category", "op": "in", "value": []}, None, "order", "conditions.value"),
    ({"field": "line.quantity", "op": "in", "value": [1, "2"]}, None, "order", "conditions.value[1]"),
    ({"field": "customer.is_new", "op": "gt", "value": True}, None, "order", "conditions.op"),
    ({"field": "order.total", "op": "gte"}, None, "order", "conditions.value"),
    ({"all": [], "any": []}, None, "order", "conditions"),
    ({"xor": []}, None, "order", "conditions"),
    ([], None, "order", "conditions"),
    ({"ref": "missing"}, None, "order", "conditions.ref"),
    ({"ref": "a"}, {"a": {"ref": "a"}}, "order", "definitions.a.ref"),
    ({"ref": "a"}, {"a": {"ref": "b"}, "b": {"ref": "c"}, "c": {"ref": "a"}}, "order", "definitions.c.ref"),
    (None, {"unused": {"field": "nope", "op": "eq", "value": 1}}, "order", "definitions.unused.field"),
    ({"field": "order.attributes.", "op": "eq", "value": 1}, None, "order", "conditions.field"),
    (
        {"field": "event.properties.x", "op": "contains", "value": True},
        None,
        "review_written",
        "conditions.value",
    ),
]


@pytest.mark.parametrize(("tree", "definitions", "trigger", "path"), BAD_TREES)
def test_bad_trees_name_their_path(
    tree: Any, definitions: dict[str, Any] | None, trigger: str, path: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        compile_conditions(tree, definitions, trigger)
    assert info.value.field == path, info.value.detail


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"field": "line.quantity", "op": "gte", "value": 1}
    for _ in range(depth - 1):
        node = {"all": [node]}
    return node


def test_depth_ten_is_the_limit() -> None:
    assert compile_conditions(nested(10), None, "order").uses_lines
    with pytest.raises(InvalidInput) as info:
        compile_conditions(nested(11), None, "order")
    assert info.value.field == "conditions" + ".all[0]" * 10


# A reference evaluator over the same trees, written independently of the compiler.
def reference(node: dict[str, Any], values: dict[str, Any], line: LineFacts) -> bool:
    if "all" in node:
        return all(reference(n, values, line) for n in node["all"])
    if "any" in node:
        return any(reference(n, values, line) for n in node["any"])
    if "not" in node:
        return not reference(node["not"], values, line)
    field, op, value = node["field"], node["op"], node["value"]
    actual = getattr(line, field[5:]) if field.startswith("line.") else values.get(field)
    if isinstance(value, dict):  # money in EUR, the order's currency
        value = value["amount"]
        if isinstance(actual, Money):
            actual = actual.amount
    if actual is None:
        return op in ("ne", "not_in")
    return {
        "eq": lambda: actual == value,
        "ne": lambda: actual != value,
        "gt": lambda: actual > value,
        "gte": lambda: actual >= value,
        "lt": lambda: actual < value,
        "lte": lambda: actual <= value,
        "in": lambda: actual in value,
        "not_in": lambda: actual not in value,
    }[op]()


leaf_st = st.one_of(
    st.builds(
        lambda op, c: {"field": "line.category", "op": op, "value": c},
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(CATEGORIES[:3]),
    ),
    st.builds(
        lambda op, cs: {"field": "line.category", "op": op, "value": cs},
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(CATEGORIES[:3]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda op, q: {"field": "line.quantity", "op": op, "value": q},
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        st.integers(0, 5),
    ),
    st.builds(
        lambda op, a: {"field": "order.total", "op": op, "value": {"amount": a, "currency": "EUR"}},
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        st.integers(0, 30_000),
    ),
    st.builds(
        lambda op, d: {"field": "customer.days_since_last_order", "op": op, "value": d},
        st.sampled_from(["gt", "lt", "ne", "eq"]),
        st.integers(0, 60),
    ),
)
tree_st = st.recursive(
    leaf_st,
    lambda children: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, children),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(tree=tree_st, lines=orders_st, days=st.none() | st.integers(0, 60))
def test_compiled_trees_agree_with_a_reference_evaluator(
    tree: dict[str, Any], lines: list[Any], days: int | None
) -> None:
    subject = order(lines, **{"customer.days_since_last_order": days})
    compiled = compile_conditions(tree, None, "order")
    expected = [i for i, line in enumerate(subject.lines) if reference(tree, subject.facts.values, line)]
    assert compiled.match_lines(subject.facts, subject.lines) == expected
    assert [i for i, line in enumerate(subject.lines) if compiled.predicate(subject.facts, line)] == expected


def test_money_in_another_currency_never_compares_and_attributes_type_at_run_time() -> None:
    compiled = compile_conditions(
        {"field": "order.total", "op": "ne", "value": {"amount": 1, "currency": "USD"}}, None, "order"
    )
    assert not compiled.predicate(order([("hats", 1, 500)]).facts, None)
    spend = compile_conditions(
        {"field": "customer.lifetime_spend", "op": "gte", "value": {"amount": 100, "currency": "EUR"}},
        None,
        "order",
    )
    assert spend.predicate(Facts({"customer.lifetime_spend": Money(100, "EUR")}), None)
    assert not spend.predicate(Facts({"customer.lifetime_spend": Money(100, "GBP")}), None)
    stars = compile_conditions(
        {"field": "event.properties.stars", "op": "gte", "value": 4}, None, "review_written"
    )
    assert stars.predicate(Facts({}, {"stars": 5}), None)
    assert not stars.predicate(Facts({}, {}), None)
    with pytest.raises(RuleRuntimeError):
        stars.predicate(Facts({}, {"stars": "five"}), None)
