"""Hostile input to every operation of the OpenAPI document: never a 5xx.

Each operation starts from its valid sample (samples.py) on a program with one of everything, then gets
every string, number and time of its body, every path and query parameter, and the body as a whole
replaced by what a careless or hostile client sends: NUL characters, invalid UTF-8, nesting a thousand
levels deep, integers beyond 64 bits, times in year 1 and 9999. What no field may hold must be refused
with a 4xx problem naming the field, and change nothing in the database; the rest may be accepted or
refused, but never with a server error.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from service.core.clock import FrozenClock
from tests.conftest import Api, fingerprint
from tests.contract.samples import REQUESTS, path_values, seed

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((ROOT / "openapi" / "openapi.json").read_text())
OPERATIONS = {
    (method.upper(), path): operation
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
}
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT")
# Stand where raw bytes go in after JSON encoding: invalid UTF-8, and nesting too deep to encode.
_MARK = "\u00a7hostile\u00a7"
_DEEP = "\u00a7deep\u00a7"


@dataclass(frozen=True)
class Attempt:
    what: str
    path: str  # with the query
    body: bytes | None
    must_refuse: bool
    names_field: bool = True


def _leaves(value: Any, at: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield at, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*at, index))


def _replaced(value: Any, at: tuple[str | int, ...], new: Any) -> Any:
    if not at:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[at[0]] = _replaced(value[at[0]], at[1:], new)
    return copy


def _encoded(body: Any) -> bytes:
    raw = json.dumps(body, ensure_ascii=False).encode().replace(f'"{_MARK}"'.encode(), b'"a\xffb"')
    return raw.replace(f'"{_DEEP}"'.encode(), b'{"k": [' * 500 + b"1" + b"]}" * 500)


def _deep(levels: int) -> Any:
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def _body_attempts(body: Any) -> Iterator[tuple[str, bytes, bool]]:
    """(what, raw body, must be refused) for every position of the body."""
    for at, leaf in _leaves(body):
        where = "/".join(map(str, at)) or "(body)"
        yield f"{where} nested 1000 deep", _encoded(_replaced(body, at, _DEEP)), True
        yield f"{where} nested 40 deep", _encoded(_replaced(body, at, _deep(40))), True
        if isinstance(leaf, str):
            yield f"{where} with NUL", _encoded(_replaced(body, at, leaf + "\x00x")), True
            yield f"{where} invalid UTF-8", _encoded(_replaced(body, at, _MARK)), True
            if _TIME.match(leaf):
                for moment in (
                    "0001-01-01T00:00:00Z",
                    "0001-01-01T00:00:00+01:00",
                    "9999-12-31T23:59:59",
                    "9999-12-31T23:59:59-12:00",
                ):
                    yield f"{where} = {moment}", _encoded(_replaced(body, at, moment)), True
            for odd in ("", "x" * 5000, "\U0001f600", " padded ", "null"):
                yield f"{where} = {odd[:10]!r}", _encoded(_replaced(body, at, odd)), False
        elif isinstance(leaf, bool) or leaf is None:
            for odd in (1, "true", []):
                yield f"{where} = {odd!r}", _encoded(_replaced(body, at, odd)), False
        elif isinstance(leaf, int):
            for big in (2**63, -(2**63) - 1, 2**64, 10**40):
                yield f"{where} = {big}", _encoded(_replaced(body, at, big)), True
            for odd in (2**63 - 1, -1, 0, 1.5, 1e308, "7"):
                yield f"{where} = {odd!r}", _encoded(_replaced(body, at, odd)), False
        if at:
            yield f"{where} = null", _encoded(_replaced(body, at, None)), False


def attempts(
    method: str, path: str, body: Any, query: dict[str, str], values: dict[str, str]
) -> Iterator[Attempt]:
    operation = OPERATIONS[(method, path)]
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
    declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]

    def url(params: dict[str, str], args: dict[str, str]) -> str:
        filled = path.format(**params)
        return filled + ("?" + "&".join(f"{k}={v}" for k, v in args.items()) if args else "")

    good_params = {name: quote(values[name], safe="") for name in names}
    good_query = {k: quote(v, safe="") for k, v in query.items()}
    raw = _encoded(body) if body is not None else None
    for name in names:
        for hostile, must in (
            ("a%00b", True),
            ("%FF%FE", True),
            ("9223372036854775808", False),
            ("-1", False),
            ("x" * 3000, False),
            ("%2E%2E", False),
        ):
            yield Attempt(
                f"path {name} = {hostile[:20]}", url({**good_params, name: hostile}, good_query), raw, must
            )
    # A cursor of the form the API gives out, naming an id beyond 64 bits.
    huge_cursor = base64.urlsafe_b64encode(b"id:99999999999999999999").decode().rstrip("=")
    for name in declared:
        for hostile, must in (
            ("a%00b", True),
            ("99999999999999999999", False),
            ("-1", False),
            ("%FF", True),
            ("", False),
            (huge_cursor, False),
        ):
            yield Attempt(
                f"query {name} = {hostile}", url(good_params, {**good_query, name: hostile}), raw, must
            )
    # Pages outside the API take what tools append (utm_*); API operations refuse what they do not know.
    public = operation.get("security") == []
    yield Attempt(
        "unknown query parameter", url(good_params, {**good_query, "zz_unknown": "1"}), raw, not public
    )
    if body is not None:
        target = url(good_params, good_query)
        for what, hostile, must in _body_attempts(body):
            # The body as a whole replaced: there is no field to name.
            yield Attempt(what, target, hostile, must, names_field=not what.startswith("(body)"))
        for what, hostile in (
            ("not UTF-8", b'{"a": "\xff"}'),
            ("truncated", b'{"a": '),
            ("an array", b"[]"),
            ("null", b"null"),
        ):
            yield Attempt(f"body {what}", target, hostile, True, names_field=False)
        yield Attempt("body empty", target, b"", False)


def test_every_operation_of_the_document_has_a_sample() -> None:
    assert set(REQUESTS) == set(OPERATIONS), "add the new operations to tests/contract/samples.py"


async def _send(api: Api, method: str, attempt: Attempt, n: int) -> str | None:
    """What is wrong with the answer to `attempt`, if anything."""
    headers = api.headers(**{"Idempotency-Key": f"hostile-{n}", "Content-Type": "application/json"})
    response = await api.client.request(method, attempt.path, content=attempt.body, headers=headers)
    if response.status_code >= 500:
        return f"{attempt.what}: {response.status_code} {response.text[:200]}"
    if not attempt.must_refuse:
        return None
    is_problem = response.headers.get("content-type", "").startswith("application/problem+json")
    if not 400 <= response.status_code < 500 or not is_problem:
        return f"{attempt.what}: should be refused, got {response.status_code} {response.text[:200]}"
    if attempt.names_field and not response.json().get("field"):
        return f"{attempt.what}: the problem names no field: {response.text[:200]}"
    return None


@pytest.mark.parametrize(("method", "path"), sorted(REQUESTS), ids=lambda v: str(v))
async def test_hostile_input_never_answers_a_server_error(
    api: Api, clock: FrozenClock, method: str, path: str
) -> None:
    seeded = await seed(api, clock)
    body, query = REQUESTS[(method, path)]
    tried = list(attempts(method, path, body, query, path_values(path, seeded)))
    refusals = [a for a in tried if a.must_refuse]
    before = fingerprint(api.client)
    failures = [f for n, a in enumerate(refusals) if (f := await _send(api, method, a, n))]
    changed = sorted(t for t, digest in fingerprint(api.client).items() if before.get(t) != digest)
    if changed:
        failures.append(f"refused requests changed {changed}")
    others = [a for a in tried if not a.must_refuse]
    failures += [f for n, a in enumerate(others, len(refusals)) if (f := await _send(api, method, a, n))]
    assert not failures, f"{method} {path}: {len(failures)} of {len(tried)}:\n" + "\n".join(failures[:40])
