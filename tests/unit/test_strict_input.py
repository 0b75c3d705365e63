"""The decoding every request body goes through: what no field may hold is refused with its path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.errors import InvalidInput, MalformedBody, Problem
from service.core.strict_input import (
    INT64_MAX,
    MAX_DEPTH,
    TIME_MAX,
    TIME_MIN,
    _path_in_body,
    _replace_at,
    check_tree,
    decode_body,
    field_name,
    takes_empty_body,
)

# JSON values as msgspec decodes them, with keys and text free of NUL.
_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=20,
)


def _paths(value: Any, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every position in a JSON value (the root included)."""
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*at, index))
    return found


@given(_json)
def test_clean_json_within_the_depth_passes(value: Any) -> None:
    assert check_tree(value) == []


@given(_json, st.data())
def test_a_nul_anywhere_is_refused_with_its_path(value: Any, data: st.DataObject) -> None:
    at = data.draw(st.sampled_from(_paths(value)))
    with pytest.raises(InvalidInput) as refused:
        decode_body(msgspec.json.encode(_replace_at(value, at, "a\x00b")), Any)
    assert refused.value.field == (field_name(at) or None)


def test_a_nul_in_a_key_or_in_a_time_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_body(b'{"properties": {"a\\u0000": 1}}', Any)
    assert refused.value.field == "properties.a\x00"
    with pytest.raises(InvalidInput) as refused:  # msgspec would read it as 2027-01-01
        decode_body(b'{"at": "2027-01-01T00:00:00\\u0000x"}', dict[str, datetime])
    assert refused.value.field == "at"


def test_an_escaped_backslash_before_u0000_is_text_not_nul() -> None:
    assert decode_body(b'{"a": "C:\\\\u0000"}', Any) == {"a": "C:\\u0000"}


@given(_json, st.data(), st.sampled_from([2**63, -(2**63) - 1, 10**30]))
def test_an_integer_beyond_64_bits_is_refused_with_its_path(
    value: Any, data: st.DataObject, big: int
) -> None:
    path = data.draw(st.sampled_from(_paths(value)))
    with pytest.raises(InvalidInput) as refused:
        check_tree(_replace_at(value, path, big))
    assert refused.value.field == (field_name(path) or None)


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_nesting_is_allowed_to_the_documented_depth_and_no_further() -> None:
    assert check_tree(_nested(MAX_DEPTH)) == []
    with pytest.raises(InvalidInput, match=f"deeper than {MAX_DEPTH}"):
        check_tree(_nested(MAX_DEPTH + 1))


@given(st.integers(MAX_DEPTH + 1, 3000), st.lists(st.sampled_from(["list", "object"]), min_size=1))
def test_the_scan_of_a_too_deep_body_names_where_it_gets_too_deep(depth: int, kinds: list[str]) -> None:
    raw = b'{"before": [1, {"x": "[{"}], "deep": ' + b"".join(
        b"[" if kinds[level % len(kinds)] == "list" else b'{"a\\"b": ' for level in range(depth)
    )
    path = _path_in_body(raw, depth=MAX_DEPTH)
    assert len(path) == MAX_DEPTH
    assert path[0] == "deep"
    assert all(p in (0, 'a"b') for p in path[1:])


def test_a_body_deeper_than_the_decoder_can_go_is_refused_with_its_path() -> None:
    raw = b'{"properties": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    with pytest.raises(InvalidInput) as refused:
        decode_body(raw, dict[str, Any])
    assert refused.value.field == "properties.a" + "[0]" * (MAX_DEPTH - 2)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-12))),
        TIME_MAX,
        TIME_MIN - timedelta(microseconds=1),
        datetime(1970, 1, 1),  # no offset: any zone could take it before 1970
    ],
)
def test_times_outside_the_range_are_refused(moment: datetime) -> None:
    with pytest.raises(InvalidInput, match="1970-01-01 to 2200-01-01"):
        check_tree({"at": moment})


def test_times_inside_the_range_pass() -> None:
    assert check_tree([TIME_MIN, TIME_MAX - timedelta(microseconds=1), datetime(2026, 3, 1)]) == []


def test_dates_outside_the_range_are_refused() -> None:
    with pytest.raises(InvalidInput):
        check_tree(date(1, 1, 1))
    assert check_tree(date(1990, 5, 17)) == []


class Rates(msgspec.Struct, forbid_unknown_fields=True):
    rates: dict[str, Decimal]
    multiplier: Decimal = Decimal(1)


def test_a_decimal_is_a_string_or_an_integer_never_a_float() -> None:
    assert decode_body(b'{"rates": {"EUR": "1.5", "USD": 2}}', Rates).rates == {
        "EUR": Decimal("1.5"),
        "USD": Decimal(2),
    }
    with pytest.raises(InvalidInput) as refused:
        decode_body(b'{"rates": {"EUR": 1.5}}', Rates)
    assert refused.value.field == "rates.EUR"
    for odd in (b'"NaN"', b'"Infinity"', b'"1e400"', b'"0.0000000000000000001"'):
        with pytest.raises(InvalidInput):
            decode_body(b'{"rates": {"EUR": ' + odd + b"}}", Rates)


def test_bodies_that_are_not_json_are_malformed() -> None:
    for raw in (b"{", b'"\\ud800"', b"[1, 2"):
        with pytest.raises(MalformedBody):
            decode_body(raw, Any)


def test_a_bad_dict_entry_before_invalid_utf8_is_still_a_4xx() -> None:
    # The entry's key is looked for by decoding the body loosely, which the bad bytes stop: the dict is named.
    with pytest.raises(Problem) as refused:
        decode_body(b'{"rates": {"EUR": "x"}, "multiplier": "\xff1"}', Rates)
    assert refused.value.status == 422 and refused.value.field == "rates"


def test_invalid_utf8_names_the_string_it_is_in() -> None:
    for raw, field in (
        (b'{"rates": {"EUR": "1\xff"}}', "rates.EUR"),
        (b'{"rates": {"E\xffR": "1"}}', "rates.E?R"),
        (b'[{"a": 1}, {"b": ["x", "\xfe"]}]', "[1].b[1]"),
    ):
        with pytest.raises(MalformedBody) as refused:
            decode_body(raw, Any)
        assert refused.value.field == field.replace("E?R", "?"), raw


def test_a_wrong_type_names_the_field() -> None:
    with pytest.raises(Problem) as refused:
        decode_body(b'{"rates": {"EUR": true}}', Rates)
    assert refused.value.status == 422 and refused.value.field == "rates.EUR"


def test_an_empty_body_stands_for_the_defaults_only_when_there_are_defaults() -> None:
    class AllDefaults(msgspec.Struct):
        overlap_seconds: int = 60

    assert takes_empty_body(AllDefaults)
    assert not takes_empty_body(Rates)


def test_field_names_are_json_paths() -> None:
    assert field_name(("lines", 0, "sku")) == "lines[0].sku"
    assert field_name((3, "a")) == "[3].a"
    assert field_name(()) == ""
    assert INT64_MAX == 2**63 - 1
