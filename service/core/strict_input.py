"""Every request's input is checked here, where it is decoded, before a handler sees it.

Litestar converts bodies in msgspec's lax mode (it would take "9000" for 9000) and hands PostgreSQL
whatever a client sent. This hook, run before each handler:
- refuses unknown query parameters (on the API; pages outside it take what tools append), and NUL
  characters and invalid UTF-8 in path and query values;
- refuses a `\u0000` anywhere in the raw body (msgspec would even read a time ending in one), then
  decodes the body strictly against the handler's `data` type (once: the handler gets this very
  value, Litestar does not decode again), refusing invalid UTF-8 and nesting deeper than MAX_DEPTH;
- walks the decoded value and refuses what PostgreSQL or Python's datetime would fail on later:
  integers beyond 64 bits, decimals that are not finite or absurdly long, times outside
  [TIME_MIN, TIME_MAX), and decimals written as JSON floats (money-like values are integers or
  decimal strings: 1.1 as a float is not 1.1).
Each refusal is a problem naming the field: `lines[0].sku`, `query:cursor`, `path:external_id`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler

from service.core.auth import PUBLIC_PATHS
from service.core.errors import InvalidInput, MalformedBody, Problem, validation_problem

MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
TIME_RANGE = "from 1970-01-01 to 2200-01-01 UTC"
DATE_MIN, DATE_MAX = date(1900, 1, 1), date(2200, 1, 1)
# A time without an offset is read in some time zone later: keep a day's margin for any offset.
_NAIVE_MIN = (TIME_MIN + timedelta(days=1)).replace(tzinfo=None)
_NAIVE_MAX = (TIME_MAX - timedelta(days=1)).replace(tzinfo=None)
# Decimal rates and multipliers: up to 18 digits either side of the point.
_DECIMAL_DIGITS = 18

Path = tuple[str | int, ...]


def field_name(path: Path) -> str:
    """`("lines", 0, "sku")` -> `lines[0].sku` (the form msgspec's errors use too)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _time_problem(value: datetime) -> str | None:
    if value.tzinfo is None or value.utcoffset() is None:
        if _NAIVE_MIN <= value < _NAIVE_MAX:
            return None
    else:
        try:
            if TIME_MIN <= value.astimezone(UTC) < TIME_MAX:
                return None
        except OverflowError:  # year 1 with a positive offset is before year 1 in UTC
            pass
    return f"a time must be {TIME_RANGE}"


def _decimal_problem(value: Decimal) -> str | None:
    if not value.is_finite():
        return "a decimal must be a finite number"
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if value.adjusted() >= _DECIMAL_DIGITS or exponent < -_DECIMAL_DIGITS:
        return f"a decimal has at most {_DECIMAL_DIGITS} digits before and after the point"
    return None


def _struct_items(value: msgspec.Struct) -> Iterator[tuple[str, Any]]:
    # The class attributes, not msgspec.structs.fields(): that resolves the type hints at every call.
    cls = type(value)
    for name, encoded in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
        yield encoded, getattr(value, name)


def check_tree(value: Any, path: Path = ()) -> list[Path]:
    """Refuse what no field may hold (see the module's doc; NUL is looked for in the raw body, where it
    is also found inside strings msgspec parses into times); returns the paths of Decimal values."""
    decimals: list[Path] = []
    stack: list[tuple[Any, Path]] = [(value, path)]
    while stack:
        node, at = stack.pop()
        problem: str | None = None
        if isinstance(node, str | bool | float) or node is None:
            pass  # NUL is refused in the raw body; msgspec refuses non-finite JSON numbers
        elif isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                problem = "an integer must fit in 64 bits"
        elif isinstance(node, datetime):
            problem = _time_problem(node)
        elif isinstance(node, date):
            if not DATE_MIN <= node < DATE_MAX:
                problem = "a date must be from 1900-01-01 to 2200-01-01"
        elif isinstance(node, Decimal):
            problem = _decimal_problem(node)
            decimals.append(at)
        elif len(at) >= MAX_DEPTH and isinstance(node, dict | list | tuple | msgspec.Struct):
            problem = f"nested deeper than {MAX_DEPTH} levels"
        elif isinstance(node, dict):
            stack.extend((item, (*at, key)) for key, item in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((item, (*at, index)) for index, item in enumerate(node))
        elif isinstance(node, msgspec.Struct):
            stack.extend((item, (*at, name)) for name, item in _struct_items(node))
        if problem is not None:
            raise InvalidInput(problem, field=field_name(at) or None)
    return decimals


class _Float:
    """A JSON float literal, marked so that a decimal written as one can be told apart from a string."""


_FLOAT = _Float()
_MARKING_FLOATS = msgspec.json.Decoder(float_hook=lambda _: _FLOAT)


def _refuse_float_decimals(raw: bytes, paths: list[Path]) -> None:
    loose = _MARKING_FLOATS.decode(raw)
    for path in paths:
        node = loose
        try:
            for part in path:
                node = node[part]
        except (KeyError, IndexError, TypeError):
            continue  # not in the body: a default
        if node is _FLOAT:
            raise InvalidInput(
                'a decimal is written as a string ("1.5") or an integer, never a JSON float',
                field=field_name(path),
            )


# Where in a body the decoder gave up (too deep, or not UTF-8): a tokenizer over the raw bytes, used
# only on those error paths.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{},]')


def _path_in_body(raw: bytes, *, depth: int | None = None, offset: int | None = None) -> Path:
    """The path where the nesting first goes beyond `depth`, or of the string holding byte `offset`."""
    path: list[str | int] = []
    kinds: list[bytes] = []
    for match in _TOKEN.finditer(raw):
        token = match.group(0)
        if offset is not None and match.start() <= offset < match.end():
            if match.group(1) and kinds and kinds[-1] == b"{":
                path[-1] = _key_text(token)
            return tuple(path)
        if token in (b"{", b"["):
            if depth is not None and len(kinds) >= depth:
                return tuple(path)
            kinds.append(token)
            path.append(0 if token == b"[" else "")
        elif token in (b"}", b"]"):
            if kinds:
                kinds.pop()
                path.pop()
        elif token == b",":
            if kinds and kinds[-1] == b"[":
                path[-1] = int(path[-1]) + 1
        elif match.group(1) and kinds and kinds[-1] == b"{":
            path[-1] = _key_text(token)
    return tuple(path)


def _key_text(token: bytes) -> str:
    try:
        key = msgspec.json.decode(token[: token.rindex(b'"') + 1])
    except (msgspec.DecodeError, UnicodeDecodeError):
        return "?"
    return key if isinstance(key, str) else "?"


_OPTIONAL_BODY = "encore_optional_body"


def optional_body() -> dict[str, bool]:
    """`opt=optional_body()` on a route whose body only tunes an action (`rotate-secret`): no body means
    the defaults. Elsewhere an empty body is a 400: a PUT with none must not reset a whole document."""
    return {_OPTIONAL_BODY: True}


def body_is_optional(handler: HTTPRouteHandler) -> bool:
    data = handler.parsed_data_field
    if not handler.opt.get(_OPTIONAL_BODY):
        return False
    if data is None or not takes_empty_body(data.annotation):
        raise TypeError(f"{handler} takes optional_body() but its body has fields without defaults")
    return True


@functools.cache
def takes_empty_body(annotation: Any) -> bool:
    """`{}` is a valid body: every field has a default."""
    try:
        msgspec.json.decode(b"{}", type=annotation, strict=True)
    except msgspec.ValidationError:
        return False
    return True


_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _parse_field(field: str) -> Path:
    return tuple(
        key if key else int(index)
        for key, index in _PATH_PART.findall(field if field[:1] == "[" else f".{field}")
    )


def _name_dict_key(raw: bytes, annotation: Any, field: str) -> str:
    """msgspec calls a dict's entry `[...]`: find which key it is by decoding the body again with that
    dict cut down to one entry at a time (only on this error path)."""
    head, _, tail = field.partition("[...]")
    try:
        loose = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return head or field  # the entry cannot be found (bad JSON further on): the dict it is in is named
    at = _parse_field(head) if head else ()
    node: Any = loose
    try:
        for part in at:
            node = node[part]
    except (KeyError, IndexError, TypeError):
        return head or field
    if not isinstance(node, dict):
        return head or field
    for key, item in node.items():
        trial = _replace_at(loose, at, {key: item})
        try:
            msgspec.json.decode(msgspec.json.encode(trial), type=annotation, strict=True)
        except (msgspec.ValidationError, RecursionError):
            named = f"{head}.{key}" if head else key
            return f"{named}{tail}"
    return head or field


def _replace_at(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace_at(value[path[0]], path[1:], new)
    return copy


# A `\u0000` escape (after an even run of backslashes, so `\\u0000` is the text it looks like).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _refuse_nul(raw: bytes) -> None:
    found = _NUL_ESCAPE.search(raw)
    if found:
        where = field_name(_path_in_body(raw, offset=found.end() - 6)) or None
        raise InvalidInput("text must not contain NUL (\\u0000) characters", field=where)


def decode_body(raw: bytes, annotation: Any) -> Any:
    """The body as `annotation`, strictly; a problem naming the field otherwise."""
    _refuse_nul(raw)
    try:
        value = msgspec.json.decode(raw, type=annotation, strict=True)
    except msgspec.ValidationError as exc:
        problem = validation_problem(str(exc))
        if "[...]" in (problem.get("field") or ""):
            problem["field"] = _name_dict_key(raw, annotation, problem["field"])
        raise Problem.from_body(problem) from exc
    except msgspec.DecodeError as exc:
        raise MalformedBody(str(exc)) from exc
    except UnicodeDecodeError as exc:
        # msgspec counts from the start of the string; the codec tells the byte in the body.
        try:
            raw.decode()
            start = exc.start
        except UnicodeDecodeError as whole:
            start = whole.start
        where = field_name(_path_in_body(raw, offset=start)) or None
        raise MalformedBody(f"the body is not valid UTF-8 (byte {start})", field=where) from exc
    except RecursionError as exc:
        where = field_name(_path_in_body(raw, depth=MAX_DEPTH)) or None
        raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels", field=where) from exc
    decimals = check_tree(value)
    if decimals:
        _refuse_float_decimals(raw, decimals)
    return value


_QUERY_NAMES = "encore_query_names"
_PUBLIC = re.compile("|".join(PUBLIC_PATHS))


def _query_names(handler: HTTPRouteHandler, path_params: dict[str, Any]) -> frozenset[str]:
    """The query parameters the handler declares (by alias), worked out once and kept on the handler."""
    names: frozenset[str] | None = handler.opt.get(_QUERY_NAMES)
    if names is None:
        model = handler.create_kwargs_model(path_parameters=dict.fromkeys(path_params))  # type: ignore[arg-type]
        names = handler.opt[_QUERY_NAMES] = frozenset(p.field_alias for p in model.expected_query_params)
    return names


def _not_utf8(escaped: str) -> bool:
    try:
        unquote_to_bytes(escaped.replace("+", " ")).decode()
    except UnicodeDecodeError:
        return True
    return False


def _check_text(where: str, value: str, escaped: bytes) -> None:
    """A path or query value: no NUL; invalid UTF-8 (which the ASGI server turned into U+FFFD) refused."""
    if "\x00" in value:
        raise InvalidInput("must not contain NUL (\\u0000) characters", field=where)
    if "\ufffd" in value and _not_utf8(escaped.decode("latin-1")):
        raise InvalidInput("is not valid UTF-8 once its %-escapes are decoded", field=where)


def _check_params(request: Request[Any, Any, Any]) -> None:
    scope = request.scope
    path_params: dict[str, Any] = scope.get("path_params") or {}
    for name, value in path_params.items():
        if isinstance(value, str):
            _check_text(f"path:{name}", value, scope.get("raw_path") or b"")
    query = request.query_params
    if not query:
        return
    # Pages outside the API (unsubscribe links, probes) get what mail relays and tools append (utm_*).
    known = None if _PUBLIC.match(request.url.path) else _query_names(request.route_handler, path_params)
    for name, value in query.multi_items():
        if known is not None and name not in known:
            takes = ", ".join(sorted(known)) or "none"
            raise InvalidInput(
                f"unknown query parameter (this operation takes: {takes})", field=f"query:{name}"
            )
        _check_text(f"query:{name}", name + value, scope.get("query_string") or b"")


async def check_request(request: Request[Any, Any, Any]) -> None:
    """Litestar's before_request hook: parameters checked, the body decoded strictly and handed on."""
    _check_params(request)
    data_field = request.route_handler.parsed_data_field
    if data_field is None or request.method in ("GET", "HEAD", "DELETE"):
        return
    state = request._connection_state
    raw = await request.body()
    if not raw.strip():
        if not body_is_optional(request.route_handler):
            raise MalformedBody("this request needs a JSON body")
        # Litestar takes an empty body for no data at all; the defaults are meant.
        raw = state.body = request._body = b"{}"
    value = decode_body(raw, data_field.annotation)
    # Request.json() returns what the scope holds, so the handler's `data` is this value (msgspec's
    # conversion passes an instance of the target type through).
    request._json = state.json = value


T = TypeVar("T")


def patched(stored: dict[str, Any], patch: msgspec.Struct, annotation: type[T]) -> tuple[T, dict[str, Any]]:
    """A stored definition with a PATCH body's set fields over it, checked as `annotation` (a problem naming
    the field otherwise), and the changes themselves."""
    changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
    merged = {**stored, **msgspec.to_builtins(changes)}
    merged.pop("status", None)
    try:
        return msgspec.convert(merged, annotation), changes
    except msgspec.ValidationError as exc:
        problem = validation_problem(str(exc))
        raise InvalidInput(problem["detail"], field=problem.get("field")) from exc
