"""Properties of money arithmetic: largest-remainder `allocate`, `format_money`, currency exponents."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.core.money import CURRENCY_EXPONENTS, allocate, exponent, format_money, is_currency

weights_st = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=30)


@settings(max_examples=300)
@given(total=st.integers(min_value=0, max_value=10**15), weights=weights_st)
@example(total=1, weights=[1, 1, 1])
@example(total=2, weights=[1, 0, 1])
@example(total=10, weights=[3, 3, 3])
def test_allocate_sums_within_one_of_share_zero_weights_get_zero(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        if total:
            with pytest.raises(ValueError):
                allocate(total, weights)
        else:
            assert allocate(total, weights) == [0] * len(weights)
        return
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert part >= 0
        assert abs(part - exact) < 1
        # Never less than the share rounded down, never more than it rounded up.
        assert exact.__floor__() <= part <= exact.__ceil__()
        if weight == 0:
            assert part == 0
    # Deterministic: same input, same output.
    assert allocate(total, list(weights)) == parts


@settings(max_examples=200)
@given(total=st.integers(min_value=0, max_value=10**9), weights=weights_st)
def test_allocate_ties_go_to_the_earlier_weight(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        return
    parts = allocate(total, weights)
    weight_sum = sum(weights)
    # Of two equal weights, the earlier one never gets less than the later one.
    for i in range(len(weights)):
        for j in range(i + 1, len(weights)):
            if weights[i] == weights[j]:
                assert parts[i] >= parts[j]
    # A larger remainder is never passed over for a smaller one.
    rounded_up = [i for i, w in enumerate(weights) if parts[i] * weight_sum > total * w]
    rounded_down = [
        i for i, w in enumerate(weights) if parts[i] * weight_sum < total * w and (total * w) % weight_sum
    ]
    for up in rounded_up:
        for down in rounded_down:
            rem_up = (total * weights[up]) % weight_sum
            rem_down = (total * weights[down]) % weight_sum
            assert (rem_up, -up) >= (rem_down, -down)


@given(total=st.integers(min_value=1, max_value=10**6), n=st.integers(min_value=0, max_value=5))
def test_allocate_rejects_bad_input(total: int, n: int) -> None:
    with pytest.raises(ValueError):
        allocate(-total, [1] * (n + 1))
    with pytest.raises(ValueError):
        allocate(total, [0] * n)


def test_allocate_examples() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(5, [2, 2, 1]) == [2, 2, 1]
    assert allocate(1, [0, 5, 5]) == [0, 1, 0]
    assert allocate(0, [0, 0]) == [0, 0]
    assert allocate(0, []) == []
    assert allocate(700, [1000, 2000, 4000]) == [100, 200, 400]


def test_currency_exponents() -> None:
    assert exponent("EUR") == 2
    assert exponent("USD") == 2
    assert exponent("JPY") == 0
    assert exponent("KRW") == 0
    assert exponent("KWD") == 3
    assert exponent("BHD") == 3
    assert exponent("CLF") == 4
    assert is_currency("GBP")
    assert not is_currency("XXX")
    assert not is_currency("eur")
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)
    assert set(CURRENCY_EXPONENTS.values()) == {0, 2, 3, 4}


def test_format_money_examples() -> None:
    assert format_money(8450, "EUR") == "EUR 84.50"
    assert format_money(5, "EUR") == "EUR 0.05"
    assert format_money(0, "EUR") == "EUR 0.00"
    assert format_money(-8450, "EUR") == "-EUR 84.50"
    assert format_money(-5, "USD") == "-USD 0.05"
    assert format_money(1500, "JPY") == "JPY 1500"
    assert format_money(-1500, "JPY") == "-JPY 1500"
    assert format_money(1234, "KWD") == "KWD 1.234"
    assert format_money(7, "KWD") == "KWD 0.007"
    assert format_money(12345, "CLF") == "CLF 1.2345"


@settings(max_examples=300)
@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)
def test_format_money_round_trips(amount: int, currency: str) -> None:
    text = format_money(amount, currency)
    sign = -1 if text.startswith("-") else 1
    code, number = text.lstrip("-").split(" ")
    assert code == currency
    exp = exponent(currency)
    if exp:
        units, minor = number.split(".")
        assert len(minor) == exp
        assert sign * (int(units) * 10**exp + int(minor)) == amount
    else:
        assert "." not in number
        assert sign * int(number) == amount
    assert (sign < 0) == (amount < 0)
