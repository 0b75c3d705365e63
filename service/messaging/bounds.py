"""Bounded rendering: a program's template may not work without end or grow without end.

Jinja's sandbox stops attribute escapes, not work. Every render of a program's template runs under a
budget kept per thread: at most MAX_LOOP_ITERATIONS loop iterations in all, MAX_OUTPUT_CHARS characters
written (counting what goes into `set` blocks and macros, so nothing large is built out of sight), no
value heavier than MAX_OUTPUT_CHARS (characters of its strings plus one per other item: `'x' * 10**8`,
`[s] * 1000 | join`, `'x' | center(10**8)` are refused before they allocate), and MAX_CPU_SECONDS of
the thread's CPU. Over a limit the render raises RenderLimit, naming it.

The checks sit where work can happen: every `for` loop's iterable (a tree transform before compiling),
every call and filter (CPU, the weight of what they take and give), the operators that multiply (`*`,
`**`, `%`, `+`), every `~` and every piece of output. Our own default templates skip all of it.
"""

from __future__ import annotations

import functools
import gc
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

MAX_LOOP_ITERATIONS = 100_000
MAX_OUTPUT_CHARS = 1_000_000
MAX_CPU_SECONDS = 1.0
_SLOW_LIMIT = 100_000  # for the few operations that are slow Python per character (wordwrap, pprint)
MAX_INT_BITS = 100_000  # about 30,000 digits: more than any sum of money, less than a slow number
# Loop iterations between looks at the clock (a look costs about a microsecond; an empty iteration less).
# Every call, filter and operator looks: they are where the work is. No single step can take long
# (what could is refused before it runs); render processes (rendering.isolated) stop what still would.
_CPU_CHECK_EVERY = 16


class RenderLimit(Exception):
    """A render went over one of the limits: `limit` names it (loop_iterations, output, value_size,
    number_size, cpu_time, operation)."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:  # it comes back from a render process
        return (RenderLimit, (self.limit, self.detail))


LIMITS_IN_WORDS = {
    "loop_iterations": f"more than {MAX_LOOP_ITERATIONS:,} loop iterations",
    "output": f"more than {MAX_OUTPUT_CHARS:,} characters of output",
    "value_size": f"a value of more than {MAX_OUTPUT_CHARS:,} characters",
    "number_size": f"a number of more than {MAX_INT_BITS:,} bits",
    "cpu_time": f"more than {MAX_CPU_SECONDS:g} s of CPU time",
    "memory": "more memory than a render may use",
}


def _over(limit: str) -> RenderLimit:
    return RenderLimit(limit, f"over the render limit: {LIMITS_IN_WORDS[limit]}")


@dataclass(slots=True)
class _Budget:
    iterations: int
    chars: int
    deadline: float  # thread CPU time, less its garbage collections (_cpu_now)
    ticks: int = 0

    def iterate(self) -> None:
        self.iterations -= 1
        if self.iterations < 0:
            raise _over("loop_iterations")
        self.ticks += 1
        if self.ticks >= _CPU_CHECK_EVERY:
            self.ticks = 0
            self.clock()

    def clock(self) -> None:
        if _cpu_now() > self.deadline:
            raise _over("cpu_time")

    def write(self, chars: int) -> None:
        self.chars -= chars
        if self.chars < 0:
            raise _over("output")


_state = threading.local()


def _collecting(phase: str, _info: dict[str, int]) -> None:
    """gc callback: the thread CPU its collections take, which no template is charged for (a collection
    runs in whichever thread allocated last, and in a large process one takes longer than a whole check)."""
    now = time.thread_time()
    if phase == "start":
        _state.gc_started = now
    elif (started := getattr(_state, "gc_started", None)) is not None:
        _state.gc_seconds = getattr(_state, "gc_seconds", 0.0) + now - started
        _state.gc_started = None


gc.callbacks.append(_collecting)


def _cpu_now() -> float:
    """This thread's CPU time less what its garbage collections took."""
    return time.thread_time() - getattr(_state, "gc_seconds", 0.0)


def _budget() -> _Budget:
    budget: _Budget | None = getattr(_state, "budget", None)
    if budget is None:  # a program's template rendered outside render_budget(): never unbounded
        raise RuntimeError("a sandboxed template must be rendered inside bounds.render_budget()")
    return budget


@contextmanager
def render_budget(cpu_seconds: float = MAX_CPU_SECONDS) -> Iterator[None]:
    """One render's budget: fresh loop and output counts; the CPU deadline is this one's or, when an
    outer budget is open (a save check renders many samples), the earlier of the two."""
    outer: _Budget | None = getattr(_state, "budget", None)
    deadline = _cpu_now() + cpu_seconds
    if outer is not None:
        deadline = min(deadline, outer.deadline)
    budget = _Budget(MAX_LOOP_ITERATIONS, MAX_OUTPUT_CHARS, deadline)
    _state.budget = budget
    try:
        yield
        budget.clock()  # a render of few steps is timed too
    finally:
        _state.budget = outer


def weight(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """About what printing `value` costs, in characters: every item counts one, a string its length more,
    a number its digits; through containers (a shared reference counts every time it is met: that is
    what printing it costs). Items are taken one at a time and counting stops once past `limit`, so
    weighing never costs more than the limit, however large the value."""
    if isinstance(value, str):
        return 1 + len(value)
    total = 0
    pending: list[Iterator[Any]] = [iter((value,))]
    while pending:
        item = next(pending[-1], _DONE)
        if item is _DONE:
            pending.pop()
            continue
        total += 1
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3  # decimal digits, about
        elif isinstance(item, list | tuple | set | frozenset):
            pending.append(iter(item))
        elif isinstance(item, dict):
            pending.append(iter(item.items()))
        if total > limit:
            return total
    return total


_DONE = object()


def _bounded(value: Any) -> Any:
    """`value` if it weighs at most the limit; generators and iterators are read here, item by item as
    loop iterations, so that nothing lazily grows past the limit later."""
    if isinstance(value, Iterator) and not isinstance(value, str | bytes):
        budget = _budget()
        items: list[Any] = []
        total = 0
        for item in value:
            budget.iterate()
            total += weight(item)
            if total > MAX_OUTPUT_CHARS:
                raise _over("value_size")
            items.append(item)
        return items
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _over("number_size")
    if (
        isinstance(value, str | bytes | list | tuple | set | frozenset | dict)
        and weight(value) > MAX_OUTPUT_CHARS
    ):
        raise _over("value_size")
    return value


def _require(condition: bool, limit: str = "value_size") -> None:
    if not condition:
        raise _over(limit)


# --- operators -----------------------------------------------------------------------------------

_SEQUENCES = (str, bytes, list, tuple)
# The widths and precisions a format string asks for: `%(name)-08.3f`, `{0:>999}`, `{:{width}}`.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)(\{)?")
_NUMBER = re.compile(r"\d+")


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _multiply(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, _SEQUENCES) and isinstance(count, int):
            size = len(sequence) if isinstance(sequence, str | bytes) else weight(sequence)
            _require(count <= 0 or size * count <= MAX_OUTPUT_CHARS)
    if isinstance(left, int) and isinstance(right, int):
        _require(_int_bits(left) + _int_bits(right) <= MAX_INT_BITS, "number_size")
    return left * right


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        _require(_int_bits(base) * exponent <= MAX_INT_BITS, "number_size")
    return base**exponent


def _check_format_string(template: Any, arguments: Any = ()) -> None:
    """What a format string can make, before it runs: its own text, its widths and precisions, and for
    each field all of the arguments at most. Over the limit, or with a width taken from the arguments
    (`*`, a nested `{}`), it could ask for any size."""
    if not isinstance(template, str):
        return
    asked, fields = len(template), 0
    if "%" in template:
        for match in _PERCENT_SPEC.finditer(template):
            fields += 1
            for number in match.groups():
                _require(number != "*")
                asked += int(number or 0)
    if "{" in template:
        fields += template.count("{")
        for match in _BRACE_SPEC.finditer(template):
            _require(match.group(2) is None)
            asked += sum(int(n) for n in _NUMBER.findall(match.group(1)))
    _require(asked <= MAX_OUTPUT_CHARS)
    if fields:
        _require(asked + fields * weight(arguments, MAX_OUTPUT_CHARS // fields) <= MAX_OUTPUT_CHARS)


def _modulo(left: Any, right: Any) -> Any:
    _check_format_string(left, right)
    return _bounded(left % right)


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        _require(weight(left) + weight(right) <= MAX_OUTPUT_CHARS)
    return left + right


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _multiply,
    "**": _power,
    "%": _modulo,
    "+": _add,
}


# --- calls and filters ---------------------------------------------------------------------------

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
# Text methods that can multiply their input with little to check them by; a message has no use for them.
_REFUSED_METHODS = frozenset({"translate", "expandtabs", "maketrans", "encode"})


def _check_replace(text: Any, old: Any, new: Any, count: int = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        found = len(text) + 1 if old == "" else text.count(old)
        if count is not None and count >= 0:
            found = min(found, count)
        _require(len(text) + found * (len(new) - len(old)) <= MAX_OUTPUT_CHARS)


def _check_join(separator: Any, items: Any) -> Any:
    items = _bounded(items)
    if isinstance(items, list | tuple | set | frozenset):
        _require(weight(items) + weight(separator) * len(items) <= MAX_OUTPUT_CHARS)
    return items


def _check_str_method(name: str, text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if name in _REFUSED_METHODS:
        raise RenderLimit("operation", f"str.{name}() is not available in templates")
    if name in _WIDTH_METHODS and args:
        _require(not isinstance(args[0], int) or args[0] <= MAX_OUTPUT_CHARS)
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, *args[:3])
    elif name == "join" and args:
        return (_check_join(text, args[0]), *args[1:])
    elif name in ("format", "format_map"):
        _check_format_string(text, (args, kwargs))
    return args


def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Filters that can make more than they are given: their arguments (the value first, then the
    filter's own) are checked before they run."""
    value, params = (args[0], args[1:]) if args else (None, ())

    def param(index: int, keyword: str, default: Any) -> Any:
        return params[index] if len(params) > index else kwargs.get(keyword, default)

    if name in ("center", "indent"):
        width = param(0, "width", 80 if name == "center" else 4)
        if isinstance(width, str):
            width = len(width)
        lines = str(value).count("\n") + 1 if name == "indent" else 1
        _require(not isinstance(width, int) or len(str(value)) + lines * width <= MAX_OUTPUT_CHARS)
    elif name == "replace":
        _check_replace(str(value), str(param(0, "old", "")), str(param(1, "new", "")), param(2, "count", -1))
    elif name == "join":
        return (_check_join(param(0, "d", ""), value), *params)
    elif name == "wordwrap":  # textwrap is quadratic on long words: a smaller limit
        wrap = param(2, "wrapstring", None) or "\n"
        _require(len(str(value)) <= _SLOW_LIMIT)
        _require(len(str(value)) * (1 + len(str(wrap))) <= MAX_OUTPUT_CHARS)
    elif name == "format":
        _check_format_string(value, (params, kwargs))
    elif name == "pprint":  # pretty-printing is slow Python: a smaller limit
        _require(weight(value, _SLOW_LIMIT) <= _SLOW_LIMIT)
    elif name in ("slice", "batch"):  # as many lists (slice) or as long ones, padded (batch)
        count = param(0, "slices" if name == "slice" else "linecount", 1)
        _require(not isinstance(count, int) or count <= MAX_OUTPUT_CHARS)
    elif name == "tojson":  # indents every line by this much
        indent = param(0, "indent", None)
        _require(not isinstance(indent, int) or indent <= 100)
    elif name == "urlize":  # each link gets these attributes
        extra = sum(len(str(param(i, k, "") or "")) for i, k in ((2, "rel"), (3, "target")))
        _require((str(value).count(".") + 1) * extra <= MAX_OUTPUT_CHARS)
    elif name == "sum" and not isinstance(param(1, "start", 0), int | float):
        raise RenderLimit("operation", "sum() adds numbers only in templates")  # lists: quadratic
    return args


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A call's arguments, iterators read (bounded); all of them together within the limit, so that
    checking them never costs more than one value at the limit."""
    bounded = tuple(_bounded(a) if isinstance(a, Iterator | int) else a for a in args)
    if args or kwargs:
        _require(weight((bounded, kwargs)) <= MAX_OUTPUT_CHARS)
    return bounded


def bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context / pass_eval_context / pass_environment take that first.
    skip = 1 if _PassArg.from_obj(function) is not None else 0

    @functools.wraps(function)  # keeps those marks
    def run(*args: Any, **kwargs: Any) -> Any:
        _budget().clock()
        checked = _check_filter(name, _arguments(args[skip:], kwargs), kwargs)
        return _bounded(function(*args[:skip], *checked, **kwargs))

    return run


class _BoundedFilters(dict[str, Callable[..., Any]]):
    """The sandbox's filters: one added later (`env.filters[name] = f`) is bounded too."""

    def __setitem__(self, name: str, function: Callable[..., Any]) -> None:
        super().__setitem__(name, bounded_filter(name, function))


class _BoundedLoop:
    """A loop's iterable, counted against the render's loop budget; its length stays known (loop.length)."""

    __slots__ = ("_items", "_length")

    def __init__(self, items: Iterable[Any]) -> None:
        self._length = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
        self._items = iter(items)

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("no length")
        return self._length

    def __iter__(self) -> _BoundedLoop:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        _budget().iterate()
        return item


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The environment programs' templates run in: the immutable sandbox (no appending to lists in a
    loop) with the budget's checks at every call, filter, multiplying operator, loop and output."""

    intercepted_binops = frozenset(_OPERATORS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)  # generates any amount of text in one call
        filters = _BoundedFilters()
        for name, function in self.filters.items():
            filters[name] = function
        # What the transform's nodes call: filters, because the compiled template calls a filter
        # directly, where a call would pass through the sandbox's checks. Not bounded themselves.
        dict.update(filters, _CHECKS)
        self.filters = filters

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().clock()
        return _OPERATORS[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().clock()
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(target.__name__, owner, args, kwargs)
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_BoundedLoop(args[0]), *args[1:])
        args = _arguments(args, kwargs)
        return _bounded(super().call(__context, __obj, *args, **kwargs))


# pass_context: Jinja never runs these at compile time to fold constants; they count at render time.
@pass_context
def _loop(_: Context, items: Iterable[Any]) -> _BoundedLoop:
    return _BoundedLoop(items)


@pass_context
def _written(_: Context, value: Any) -> Any:
    _budget().write(len(value) if isinstance(value, str) else weight(value))  # a number: its digits
    return value


@pass_context
def _write_literal(_: Context, __: None, chars: int) -> str:
    _budget().write(chars)
    return ""


_CHECKS: dict[str, Callable[..., Any]] = {
    "__bounded_loop": _loop,
    "__bounded_value": _bounded,
    "__written": _written,
    "__write_literal": _write_literal,
}


class _AddChecks(NodeTransformer):
    """Rewrites a parsed template so that loops, `~` and output go through the budget's checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _check("__bounded_loop", node.iter)  # type: ignore[arg-type]  # an Expr in a For
        return node

    def visit_FilterBlock(self, node: nodes.FilterBlock) -> nodes.Node:
        # Its output goes straight out, past the Output nodes: counted here.
        self.generic_visit(node)
        node.filter = nodes.Filter(node.filter, "__written", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _check("__bounded_value", node)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        literal = sum(len(c.data) for c in node.nodes if isinstance(c, nodes.TemplateData))
        children: list[nodes.Expr] = [
            c if isinstance(c, nodes.TemplateData) else _check("__written", c) for c in node.nodes
        ]
        if literal:
            children.insert(0, _check("__write_literal", nodes.Const(None), nodes.Const(literal)))
        node.nodes = children
        return node


def _check(name: str, value: nodes.Expr, *args: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(value, name, list(args), [], None, None, lineno=value.lineno)


def add_checks(tree: nodes.Template, environment: BoundedSandbox) -> nodes.Template:
    transformed: nodes.Template = _AddChecks().visit(tree)
    transformed.set_environment(environment)
    return transformed
