"""Rule conditions: a small JSON expression tree, checked once at save time and compiled to closures.

A node is one of
    {"all": [node, ...]}   {"any": [node, ...]}   {"not": node}   {"ref": "name"}
    {"field": "order.total", "op": "gte", "value": {"amount": 5000, "currency": "EUR"}}
`ref` names a node in the rule's `definitions` (shared pieces such as "big spender"); a reference
cycle, an unknown field, an operator that does not fit the field's type, or a depth over 10 is
refused with the JSON path of the offending node.

An order rule's tree is evaluated once per line: order and customer fields are the same for every
line, line fields differ, and the lines for which the tree holds are the rule's matching lines.
A field without a value (no previous order, no category) makes every comparison false except `ne`
and `not_in`. A money comparison in another currency than the order's is false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from service.core.errors import InvalidInput
from service.core.money import is_currency

MAX_DEPTH = 10
MAX_NODES = 200
MAX_LIST = 100

FieldType = Literal["number", "money", "string", "bool", "any"]
Trigger = str  # "order" or an event type


class Money(NamedTuple):
    # Tuples: a simulation builds millions of these, and a tuple is the cheapest object to make.
    amount: int
    currency: str


class Facts(NamedTuple):
    """What a rule can look at, besides the line: `values` maps field names to values (None = unknown)."""

    values: dict[str, Any]
    attributes: Mapping[str, Any] = MappingProxyType({})  # order.attributes.* / event.properties.*


class LineFacts(NamedTuple):
    sku: str
    category: str | None
    name: str | None
    quantity: int
    # Minor units of the order's currency (`order.currency`): plain numbers, a simulation makes millions.
    unit_amount: int
    amount: int  # eligible: after the line's share of the discount


# Field name -> (type, scope). Scope: "order" (order triggers), "line", "event" (event triggers), "customer".
FIELDS: dict[str, tuple[FieldType, str]] = {
    "order.total": ("money", "order"),
    "order.subtotal": ("money", "order"),
    "order.eligible": ("money", "order"),
    "order.discount": ("money", "order"),
    "order.shipping": ("money", "order"),
    "order.item_count": ("number", "order"),
    "order.line_count": ("number", "order"),
    "order.currency": ("string", "order"),
    "line.sku": ("string", "line"),
    "line.category": ("string", "line"),
    "line.name": ("string", "line"),
    "line.quantity": ("number", "line"),
    "line.unit_amount": ("money", "line"),
    "line.amount": ("money", "line"),
    "customer.order_count": ("number", "customer"),
    "customer.days_since_last_order": ("number", "customer"),
    "customer.days_since_signup": ("number", "customer"),
    "customer.lifetime_spend": ("money", "customer"),
    "customer.tier": ("string", "customer"),
    "customer.birthday_month": ("number", "customer"),
    "customer.is_birthday_month": ("bool", "customer"),
    "customer.is_new": ("bool", "customer"),
    "customer.locale": ("string", "customer"),
    "customer.marketing_consent": ("bool", "customer"),
    "event.type": ("string", "event"),
}
# Free-form keys the shop sends: their type is only known at run time.
ATTRIBUTE_PREFIXES = {"order.attributes.": "order", "event.properties.": "event"}

OPERATORS: dict[FieldType, frozenset[str]] = {
    "number": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"}),
    "money": frozenset({"eq", "ne", "gt", "gte", "lt", "lte"}),
    "string": frozenset({"eq", "ne", "in", "not_in", "contains", "starts_with", "ends_with"}),
    "bool": frozenset({"eq", "ne"}),
    "any": frozenset(
        {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with", "ends_with"}
    ),
}
ALL_OPERATORS = OPERATORS["any"]


class RuleRuntimeError(Exception):
    """A condition that cannot be evaluated on these facts (e.g. a property of an unexpected type)."""


Predicate = Callable[[Facts, LineFacts | None], bool]


@dataclass(frozen=True, slots=True)
class Compiled:
    predicate: Predicate
    uses_lines: bool
    fields: frozenset[str]
    # The indexes of the lines the tree holds for: the same test, one call per order instead of per line.
    match_lines: Callable[[Facts, Sequence[LineFacts]], list[int]] = field(
        default=lambda facts, lines: list(range(len(lines))), compare=False, repr=False
    )


def _scopes_for(trigger: Trigger) -> frozenset[str]:
    return (
        frozenset({"order", "line", "customer"}) if trigger == "order" else frozenset({"event", "customer"})
    )


def field_type(name: str, trigger: Trigger, path: str) -> tuple[FieldType, str]:
    for prefix, scope in ATTRIBUTE_PREFIXES.items():
        if name.startswith(prefix):
            key = name[len(prefix) :]
            if not key or len(key) > 64:
                raise InvalidInput(f"{prefix}<name> needs a name of 1 to 64 characters", field=path)
            found: tuple[FieldType, str] = ("any", scope)
            break
    else:
        if name not in FIELDS:
            raise InvalidInput(
                f"unknown field {name!r}; known: {', '.join(sorted(FIELDS))}, order.attributes.<name>, "
                "event.properties.<name>",
                field=path,
            )
        found = FIELDS[name]
    if found[1] not in _scopes_for(trigger):
        what = "an order rule" if trigger == "order" else f"a rule triggered by {trigger!r} events"
        raise InvalidInput(f"field {name!r} is not available to {what}", field=path)
    return found


def _check_scalar(kind: FieldType, value: Any, path: str) -> Any:
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput("this field compares to a number", field=path)
        return value
    if kind == "string":
        if not isinstance(value, str) or len(value) > 500:
            raise InvalidInput("this field compares to a string of at most 500 characters", field=path)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidInput("this field compares to true or false", field=path)
        return value
    if kind == "money":
        if (
            not isinstance(value, dict)
            or set(value) != {"amount", "currency"}
            or isinstance(value["amount"], bool)
            or not isinstance(value["amount"], int)
            or not isinstance(value["currency"], str)
            or not is_currency(value["currency"])
        ):
            raise InvalidInput(
                'this field compares to money: {"amount": <minor units>, "currency": "<ISO 4217>"}',
                field=path,
            )
        return Money(value["amount"], value["currency"])
    if value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidInput("compare to a string, number or boolean", field=path)
    return value


def _check_value(kind: FieldType, op: str, value: Any, path: str) -> Any:
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise InvalidInput(f"`{op}` takes a list of 1 to {MAX_LIST} values", field=path)
        return frozenset(_check_scalar(kind, v, f"{path}[{i}]") for i, v in enumerate(value))
    if op in ("contains", "starts_with", "ends_with"):
        return _check_scalar("string", value, path)
    return _check_scalar(kind, value, path)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is None:
        return op in ("ne", "not_in")
    if isinstance(expected, Money):
        if not isinstance(actual, Money) or actual.currency != expected.currency:
            return False
        actual, expected = actual.amount, expected.amount
    try:
        if op == "eq":
            return bool(actual == expected)
        if op == "ne":
            return bool(actual != expected)
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
        if op == "in":
            return actual in expected
        if op == "not_in":
            return actual not in expected
        if not isinstance(actual, str):
            raise RuleRuntimeError(f"`{op}` needs a string, the value is {type(actual).__name__}")
        if op == "contains":
            return expected in actual
        if op == "starts_with":
            return actual.startswith(expected)
        return actual.endswith(expected)
    except TypeError as exc:
        raise RuleRuntimeError(
            f"cannot compare {type(actual).__name__} {actual!r} with {expected!r} using `{op}`"
        ) from exc


_ORDERING = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _attribute(facts: Facts, key: str) -> Any:
    value = facts.attributes.get(key)
    # bool is an int in Python: keep true/false from comparing equal to 1/0.
    return ("bool", value) if isinstance(value, bool) else value


def _wrap_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, frozenset):
        return frozenset(_wrap_bool(v) for v in value)
    return value


class _Compiler:
    """Checks the tree and writes it as one Python expression over `f` (facts) and `l` (the line): no
    call per node at run time. Only fixed templates and validated field names become code; every value
    from the request is a bound name (`v3`), never source text."""

    def __init__(self, trigger: Trigger, definitions: Mapping[str, Any]) -> None:
        self.trigger = trigger
        self.definitions = definitions
        self.nodes = 0
        self.uses_lines = False
        self.fields: set[str] = set()
        self.namespace: dict[str, Any] = {"_compare": _compare, "_attribute": _attribute}

    def bind(self, value: Any) -> str:
        name = f"v{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def compile(self, node: Any, path: str, depth: int, refs: tuple[str, ...]) -> str:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"conditions nest deeper than {MAX_DEPTH} levels", field=path)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InvalidInput(f"conditions have more than {MAX_NODES} nodes", field=path)
        if not isinstance(node, dict) or not node:
            raise InvalidInput("a condition is an object: all, any, not, ref or a comparison", field=path)
        keys = set(node)
        if keys <= {"field", "op", "value"} and "field" in keys:
            return self._comparison(node, path)
        if len(keys) != 1:
            raise InvalidInput(
                f"a condition has exactly one of all, any, not, ref, or field/op/value; got {sorted(keys)}",
                field=path,
            )
        (kind,) = keys
        arg = node[kind]
        if kind in ("all", "any"):
            if not isinstance(arg, list) or not 1 <= len(arg) <= MAX_LIST:
                raise InvalidInput(
                    f"`{kind}` takes a list of 1 to {MAX_LIST} conditions", field=f"{path}.{kind}"
                )
            parts = [
                self.compile(child, f"{path}.{kind}[{i}]", depth + 1, refs) for i, child in enumerate(arg)
            ]
            joiner = " and " if kind == "all" else " or "
            return "(" + joiner.join(parts) + ")"
        if kind == "not":
            return f"(not {self.compile(arg, f'{path}.not', depth + 1, refs)})"
        if kind == "ref":
            if not isinstance(arg, str) or arg not in self.definitions:
                raise InvalidInput(f"`ref` names no definition: {arg!r}", field=f"{path}.ref")
            if arg in refs:
                cycle = " → ".join([*refs[refs.index(arg) :], arg])
                raise InvalidInput(
                    f"definitions refer to each other in a cycle: {cycle}", field=f"{path}.ref"
                )
            return self.compile(self.definitions[arg], f"definitions.{arg}", depth + 1, (*refs, arg))
        raise InvalidInput(
            f"unknown condition {kind!r}: use all, any, not, ref or field/op/value", field=path
        )

    def _comparison(self, node: dict[str, Any], path: str) -> str:
        name = node["field"]
        if not isinstance(name, str):
            raise InvalidInput("`field` is a string such as order.total", field=f"{path}.field")
        kind, _scope = field_type(name, self.trigger, f"{path}.field")
        op = node.get("op")
        if op not in OPERATORS[kind]:
            raise InvalidInput(
                f"operator {op!r} does not apply to {name} ({kind}); use one of {', '.join(sorted(OPERATORS[kind]))}",
                field=f"{path}.op",
            )
        if "value" not in node:
            raise InvalidInput("a comparison needs a `value`", field=f"{path}.value")
        expected = _check_value(kind, op, node["value"], f"{path}.value")
        self.fields.add(name)
        if kind == "any":
            # Typed only at run time: the general comparison, which raises on a mismatch.
            expected = _wrap_bool(expected)
            if op in ("contains", "starts_with", "ends_with") and isinstance(expected, tuple):
                raise InvalidInput(f"`{op}` takes a string", field=f"{path}.value")
            key = self.bind(name.split(".", 2)[2])
            return f"_compare({op!r}, _attribute(f, {key}), {self.bind(expected)})"
        if name.startswith("line."):
            self.uses_lines = True
            value = f"l.{name[len('line.') :]}"  # a known LineFacts attribute (checked against FIELDS)
        else:
            value = f"f.values.get({self.bind(name)})"
        x = f"x{len(self.namespace)}"
        self.namespace[x] = None  # reserve the name
        if kind == "money" and name.startswith(("line.", "order.")):
            # An order's and its lines' amounts are plain minor units of the order's currency.
            amount, currency = self.bind(expected.amount), self.bind(expected.currency)
            symbol = {"eq": "==", "ne": "!=", **_ORDERING}[op]
            return f"(f.values.get('order.currency') == {currency} and {value} {symbol} {amount})"
        if kind == "money":
            amount, currency = self.bind(expected.amount), self.bind(expected.currency)
            symbol = {"eq": "==", "ne": "!=", **_ORDERING}[op]
            return f"(({x} := {value}) is not None and {x}.currency == {currency} and {x}.amount {symbol} {amount})"
        v = self.bind(expected)
        if op in ("eq", "ne", "in", "not_in"):
            # None: eq and in are false, ne and not_in true — the documented meaning of a missing value.
            symbol = {"eq": "==", "ne": "!=", "in": "in", "not_in": "not in"}[op]
            return f"({value} {symbol} {v})"
        if op in _ORDERING:
            return f"(({x} := {value}) is not None and {x} {_ORDERING[op]} {v})"
        if op == "contains":
            return f"(({x} := {value}) is not None and {v} in {x})"
        method = "startswith" if op == "starts_with" else "endswith"
        return f"(({x} := {value}) is not None and {x}.{method}({v}))"


def compile_conditions(
    conditions: Any, definitions: Mapping[str, Any] | None, trigger: Trigger, path: str = "conditions"
) -> Compiled:
    """Check a condition tree and turn it into a predicate; raises InvalidInput naming the JSON path."""
    definitions = definitions or {}
    for name, node in definitions.items():
        # Every definition must be valid on its own, used or not.
        _Compiler(trigger, definitions).compile(node, f"definitions.{name}", 1, (name,))
    if conditions is None:
        return Compiled(lambda facts, line: True, False, frozenset())
    compiler = _Compiler(trigger, definitions)
    code = compiler.compile(conditions, path, 1, ())
    # Generated code, see _Compiler: only templates and checked names; the values are bound names.
    predicate: Predicate = eval(f"lambda f, l: bool({code})", compiler.namespace)
    match_lines = eval(f"lambda f, ls: [i for i, l in enumerate(ls) if {code}]", compiler.namespace)
    return Compiled(predicate, compiler.uses_lines, frozenset(compiler.fields), match_lines)
