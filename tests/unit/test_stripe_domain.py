"""Properties of the Stripe integration's pure decisions: how a Stripe refund maps onto its order's money,
how a Checkout Session and its line items become an order, what an event asks for, signatures' timestamps
and keys."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.stripe import domain
from service.stripe.domain import (
    Act,
    CheckoutLine,
    act_on,
    backoff_seconds,
    checkout,
    checkout_line,
    key_facts,
    merge_lines,
    new_customer_id,
    order_refund_amount,
    promotion_codes,
    signature_timestamp,
    timestamp_problem,
)

# --- order_refund_amount -------------------------------------------------------------------------------

amounts = st.integers(min_value=1, max_value=10**9)


def _apply(parts: list[int], charged: int, order_total: int, order_refunded: int = 0) -> list[int]:
    """Stripe refunds `parts` one after the other: the order's share of each, as the worker measures them."""
    before, refunded, shares = 0, order_refunded, []
    for part in parts:
        share = order_refund_amount(part, before, charged, order_total, refunded)
        shares.append(share)
        before += part
        refunded += share
    return shares


@st.composite
def splits(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """A charge (tax included), its order's total (at most the charge, or more with shipping not taxed)
    and a split of the whole charge into refunds."""
    charged = draw(st.integers(min_value=1, max_value=10**7))
    order_total = draw(st.integers(min_value=0, max_value=2 * charged))
    cuts = sorted(draw(st.lists(st.integers(min_value=1, max_value=charged), max_size=12)))
    points = [0, *cuts, charged]
    parts = [b - a for a, b in itertools.pairwise(points) if b > a]
    return charged, order_total, parts


@settings(max_examples=400)
@given(splits())
def test_partial_refunds_of_the_whole_charge_sum_exactly_to_the_order(
    case: tuple[int, int, list[int]],
) -> None:
    charged, order_total, parts = case
    shares = _apply(parts, charged, order_total)
    assert sum(shares) == order_total
    assert all(share >= 0 for share in shares)


@settings(max_examples=300)
@given(splits())
def test_each_share_is_its_proportion_rounded_cumulatively(case: tuple[int, int, list[int]]) -> None:
    charged, order_total, parts = case
    shares = _apply(parts, charged, order_total)
    running = 0
    for i, _ in enumerate(parts):
        running += shares[i]
        refunded = sum(parts[: i + 1])
        # the running total is the exact proportion, rounded down (the last one exact)
        assert running == (order_total if refunded == charged else refunded * order_total // charged)


@settings(max_examples=300)
@given(
    charged=st.integers(min_value=1, max_value=10**7),
    order_total=st.integers(min_value=0, max_value=10**7),
    parts=st.lists(amounts, min_size=1, max_size=8),
    shop_refunded=st.integers(min_value=0, max_value=10**7),
)
def test_never_more_than_what_the_order_has_left(
    charged: int, order_total: int, parts: list[int], shop_refunded: int
) -> None:
    """Refunds beyond the charge, and refunds the shop made through the API before: the order never gives
    back more than it has left."""
    shop_refunded = min(shop_refunded, order_total)
    shares = _apply(parts, charged, order_total, shop_refunded)
    refunded = shop_refunded
    for share in shares:
        assert 0 <= share <= order_total - refunded
        refunded += share
    assert refunded <= order_total
    if sum(parts) >= charged:
        assert refunded == order_total  # Stripe gave everything back: so does the order


@settings(max_examples=300)
@given(
    charged=st.integers(min_value=1, max_value=10**7),
    order_total=st.integers(min_value=0, max_value=10**7),
    before=st.integers(min_value=0, max_value=10**7),
    a=st.integers(min_value=0, max_value=10**7),
    b=st.integers(min_value=0, max_value=10**7),
)
def test_monotone_in_the_refund(charged: int, order_total: int, before: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    refunded = min(before * order_total // charged, order_total)
    assert order_refund_amount(low, before, charged, order_total, refunded) <= order_refund_amount(
        high, before, charged, order_total, refunded
    )


@given(refund=st.integers(min_value=0, max_value=10**7), total=st.integers(min_value=0, max_value=10**7))
def test_nothing_charged_refunds_the_amount_up_to_what_is_left(refund: int, total: int) -> None:
    assert order_refund_amount(refund, 0, 0, total, 0) == min(refund, total)
    assert order_refund_amount(refund, 0, 0, total, total) == 0


def test_refund_examples_with_tax() -> None:
    # 3000 of goods, 600 of tax: 3600 charged
    assert _apply([1800, 1800], 3600, 3000) == [1500, 1500]
    assert _apply([1000, 1000, 1600], 3600, 3000) == [833, 833, 1334]
    assert _apply([1, 1, 1], 3, 1) == [0, 0, 1]
    assert _apply([99_999], 3600, 3000) == [3000]
    assert _apply([1800, 99_999, 5], 3600, 3000) == [1500, 1500, 0]


# --- checkout lines ------------------------------------------------------------------------------------


def _item(
    subtotal: int,
    quantity: Any = 1,
    *,
    product: Any = "prod_1",
    metadata: dict[str, Any] | None = None,
    name: str | None = "Tee",
    description: str | None = "Tee (desc)",
    price: Any = "default",
) -> dict[str, Any]:
    if isinstance(product, str) and metadata is not None:
        product = {"id": product, "name": name, "metadata": metadata}
    item: dict[str, Any] = {
        "id": "li_1",
        "quantity": quantity,
        "amount_subtotal": subtotal,
        "description": description,
        "price": {"id": "price_1", "product": product} if price == "default" else price,
    }
    return item


@given(
    subtotal=st.integers(min_value=0, max_value=10**9),
    quantity=st.integers(min_value=1, max_value=10_000),
)
def test_a_line_keeps_its_subtotal(subtotal: int, quantity: int) -> None:
    line = checkout_line(_item(subtotal, quantity, metadata={"sku": "TEE"}), "sku", "category")
    assert line.quantity * line.unit_amount == subtotal
    if subtotal % quantity:
        assert (line.quantity, line.unit_amount) == (1, subtotal)  # indivisible: one unit of the whole
    else:
        assert (line.quantity, line.unit_amount) == (quantity, subtotal // quantity)


def test_a_line_reads_sku_category_and_name_from_the_products_metadata() -> None:
    line = checkout_line(
        _item(3000, 2, metadata={"sku": "TEE-1", "category": " shirts ", "ref": "R9"}), "sku", "category"
    )
    assert line == CheckoutLine("TEE-1", 2, 1500, "Tee", "shirts")
    other_keys = checkout_line(_item(3000, 2, metadata={"ref": "R9", "cat": "c"}), "ref", "cat")
    assert (other_keys.sku, other_keys.category) == ("R9", "c")


@pytest.mark.parametrize(
    ("item", "sku", "name"),
    [
        (_item(1000, metadata={}), "prod_1", "Tee"),  # no metadata: the product's id
        (_item(1000, metadata={"sku": "   "}), "prod_1", "Tee"),  # blank: as none
        (_item(1000, metadata={"sku": 7}), "prod_1", "Tee"),  # not text
        (_item(1000, product="prod_2"), "prod_2", "Tee (desc)"),  # not expanded: its id, the description
        (_item(1000, price=None), "li_1", "Tee (desc)"),  # no price at all: the line's id
        (_item(1000, price={"id": "price_9", "product": None}), "price_9", "Tee (desc)"),
        (_item(1000, metadata={}, name=None, description=None), "prod_1", None),
    ],
)
def test_missing_product_metadata_falls_back_to_the_product_id(
    item: dict[str, Any], sku: str, name: str | None
) -> None:
    line = checkout_line(item, "sku", "category")
    assert (line.sku, line.name, line.category) == (sku, name, None)


@pytest.mark.parametrize("quantity", [None, 0, -3, "2", True])
def test_a_line_without_a_sensible_quantity_is_one_unit(quantity: Any) -> None:
    line = checkout_line(_item(900, quantity, metadata={"sku": "A"}), "sku", "category")
    assert (line.quantity, line.unit_amount) == (1, 900)


def test_long_texts_are_cut() -> None:
    line = checkout_line(
        _item(100, metadata={"sku": "S" * 100, "category": "C" * 100}, name="N" * 300), "sku", "category"
    )
    assert (len(line.sku), len(line.category or ""), len(line.name or "")) == (64, 64, 200)


lines = st.builds(
    CheckoutLine,
    sku=st.sampled_from(["A", "B", "C"]),
    quantity=st.integers(min_value=1, max_value=50),
    unit_amount=st.integers(min_value=0, max_value=100_000),
    name=st.none(),
    category=st.none(),
)


@settings(max_examples=300)
@given(st.lists(lines, max_size=10))
def test_merged_lines_keep_the_money_and_name_each_sku_once(given_lines: list[CheckoutLine]) -> None:
    merged = merge_lines(given_lines)
    skus = [line.sku for line in merged]
    assert len(skus) == len(set(skus)) and skus == list(dict.fromkeys(line.sku for line in given_lines))
    for sku in skus:
        mine = [line for line in given_lines if line.sku == sku]
        [one] = [line for line in merged if line.sku == sku]
        amount = sum(line.quantity * line.unit_amount for line in mine)
        quantity = sum(line.quantity for line in mine)
        assert one.quantity * one.unit_amount == amount
        assert (one.quantity, one.unit_amount) in ((quantity, amount // quantity), (1, amount))
        if amount % quantity == 0:
            assert one.quantity == quantity


@settings(max_examples=200)
@given(st.lists(lines, max_size=8), st.randoms(use_true_random=False))
def test_merging_does_not_depend_on_the_order_of_the_lines(given_lines: list[CheckoutLine], rnd: Any) -> None:
    shuffled = list(given_lines)
    rnd.shuffle(shuffled)
    by_sku = {line.sku: (line.quantity, line.unit_amount) for line in merge_lines(given_lines)}
    assert by_sku == {line.sku: (line.quantity, line.unit_amount) for line in merge_lines(shuffled)}


items = st.builds(
    lambda sku, quantity, subtotal: _item(subtotal, quantity, product=f"prod_{sku}", metadata={"sku": sku}),
    sku=st.sampled_from(["A", "B"]),
    quantity=st.integers(min_value=1, max_value=20),
    subtotal=st.integers(min_value=0, max_value=10**6),
)


@settings(max_examples=300)
@given(st.lists(items, max_size=8))
def test_a_sessions_items_of_one_product_keep_every_unit(given_items: list[dict[str, Any]]) -> None:
    facts = checkout(_session(), given_items, "sku", "category")
    assert sum(x.quantity * x.unit_amount for x in facts.lines) == sum(
        i["amount_subtotal"] for i in given_items
    )
    for line in facts.lines:
        mine = [i for i in given_items if i["price"]["product"]["metadata"]["sku"] == line.sku]
        quantity = sum(i["quantity"] for i in mine)
        amount = sum(i["amount_subtotal"] for i in mine)
        assert line.quantity * line.unit_amount == amount
        assert line.quantity == (quantity if amount % quantity == 0 else 1)


def test_duplicate_products_in_a_session_sum_before_dividing() -> None:
    # 3 for 1000 (not divisible) and 1 for 200: 4 units of 300, not 2 units of 600
    items = [_item(1000, 3, metadata={"sku": "A"}), _item(200, 1, metadata={"sku": "A"})]
    [line] = checkout(_session(), items, "sku", "category").lines
    assert (line.quantity, line.unit_amount) == (4, 300)
    odd = [_item(1000, 3, metadata={"sku": "A"}), _item(501, 1, metadata={"sku": "A"})]
    [line] = checkout(_session(), odd, "sku", "category").lines
    assert (line.quantity, line.unit_amount) == (1, 1501)


def test_metadata_that_is_no_mapping_is_ignored() -> None:
    item = _item(1000, 1, product={"id": "prod_x", "name": "X", "metadata": ["sku", "A"]})
    assert checkout_line(item, "sku", "category").sku == "prod_x"


def test_duplicate_products_merge() -> None:
    a = CheckoutLine("TEE", 2, 1500, "Tee", "shirts")
    b = CheckoutLine("TEE", 1, 1500, "Tee again", None)
    c = CheckoutLine("TEE", 1, 1000, None, None)
    assert merge_lines([a, b]) == (CheckoutLine("TEE", 3, 1500, "Tee", "shirts"),)
    assert merge_lines([a, c]) == (CheckoutLine("TEE", 1, 4000, "Tee", "shirts"),)  # 4000 / 3 is not whole
    # one unit of 1 and one of 0 make 1 (not whole per unit); then one of 2: three units of 1 in all
    x, y, z = (
        CheckoutLine("A", 1, 1, None, None),
        CheckoutLine("A", 1, 0, None, None),
        CheckoutLine("A", 1, 2, None, None),
    )
    assert merge_lines([x, y, z]) == (CheckoutLine("A", 3, 1, None, None),)
    assert merge_lines([a, CheckoutLine("CAP", 1, 500, None, None), b])[1].sku == "CAP"


# --- checkout ------------------------------------------------------------------------------------------


def _session(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "cs_1",
        "created": 1_767_225_600,
        "currency": "eur",
        "amount_total": 3600,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 600},
        "payment_intent": "pi_1",
        "customer": None,
        "customer_details": {"email": "Ann@Example.com", "name": "Ann"},
        "metadata": {},
        "discounts": [],
    }
    base.update(fields)
    return base


def test_a_session_becomes_an_order_without_tax() -> None:
    items = [_item(3000, 2, metadata={"sku": "TEE"}), _item(500, 1, product="prod_cap", metadata={})]
    facts = checkout(_session(), items, "sku", "category")
    assert facts.session_id == "cs_1" and facts.currency == "EUR"
    assert facts.placed_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert [(x.sku, x.quantity, x.unit_amount) for x in facts.lines] == [
        ("TEE", 2, 1500),
        ("prod_cap", 1, 500),
    ]
    assert facts.total_amount == 3500 and facts.charged_amount == 3600
    assert (facts.payment_intent, facts.email, facts.name) == ("pi_1", "Ann@Example.com", "Ann")
    assert facts.customer_hint is None and facts.stripe_customer is None


@given(
    subtotal=st.integers(min_value=0, max_value=10**7),
    discount=st.integers(min_value=0, max_value=2 * 10**7),
    shipping=st.integers(min_value=0, max_value=10**6),
)
def test_the_total_is_lines_less_discount_plus_shipping(subtotal: int, discount: int, shipping: int) -> None:
    details = {"amount_discount": discount, "amount_shipping": shipping, "amount_tax": 123}
    facts = checkout(_session(total_details=details), [_item(subtotal, metadata={})], "sku", "category")
    assert facts.discount_amount == min(discount, subtotal)
    assert facts.total_amount == subtotal - min(discount, subtotal) + shipping >= 0


def test_expanded_fields_give_their_ids_and_the_customer_hint_order() -> None:
    customer = {"id": "cus_1", "email": "c@example.com", "metadata": {"encore_customer_id": "from-customer"}}
    facts = checkout(
        _session(payment_intent={"id": "pi_9"}, customer=customer, customer_details=None),
        [],
        "sku",
        "category",
    )
    assert (facts.payment_intent, facts.stripe_customer) == ("pi_9", "cus_1")
    assert facts.customer_hint == "from-customer" and facts.email == "c@example.com"
    on_session = checkout(
        _session(customer=customer, metadata={"encore_customer_id": " from-session "}), [], "sku", "category"
    )
    assert on_session.customer_hint == "from-session"
    guest = checkout(_session(customer_details={}, customer_email="g@example.com"), [], "sku", "category")
    assert guest.email == "g@example.com" and guest.name is None
    assert (
        checkout(_session(customer="cus_2", payment_intent=None), [], "sku", "category").stripe_customer
        == "cus_2"
    )


def test_promotion_codes_from_discounts_and_the_breakdown() -> None:
    session = _session(
        discounts=[{"promotion_code": "promo_1"}, {"coupon": "C", "promotion_code": None}, "junk"],
        total_details={
            "breakdown": {
                "discounts": [
                    {"amount": 100, "discount": {"promotion_code": {"id": "promo_2"}}},
                    {"amount": 100, "discount": {"promotion_code": "promo_1"}},
                    {"amount": 1, "discount": None},
                ]
            }
        },
    )
    assert promotion_codes(session) == ("promo_1", "promo_2")
    assert promotion_codes(_session(discounts=None, total_details=None)) == ()


@pytest.mark.parametrize(
    ("stripe_customer", "email", "expected"),
    [("cus_1", "A@B.c", "cus_1"), (None, "Ann@Example.COM", "email:ann@example.com"), (None, None, None)],
)
def test_new_customer_ids(stripe_customer: str | None, email: str | None, expected: str | None) -> None:
    assert new_customer_id(stripe_customer, email) == expected


# --- act_on --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        ("checkout.session.completed", {"payment_status": "paid"}, "record"),
        ("checkout.session.completed", {"payment_status": "no_payment_required"}, "record"),
        ("checkout.session.completed", {"payment_status": "unpaid"}, "ignore"),
        ("checkout.session.completed", {}, "ignore"),
        ("checkout.session.async_payment_succeeded", {"payment_status": "paid"}, "record"),
        ("checkout.session.async_payment_failed", {}, "ignore"),
        ("checkout.session.expired", {}, "ignore"),
        ("refund.created", {"status": "succeeded"}, "refund"),
        ("refund.updated", {"status": "succeeded"}, "refund"),
        ("refund.created", {"status": "pending"}, "ignore"),
        ("refund.updated", {"status": "requires_action"}, "ignore"),
        ("refund.updated", {"status": "failed"}, "ignore"),
        ("refund.updated", {"status": "canceled"}, "ignore"),
        ("charge.refunded", {}, "refund"),
        ("charge.dispute.closed", {"status": "lost"}, "reverse"),
        ("charge.dispute.closed", {"status": "won"}, "ignore"),
        ("charge.dispute.closed", {"status": "warning_closed"}, "ignore"),
        ("charge.dispute.created", {"status": "needs_response"}, "ignore"),
        ("customer.created", {}, "ignore"),
    ],
)
def test_what_each_event_asks_for(kind: str, obj: dict[str, Any], expected: str) -> None:
    for live in (False, True):
        act = act_on(kind, obj, connection_live=live, event_live=live)
        assert act.kind == expected
        assert (act.why != "") == (expected == "ignore")


def test_an_unpaid_checkout_says_what_will_record_it() -> None:
    act = act_on(
        "checkout.session.completed", {"payment_status": "unpaid"}, connection_live=False, event_live=False
    )
    assert "async_payment_succeeded" in act.why


@given(
    kind=st.sampled_from(domain.HANDLED),
    status=st.sampled_from(["paid", "succeeded", "lost"]),
    live=st.booleans(),
)
def test_an_event_of_the_other_mode_is_ignored_whatever_it_is(kind: str, status: str, live: bool) -> None:
    act = act_on(
        kind, {"payment_status": status, "status": status}, connection_live=live, event_live=not live
    )
    assert act == Act(
        "ignore",
        f"a {'live' if not live else 'test'}-mode event on a {'live' if live else 'test'}-mode connection",
    )


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff_seconds(n) for n in (0, 1, 2, 3, 4)] == [10, 10, 20, 40, 80]
    assert backoff_seconds(10_000) == domain.MAX_BACKOFF_SECONDS


# --- signatures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1700000000,v1=abc", 1700000000),
        ("v1=abc, t=1700000000", None),  # " t" is not `t` to the SDK: it would find no timestamp
        ("t=1700000000,v1=abc,v0=def", 1700000000),
        ("v1=abc", None),
        ("t=,v1=abc", None),
        ("t=-5,v1=abc", None),
        ("t=12.5,v1=abc", None),
        ("t=1e9,v1=abc", None),
        ("t=" + "9" * 13 + ",v1=abc", None),
        ("t=１２３,v1=abc", None),  # full-width digits are digits to str.isdigit, not to int's users
        ("", None),
        ("garbage", None),
    ],
)
def test_signature_timestamp(header: str, expected: int | None) -> None:
    assert signature_timestamp(header) == expected


@given(st.text(max_size=60))
def test_signature_timestamp_never_raises(header: str) -> None:
    found = signature_timestamp(header)
    assert found is None or (isinstance(found, int) and 0 <= found < 10**12)


@given(
    now=st.integers(min_value=10**9, max_value=4 * 10**9),
    offset=st.integers(min_value=-(10**6), max_value=10**6),
)
def test_timestamp_problem_refuses_only_the_future_beyond_the_tolerance(now: int, offset: int) -> None:
    problem = timestamp_problem(now + offset, float(now))
    if offset > domain.TOLERANCE_SECONDS:
        assert problem is not None and "future" in problem
    else:
        assert problem is None  # an old one is the SDK's to refuse


def test_timestamp_problem_without_a_timestamp() -> None:
    assert "no timestamp" in (timestamp_problem(None, 0.0) or "")
    assert timestamp_problem(1000 + 300, 1000.0) is None
    assert timestamp_problem(1000 + 301, 1000.0) is not None


# --- keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "facts"),
    [
        ("sk_test_abcdefgh", ("secret", "test")),
        ("sk_live_ABCdef123_xyz", ("secret", "live")),
        ("rk_test_12345678", ("restricted", "test")),
        ("rk_live_12345678", ("restricted", "live")),
        ("sk_test_short", None),
        ("pk_test_abcdefgh", None),
        ("sk_prod_abcdefgh", None),
        ("sk_test_abcdefgh ", None),
        ("sk_test_abc-defgh", None),
        ("sk_test_abcdefgh\n", None),
        ("whsec_abcdefgh", None),
        ("", None),
        ("sk_test_" + "a" * 241, None),
    ],
)
def test_key_facts(key: str, facts: tuple[str, str] | None) -> None:
    assert key_facts(key) == facts


@given(st.text(max_size=40))
def test_key_facts_only_for_stripe_keys(key: str) -> None:
    found = key_facts(key)
    if found is not None:
        assert key.startswith(("sk_", "rk_")) and ("_test_" in key[:8] or "_live_" in key[:8])
