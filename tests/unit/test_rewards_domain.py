"""Properties of the pure reward decisions: codes, what a code takes off a cart, the order of refusals,
limit periods, variable rewards and the value fixed at issue."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.rewards.domain import (
    ALPHABET,
    CODE_BITS,
    Applied,
    CartFacts,
    CartLine,
    NotApplied,
    Standing,
    VariablePoints,
    apply,
    code_key,
    definition_problems,
    discount_snapshot,
    issue_value,
    most_points_now,
    new_code,
    period_start,
    refusal,
    variable_cost,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CURRENCIES = ("EUR", "USD", "GBP")
SKUS = ("SKU-1", "SKU-2", "SKU-3", "SKU-4")

prefixes = st.none() | st.from_regex(r"[A-Z0-9]{1,12}", fullmatch=True)
bits80 = st.integers(min_value=0, max_value=2**CODE_BITS - 1)


def fixed(value: int) -> Any:
    """A random source that answers `value` (and checks it is asked for 80 bits)."""

    def draw(n: int) -> int:
        assert n == CODE_BITS
        return value

    return draw


def decode(code: str, prefix: str | None) -> int:
    """The 80 bits a code carries (independent of new_code: character i holds bits 5i..5i+4)."""
    body = code[len(prefix) + 1 :] if prefix else code
    chars = body.replace("-", "")
    return sum(ALPHABET.index(ch) << (5 * i) for i, ch in enumerate(chars))


# --- codes -------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(prefix=prefixes, value=bits80)
def test_a_code_is_four_groups_of_four_crockford_characters_after_the_prefix(
    prefix: str | None, value: int
) -> None:
    code = new_code(prefix, fixed(value))
    parts = code.split("-")
    if prefix:
        assert parts[0] == prefix
        parts = parts[1:]
    assert len(parts) == 4 and all(len(part) == 4 for part in parts)
    assert all(ch in ALPHABET for part in parts for ch in part)
    assert not set("ILOU") & set("".join(parts)), "no look-alikes"
    assert len(ALPHABET) == 32 and len(set(ALPHABET)) == 32
    assert len(code) <= 64
    assert decode(code, prefix) == value, "the code carries all 80 bits"


@settings(max_examples=300)
@given(prefix=prefixes, a=bits80, b=bits80)
def test_codes_differ_where_the_bits_differ(prefix: str | None, a: int, b: int) -> None:
    assert (new_code(prefix, fixed(a)) == new_code(prefix, fixed(b))) == (a == b)


@given(prefix=prefixes, value=bits80, bit=st.integers(min_value=0, max_value=CODE_BITS - 1))
def test_every_bit_shows_in_the_code(prefix: str | None, value: int, bit: int) -> None:
    assert new_code(prefix, fixed(value)) != new_code(prefix, fixed(value ^ (1 << bit)))


@given(seed=st.integers(), prefix=prefixes)
def test_draws_from_one_fixed_source_differ(seed: int, prefix: str | None) -> None:
    source = random.Random(seed)
    first, second = new_code(prefix, source.getrandbits), new_code(prefix, source.getrandbits)
    again = random.Random(seed)
    assert first == new_code(prefix, again.getrandbits) and second == new_code(prefix, again.getrandbits)
    assert (first == second) == (decode(first, prefix) == decode(second, prefix))


@settings(max_examples=300)
@given(
    prefix=prefixes,
    value=bits80,
    flips=st.lists(st.booleans(), min_size=40, max_size=40),
    dashes=st.sampled_from(["keep", "drop", "spaces"]),
)
def test_code_key_matches_case_insensitively_and_without_dashes(
    prefix: str | None, value: int, flips: list[bool], dashes: str
) -> None:
    code = new_code(prefix, fixed(value))
    key = code_key(code)
    assert key == code.replace("-", "").upper()
    typed = "".join(ch.lower() if flip else ch for ch, flip in zip(code, flips * 2, strict=False))
    if dashes == "drop":
        typed = typed.replace("-", "")
    elif dashes == "spaces":
        typed = typed.replace("-", " ")
    assert code_key(typed) == key


@given(prefix=prefixes, a=bits80, b=bits80)
def test_different_codes_have_different_keys(prefix: str | None, a: int, b: int) -> None:
    assume(a != b)
    assert code_key(new_code(prefix, fixed(a))) != code_key(new_code(prefix, fixed(b)))


@settings(max_examples=300)
@given(text=st.text(max_size=80))
def test_code_key_of_any_text_is_none_or_a_short_key_of_letters_and_digits(text: str) -> None:
    key = code_key(text)
    if key is not None:
        assert key.isascii() and key.isalnum() and key == key.upper()
        assert 0 < len(key) <= 64


@settings(max_examples=300)
@given(
    text=st.text(alphabet=st.characters(max_codepoint=127), max_size=40).filter(
        lambda t: any(not (ch.isalnum() or ch in "- ") for ch in t)
    )
)
def test_code_key_of_garbage_is_none(text: str) -> None:
    """A character no code has (punctuation, control characters) besides dashes and spaces: no key."""
    assert code_key(text) is None


@given(text=st.text(alphabet="ABC123-", min_size=65, max_size=100))
def test_code_key_of_overlong_text_is_none(text: str) -> None:
    assert code_key(text) is None


@pytest.mark.parametrize("text", ["", "-", "- -", "   "])
def test_code_key_of_nothing_is_none(text: str) -> None:
    assert code_key(text) is None


# Non-ASCII letters whose upper case is ASCII (ß → SS, ſ → S, ı → I, ﬁ → FI) must not make a key that
# matches a real code.
@pytest.mark.parametrize("text", ["ß", "ABCD-ſ", "ı", "ﬁ", "ﬃ" * 30])
def test_code_key_of_non_ascii_letters_is_none(text: str) -> None:
    assert code_key(text) is None


# --- applying a code to a cart -----------------------------------------------------------------------

money = st.builds(
    lambda amount, currency: {"amount": amount, "currency": currency},
    st.integers(min_value=1, max_value=100_000),
    st.sampled_from(CURRENCIES),
)


def _discount(kind: str, currency: str, draw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind, "name": {"en": "A reward"}}

    def in_currency() -> dict[str, Any]:
        return {"amount": draw(st.integers(min_value=1, max_value=100_000)), "currency": currency}

    if draw(st.booleans()):
        d["min_order"] = in_currency()
    if kind == "amount_off" or kind == "points_for_discount":
        d["amount"] = in_currency()
    if kind == "points_for_discount" and draw(st.booleans()):
        d["max_share_percent"] = draw(st.integers(min_value=1, max_value=100))
    if kind == "percent_off":
        d["percent"] = draw(st.integers(min_value=1, max_value=100))
        if draw(st.booleans()):
            d["cap"] = in_currency()
    if kind == "free_product":
        d["sku"] = draw(st.sampled_from(SKUS))
        d["quantity"] = draw(st.integers(min_value=1, max_value=5))
    if kind == "custom":
        d["value"] = in_currency()
    return d


@st.composite
def discounts(draw: Any) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["amount_off", "percent_off", "free_shipping", "free_product", "points_for_discount", "custom"]
        )
    )
    return _discount(kind, draw(st.sampled_from(CURRENCIES)), draw)


lines = st.builds(
    CartLine,
    sku=st.sampled_from(SKUS),
    quantity=st.integers(min_value=1, max_value=5),
    unit_amount=st.integers(min_value=0, max_value=50_000),
)
carts = st.builds(
    CartFacts,
    customer_external_id=st.sampled_from(["c-1", "c-2"]),
    currency=st.sampled_from(CURRENCIES),
    lines=st.lists(lines, min_size=1, max_size=5),
    shipping_amount=st.integers(min_value=0, max_value=5_000),
)


def currency_of(d: dict[str, Any]) -> str | None:
    for name in ("amount", "cap", "min_order"):
        if name in d:
            return str(d[name]["currency"])
    return None


@settings(max_examples=500)
@given(discount=discounts(), cart=carts, owner=st.sampled_from(["c-1", "c-2"]))
def test_a_code_never_takes_more_than_it_applies_to(
    discount: dict[str, Any], cart: CartFacts, owner: str
) -> None:
    result = apply(discount, owner, cart)
    subtotal = sum(line.quantity * line.unit_amount for line in cart.lines)
    currency = currency_of(discount)
    minimum = discount.get("min_order")
    refused = (
        cart.customer_external_id != owner
        or (currency is not None and currency != cart.currency)
        or (minimum is not None and subtotal < minimum["amount"])
        or (discount["kind"] == "free_product" and all(line.sku != discount["sku"] for line in cart.lines))
    )
    if refused:
        assert isinstance(result, NotApplied) and result.reason == "code-not-applicable"
        if cart.customer_external_id != owner:
            assert "another customer" in result.detail
        elif currency is not None and currency != cart.currency:
            assert currency in result.detail
        return
    assert isinstance(result, Applied)
    assert result.amount >= 0
    kind = discount["kind"]
    if kind in ("amount_off", "points_for_discount", "percent_off"):
        assert result.amount <= subtotal, "never more off than the subtotal"
        assert not result.free_shipping and result.free_sku is None
    if kind in ("amount_off", "points_for_discount"):
        assert result.amount == min(
            discount["amount"]["amount"],
            subtotal,
            subtotal * discount.get("max_share_percent", 100) // 100,
        )
    if kind == "percent_off":
        assert result.amount <= subtotal * discount["percent"] // 100
        if "cap" in discount:
            assert result.amount <= discount["cap"]["amount"]
    if kind == "free_shipping":
        assert result.free_shipping and result.amount == cart.shipping_amount
    if kind == "free_product":
        line = next(line for line in cart.lines if line.sku == discount["sku"])
        assert result.free_sku == discount["sku"]
        assert 1 <= result.free_quantity <= min(discount["quantity"], line.quantity)
        assert result.amount == result.free_quantity * line.unit_amount <= line.quantity * line.unit_amount
    if kind == "custom":
        assert result.amount == 0


@given(discount=discounts(), cart=carts)
def test_another_customers_code_is_refused_whatever_the_cart(
    discount: dict[str, Any], cart: CartFacts
) -> None:
    result = apply(discount, "someone-else", cart)
    assert isinstance(result, NotApplied) and result.reason == "code-not-applicable"


@given(discount=discounts(), cart=carts)
def test_a_code_in_another_currency_is_refused(discount: dict[str, Any], cart: CartFacts) -> None:
    currency = currency_of(discount)
    assume(currency is not None and currency != cart.currency)
    result = apply(discount, cart.customer_external_id, cart)
    assert isinstance(result, NotApplied) and result.reason == "code-not-applicable"


@given(data=st.data(), cart=carts, delta=st.integers(min_value=-3, max_value=3))
def test_the_minimum_order_is_the_line_subtotal(data: Any, cart: CartFacts, delta: int) -> None:
    subtotal = sum(line.quantity * line.unit_amount for line in cart.lines)
    minimum = max(1, subtotal + delta)
    discount = {
        "kind": "amount_off",
        "name": {"en": "off"},
        "amount": {
            "amount": data.draw(st.integers(min_value=1, max_value=10_000)),
            "currency": cart.currency,
        },
        "min_order": {"amount": minimum, "currency": cart.currency},
    }
    result = apply(discount, cart.customer_external_id, cart)
    assert isinstance(result, Applied) == (subtotal >= minimum)


# --- refusals ----------------------------------------------------------------------------------------

small = st.integers(min_value=0, max_value=3)
offsets = st.none() | st.integers(min_value=-3, max_value=3).map(lambda h: NOW + timedelta(hours=h))
standings = st.builds(
    Standing,
    status=st.sampled_from(["active", "paused", "archived"]),
    starts_at=offsets,
    ends_at=offsets,
    stock_left=st.none() | small,
    min_tier_rank=st.none() | small,
    min_tier_name=st.just("Gold"),
    customer_tier_rank=st.none() | small,
    debt=small,
    limit_count=st.none() | small,
    used_in_period=st.integers(min_value=0, max_value=4),
)


@settings(max_examples=500)
@given(s=standings)
def test_refusals_come_in_their_order(s: Standing) -> None:
    reasons = [
        (
            "reward-inactive",
            s.status != "active"
            or (s.starts_at is not None and s.starts_at > NOW)
            or (s.ends_at is not None and s.ends_at <= NOW),
        ),
        (
            "tier-too-low",
            s.min_tier_rank is not None
            and (s.customer_tier_rank is None or s.customer_tier_rank < s.min_tier_rank),
        ),
        ("customer-in-debt", s.debt > 0),
        ("out-of-stock", s.stock_left is not None and s.stock_left <= 0),
        ("limit-reached", s.limit_count is not None and s.used_in_period >= s.limit_count),
    ]
    first = next((reason for reason, applies in reasons if applies), None)
    refused = refusal(s, NOW)
    assert (None if refused is None else refused[0]) == first
    if refused is not None:
        assert refused[1]


# --- limit periods -----------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Riga",
    "America/New_York",
    "America/Santiago",  # DST changes at midnight
    "America/Havana",
    "Asia/Tehran",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Apia",  # skipped a whole day
    "Pacific/Chatham",
]
instants = st.datetimes(
    min_value=datetime(2010, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=500)
@given(period=st.sampled_from(["day", "week", "month", "year"]), now=instants, name=st.sampled_from(ZONES))
def test_period_start_is_before_now_in_the_zone_and_idempotent(period: str, now: datetime, name: str) -> None:
    zone = ZoneInfo(name)
    start = period_start(period, now, zone)
    assert start is not None
    assert start <= now
    assert start.tzinfo is zone
    wall = start.replace(tzinfo=None)
    assert (wall.hour, wall.minute, wall.second, wall.microsecond) == (0, 0, 0, 0)
    local = now.astimezone(zone)
    if period == "day":
        assert wall.date() == local.date()
    elif period == "week":
        assert wall.weekday() == 0 and timedelta(0) <= local.date() - wall.date() < timedelta(days=7)
    elif period == "month":
        assert (wall.year, wall.month, wall.day) == (local.year, local.month, 1)
    else:
        assert (wall.year, wall.month, wall.day) == (local.year, 1, 1)
    assert now - start < timedelta(days=367)
    assert period_start(period, start, zone) == start, "idempotent"
    assert period_start(period, start.astimezone(UTC), zone) == start


@given(now=instants, name=st.sampled_from(ZONES))
def test_ever_has_no_period(now: datetime, name: str) -> None:
    assert period_start("ever", now, ZoneInfo(name)) is None


# --- variable rewards --------------------------------------------------------------------------------


@st.composite
def variable_definitions(draw: Any) -> dict[str, Any]:
    step = draw(st.integers(min_value=1, max_value=500))
    low = draw(st.none() | st.integers(min_value=1, max_value=20).map(lambda n: n * step))
    high = draw(st.none() | st.integers(min_value=1, max_value=40).map(lambda n: n * step))
    if low is not None and high is not None and low > high:
        low, high = high, low
    d: dict[str, Any] = {
        "kind": "points_for_discount",
        "name": {"en": "Points off"},
        "points_step": step,
        "step_amount": {"amount": draw(st.integers(min_value=1, max_value=10_000)), "currency": "EUR"},
    }
    if low is not None:
        d["min_points"] = low
    if high is not None:
        d["max_points"] = high
    if draw(st.booleans()):
        d["max_share_percent"] = draw(st.integers(min_value=1, max_value=100))
    assert definition_problems(d, frozenset({"EUR"}), frozenset()) == []
    return d


@settings(max_examples=500)
@given(d=variable_definitions(), points=st.none() | st.integers(min_value=1, max_value=30_000))
def test_variable_cost_is_a_multiple_of_the_step_within_bounds(d: dict[str, Any], points: int | None) -> None:
    step = d["points_step"]
    low, high = d.get("min_points", step), d.get("max_points")
    valid = points is not None and points % step == 0 and points >= low and (high is None or points <= high)
    if not valid:
        with pytest.raises(VariablePoints):
            variable_cost(d, points)
        return
    assert variable_cost(d, points) == points


@settings(max_examples=500)
@given(d=variable_definitions(), available=st.integers(min_value=0, max_value=30_000))
def test_most_points_now_is_the_largest_cost_the_customer_can_spend(
    d: dict[str, Any], available: int
) -> None:
    step = d["points_step"]
    low, high = d.get("min_points", step), d.get("max_points")
    most = most_points_now(d, available)
    affordable = [
        p for p in range(low, available + 1, step) if high is None or p <= high
    ]  # every valid cost the customer holds enough for
    if not affordable:
        assert most is None
        return
    assert most == max(affordable)
    assert most % step == 0 and low <= most <= available
    assert variable_cost(d, most) == most


# --- the value fixed at issue ------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    data=st.data(),
    kind=st.sampled_from(["amount_off", "percent_off", "free_shipping", "free_product", "custom"]),
)
def test_issue_value_of_fixed_kinds(data: Any, kind: str) -> None:
    d = _discount(kind, data.draw(st.sampled_from(CURRENCIES)), data.draw)
    points = data.draw(st.integers(min_value=1, max_value=10_000))
    value = issue_value(d, points)
    if kind == "amount_off":
        assert value == (d["amount"]["amount"], d["amount"]["currency"])
        assert discount_snapshot(d, points)["amount"] == {"amount": value[0], "currency": value[1]}
    elif kind == "custom":
        assert value == (d["value"]["amount"], d["value"]["currency"])
    else:
        assert value is None, "valued at use, from the order"
        assert "amount" not in discount_snapshot(d, points)


@settings(max_examples=300)
@given(d=variable_definitions(), steps=st.integers(min_value=1, max_value=40), cart=carts)
def test_issue_value_of_a_variable_reward_is_steps_times_the_step_amount(
    d: dict[str, Any], steps: int, cart: CartFacts
) -> None:
    points = steps * d["points_step"]
    value = issue_value(d, points)
    assert value == (steps * d["step_amount"]["amount"], "EUR")
    snapshot = discount_snapshot(d, points)
    assert snapshot["amount"] == {"amount": value[0], "currency": "EUR"}
    applied = apply(snapshot, cart.customer_external_id, cart)
    if isinstance(applied, Applied):
        assert applied.amount <= value[0], "a code never gives more than it was bought for"
