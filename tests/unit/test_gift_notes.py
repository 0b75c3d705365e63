"""Surprise gifts in messaging, pure: the personal note (shipped in six locales, or a marketer's, bounded
in the sandbox), the `surprise` message's defaults for each mix of gifts, and its variables built from a
gift.granted event."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.messaging import notes, rendering
from service.messaging.bounds import RenderLimit
from service.messaging.catalogue import LOCALES, MESSAGE_TYPES
from service.messaging.rendering import TemplateProblem
from service.messaging.schemas import MessagingSettings
from service.messaging.variables import code_source, customer_vars, message_vars

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RIGA = ZoneInfo("Europe/Riga")
SHOES = {"name": "Trail shoes", "sku": "SHOE-1"}
PROGRAM = {"name": "Sample Shop"}


def _customer(name: str | None = "Ada Lovelace") -> dict[str, Any]:
    return customer_vars({"name": name, "email": "ada@example.com", "external_id": "ada", "points": 0})


def _note(locale: str | None, source: str | None = None, **given: Any) -> str:
    return notes.render_note(
        locale,
        "en",
        source,
        customer=given.get("customer", _customer()),
        item=given.get("item", SHOES),
        order=given.get("order"),
        program=PROGRAM,
    )


# --- the shipped notes ---------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_the_shipped_note_names_the_customer_and_what_they_bought(locale: str) -> None:
    text = _note(locale)
    assert "Ada" in text and "Trail shoes" in text and "Sample Shop" in text
    assert text == text.strip() and "\n\n\n" not in text and "None" not in text
    assert len(text) < 600, "a card, not a letter"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_shipped_note_reads_without_an_item_and_without_a_name(locale: str) -> None:
    without_item = _note(locale, item=None)
    assert "Ada" in without_item and "Trail" not in without_item and "None" not in without_item
    nameless = _note(locale, customer=_customer(None), item=None)
    assert "None" not in nameless and "Ada" not in nameless and "Sample Shop" in nameless
    first_line = nameless.splitlines()[0]
    assert not first_line.startswith((",", " ")) and ", ," not in first_line and " !" not in first_line
    assert "Trail shoes" in _note(locale, customer=_customer(None)), "an item, no name"


def test_a_latvian_name_is_addressed_in_the_vocative_and_other_locales_keep_it() -> None:
    janis = _customer("Jānis Bērziņš")
    assert _note("lv", customer=janis).startswith("Sveiki, Jāni!")
    assert "Jānis" in _note("en", customer=janis)


def test_the_note_follows_the_customers_language_or_the_programs_default() -> None:
    assert _note("en-GB").startswith("Dear Ada")
    assert _note("ru-RU").startswith("Здравствуйте, Ada!")
    assert notes.render_note(
        "de", "tr", None, customer=_customer(), item=SHOES, order=None, program=PROGRAM
    ).startswith("Sevgili Ada"), "no German templates: the program's default locale"
    assert notes.render_note(
        None, "cy", None, customer=_customer(), item=None, order=None, program=PROGRAM
    ).startswith("Annwyl Ada")


def test_the_note_is_plain_text_not_escaped() -> None:
    text = _note("en", item={"name": "Tom & Jerry <mug>", "sku": "M"})
    assert "Tom & Jerry <mug>" in text and "&amp;" not in text


# --- a marketer's note ---------------------------------------------------------------------------

OWN = (
    "{{ vocative(customer.first_name) or 'Hello' }}, {% if item %}enjoy the {{ item.name }}"
    "{% else %}thank you{% endif %}{% if order %} (order {{ order.number }}){% endif %}!\n"
    "— {{ program.name }}"
)


def test_a_marketers_note_is_checked_and_rendered_in_the_customers_language() -> None:
    notes.check_note(OWN)
    notes.check_note(OWN, has_order=False)
    order = {"number": "1001"}
    assert _note("lv", OWN, customer=_customer("Jānis Bērziņš"), order=order) == (
        "Jāni, enjoy the Trail shoes (order 1001)!\n— Sample Shop"
    )
    assert _note("en", OWN, customer=_customer(None), item=None) == "Hello, thank you!\n— Sample Shop"
    assert _note("en", "  \n\n\n{{ customer.first_name }}  \n\n\n\nx  \n") == "Ada\n\nx", "tidied"


def test_the_compiled_note_is_cached_per_source() -> None:
    assert notes._compiled(OWN) is notes._compiled(OWN)


def test_a_note_needing_an_order_is_refused_for_a_rule_without_one() -> None:
    source = "Thank you for the {{ item.name }}!"
    notes.check_note(source)
    with pytest.raises(TemplateProblem) as problem:
        notes.check_note(source, has_order=False)
    assert problem.value.part == "text" and problem.value.line == 1


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("Hello {{ secret }}", "unknown variable 'secret'"),
        ("Hello\n{% if %}", "Expected an expression"),
        ("{{ customer.__class__.__mro__ }}", "SecurityError"),
        ("x" * 2_001, "longer than 2,000 characters"),
        ("{{ customer.first_name.upper() ~ undefined_thing }}", "unknown variable"),
        ("{{ range(5) | sum(start=[]) }}", "adds numbers only"),
    ],
)
def test_a_note_that_cannot_work_is_refused_with_its_reason(source: str, error: str) -> None:
    with pytest.raises(TemplateProblem) as problem:
        notes.check_note(source)
    assert error in problem.value.error and problem.value.part == "text"


HOSTILE = [
    "{% for i in range(10**9) %}x{% endfor %}",  # the sandbox's own range limit
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 'x' * 5000 }}",  # within the sandbox's limits, over a note's
    "{% for i in range(90000) %}{{ (i ~ 'abc') | upper | reverse | title }}{% endfor %}",
    "{{ '%0999999d' % 1 }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
]


@pytest.mark.parametrize("source", HOSTILE)
def test_a_hostile_note_stops_fast_and_cleanly(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateProblem) as problem:
        notes.check_note(source)
    assert problem.value.part == "text" and problem.value.error
    with pytest.raises((TemplateProblem, RenderLimit)):
        _note("en", source)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("source", "limit"),
    [
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "loop_iterations",
        ),
        ("{{ 'x' * 10**9 }}", "value_size"),
        ("{{ 'x' * 5000 }}", "output"),
    ],
)
def test_the_limit_a_note_went_over_is_named(source: str, limit: str) -> None:
    with pytest.raises(TemplateProblem) as problem:
        notes.check_note(source)
    assert problem.value.limit in (limit, "cpu_time")
    with pytest.raises(RenderLimit) as rendered:
        _note("en", source)
    assert rendered.value.limit in (limit, "cpu_time")


def test_a_note_that_fails_as_it_renders_says_where() -> None:
    with pytest.raises(TemplateProblem) as problem:
        _note("en", "line one\n{{ item.name.nope.deeper }}")
    assert problem.value.line == 2


# --- the surprise message ------------------------------------------------------------------------


def _surprise(locale: str, **changes: Any) -> rendering.Rendered:
    variables = rendering.sample_variables("surprise", 3)
    gift = {**variables["gift"], **changes.pop("gift", {})}
    variables.update(gift=gift, **changes)
    return rendering.render(
        rendering.default_template(locale, "surprise"),
        message_type="surprise",
        template_locale=locale,
        format_locale=locale,
        variables=variables,
    )


NOTHING = {"points": None, "products": [], "note": None, "codes": []}
NO_CODE = {"code": None, "reward": None, "expires_on": None}


def test_the_surprise_is_a_marketing_message_with_the_gift_and_maybe_an_order() -> None:
    kind = MESSAGE_TYPES["surprise"]
    assert kind.category == "marketing" and not kind.needs_order and not kind.needs_code
    assert {"gift", "order", "code", "reward", "expires_on"} == kind.variables


@pytest.mark.parametrize("locale", LOCALES)
def test_each_mix_of_gifts_reads_in_the_surprise_message(locale: str) -> None:
    every = _surprise(locale)
    for part in (every.text, every.html):
        assert "SHOP-7KQ2-M9XD-4RTA-HW3C" in part and "EUR 5 off" in part and "Enamel mug" in part
        assert "Thank you for choosing the Trail shoes" in part and "1001" in part
    points_only = _surprise(locale, gift={**NOTHING, "points": 250}, order=None, **NO_CODE)
    assert "250" in points_only.text and "SHOP-" not in points_only.text + points_only.html
    assert "1001" not in points_only.text and "None" not in points_only.text
    code_only = _surprise(locale, gift=NOTHING, order=None)
    assert "SHOP-7KQ2-M9XD-4RTA-HW3C" in code_only.text and "2026" in code_only.text.split("-- ")[0]
    assert "Enamel" not in code_only.text and "None" not in code_only.text
    later = {**NOTHING, "products": [{"name": "Enamel mug", "sku": "MUG-1", "in_parcel": False}]}
    next_order = _surprise(locale, gift=later, **NO_CODE)
    assert "Enamel mug" in next_order.text and "SHOP-" not in next_order.text
    assert (
        next_order.text
        != _surprise(
            locale, gift={**later, "products": [{**later["products"][0], "in_parcel": True}]}, **NO_CODE
        ).text
    )
    note = _surprise(locale, gift={**NOTHING, "note": "Dear <Ada> & co,\nthank you."}, **NO_CODE)
    assert "Dear <Ada> & co,\nthank you." in note.text
    assert "Dear &lt;Ada&gt; &amp; co,<br>\nthank you." in note.html
    bare = _surprise(locale, gift=NOTHING, order=None, **NO_CODE)
    assert "None" not in bare.text and "Ada" in bare.text


@pytest.mark.parametrize("locale", LOCALES)
def test_a_second_code_is_shown_too_and_the_first_only_once(locale: str) -> None:
    second = {
        "code": "SHIP-FREE-0001",
        "reward": {"name": "Free shipping", "description": None},
        "expires_on": None,
    }
    variables = rendering.sample_variables("surprise", 3)
    out = _surprise(locale, gift={"codes": [*variables["gift"]["codes"], second]})
    assert out.text.count("SHOP-7KQ2-M9XD-4RTA-HW3C") == 1 and "SHIP-FREE-0001" in out.text
    assert "Free shipping" in out.html


GRANTED = {
    "gift_id": "6f1c0000-0000-4000-8000-000000000001",
    "rule_id": "6f1c0000-0000-4000-8000-000000000002",
    "rule_version": 1,
    "rule_name": "Third order thank-you",
    "customer": "ada",
    "trigger": "nth_order",
    "order": "1001",
    "announce": "message",
    "cost": {"amount": 500, "currency": "EUR"},
    "gifts": [
        {"kind": "points", "points": 200},
        {
            "kind": "reward",
            "redemption_id": "6f1c0000-0000-4000-8000-000000000003",
            "code": "SHOP-AAAA-BBBB-CCCC-DDDD",
            "reward_name": {"en": "EUR 5 off", "lv": "EUR 5 atlaide"},
            "expires_at": "2026-03-31T22:30:00+00:00",
        },
        {
            "kind": "free_shipping",
            "redemption_id": "6f1c0000-0000-4000-8000-000000000004",
            "code": "SHOP-SHIP-FREE-0000",
            "reward_name": {"en": "Free shipping"},
            "expires_at": None,
        },
        {"kind": "item", "sku": "MUG-1", "name": "Enamel mug", "pick_note": "wrap it", "in_parcel": True},
        {"kind": "note", "text": "Sveiki, Ada!\nPaldies."},
    ],
}


def test_the_surprise_variables_come_from_the_gift_granted_event() -> None:
    context = {"event": GRANTED, "order_id": None}
    source = code_source(context)
    assert source is not None and source["redemption_id"] == "6f1c0000-0000-4000-8000-000000000003"
    settings = MessagingSettings()
    values = message_vars("surprise", context, {}, None, {}, settings, RIGA, NOW, locale="lv")
    assert values["code"] == "SHOP-AAAA-BBBB-CCCC-DDDD" and values["reward"]["name"] == "EUR 5 atlaide"
    assert values["expires_on"] == date(2026, 4, 1), "the last day in the customer's calendar"
    assert values["order"] is None
    gift = values["gift"]
    assert gift["rule_name"] == "Third order thank-you" and gift["points"] == 200
    assert gift["products"] == [{"name": "Enamel mug", "sku": "MUG-1", "in_parcel": True}]
    assert gift["note"] == "Sveiki, Ada!\nPaldies."
    assert [c["code"] for c in gift["codes"]] == ["SHOP-AAAA-BBBB-CCCC-DDDD", "SHOP-SHIP-FREE-0000"]
    # The code's row as loaded at send time wins (its reward's texts), for the first code.
    row = {
        "code": "SHOP-AAAA-BBBB-CCCC-DDDD",
        "status": "issued",
        "expires_at": None,
        "name": {"lv": "Atlaide"},
    }
    loaded = message_vars("surprise", context, {}, None, {}, settings, RIGA, NOW, locale="lv", redemption=row)
    assert loaded["reward"]["name"] == "Atlaide" and loaded["gift"]["codes"][0]["reward"]["name"] == "Atlaide"
    assert loaded["expires_on"] is None


def test_a_surprise_without_a_code_leaves_the_code_variables_null() -> None:
    points_only = {**GRANTED, "order": None, "gifts": [{"kind": "points", "points": 5}]}
    context = {"event": points_only}
    assert code_source(context) is None
    values = message_vars("surprise", context, {}, None, {}, MessagingSettings(), RIGA, NOW, locale="en")
    assert values["code"] is values["reward"] is values["expires_on"] is None
    assert values["gift"] == {
        "rule_name": "Third order thank-you",
        "points": 5,
        "products": [],
        "note": None,
        "codes": [],
    }
