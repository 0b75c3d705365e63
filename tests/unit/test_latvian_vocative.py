"""Latvian greetings address the customer in the vocative: the common endings of given names inflect,
everything else keeps its form, and only the ending ever changes (capitalisation is the customer's)."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.messaging import rendering
from service.messaging.variables import latvian_vocative

LATVIAN = "aābcčdeēfgģhiījkķlļmnņoprsštuūvzž"


@pytest.mark.parametrize(
    ("name", "vocative"),
    [
        ("Jānis", "Jāni"),
        ("Kārlis", "Kārli"),
        ("Andrejs", "Andrej"),
        ("Ainārs", "Ainār"),
        ("Mārtiņš", "Mārtiņ"),
        ("Ingus", "Ingu"),
        ("Mikus", "Miku"),
        ("Tomass", "Tomas"),
        ("Anna", "Anna"),
        ("Līga", "Līga"),
        ("Alise", "Alise"),
        ("Oto", "Oto"),
        ("JĀNIS", "JĀNI"),
        ("jānis", "jāni"),
        ("Janis", "Jani"),  # written without diacritics: the same ending
        ("Lukas", "Lukas"),  # -as / -es / -os: no Latvian given name ends so
        ("Agnes", "Agnes"),
        ("Carlos", "Carlos"),
        ("Thomas", "Thomas"),
        ("Yves", "Yves"),  # not the Latvian alphabet
        ("Иван", "Иван"),
        ("Anna-Marija", "Anna-Marija"),
        ("Is", "Is"),  # too short to have a stem
        ("", ""),
    ],
)
def test_examples(name: str, vocative: str) -> None:
    assert latvian_vocative(name) == vocative


def test_decomposed_diacritics_are_read_as_the_letters_they_are() -> None:
    assert latvian_vocative("Ja\u0304nis") == "Jāni"


latvian_names = st.text(alphabet=LATVIAN, min_size=1, max_size=12).map(str.capitalize)


nfc_text = st.text(max_size=20).map(lambda t: unicodedata.normalize("NFC", t))


@given(nfc_text)
def test_only_a_final_s_or_sh_can_go(name: str) -> None:
    result = latvian_vocative(name)
    assert result == name or (result == name[:-1] and name[-1] in "sSšŠ")


@given(latvian_names)
def test_the_rules_by_ending(name: str) -> None:
    result = latvian_vocative(name)
    lower = name.lower()
    if len(name) < 3 or lower[-1] not in "sš":
        assert result == name, "feminine -a / -e and every other ending stay"
    elif lower[-1] == "š" or lower[-2] in "iu" or lower[-2] not in "aāeēiīouū":
        assert result == name[:-1]
    else:
        assert result == name, "-as, -es, -os (and long vowels + s) are foreign"


@given(latvian_names)
def test_capitalisation_is_the_customers(name: str) -> None:
    assert latvian_vocative(name.upper()) == latvian_vocative(name).upper()
    assert latvian_vocative(name.lower()) == latvian_vocative(name).lower()


@given(nfc_text.filter(lambda n: not set(n.lower()) <= set(LATVIAN)))
def test_names_not_spelled_in_the_latvian_alphabet_keep_their_form(name: str) -> None:
    assert latvian_vocative(name) == name


def _greeting(locale: str, first_name: str | None) -> tuple[str, str]:
    variables = rendering.sample_variables("birthday", 3)
    variables["customer"] = {**variables["customer"], "first_name": first_name}
    out = rendering.render(
        rendering.default_template(locale, "birthday"),
        message_type="birthday",
        template_locale=locale,
        format_locale=locale,
        variables=variables,
    )
    return out.subject, out.text.splitlines()[0]


def test_latvian_greets_and_congratulates_in_the_vocative_and_others_keep_the_name() -> None:
    assert _greeting("lv", "Jānis") == ("Daudz laimes dzimšanas dienā, Jāni!", "Sveiki, Jāni!")
    assert _greeting("lv", "Anna") == ("Daudz laimes dzimšanas dienā, Anna!", "Sveiki, Anna!")
    assert _greeting("lv", None) == ("Daudz laimes dzimšanas dienā no mums visiem!", "Sveiki!")
    assert _greeting("en", "Jānis") == ("Happy birthday, Jānis!", "Hi Jānis,")


@pytest.mark.parametrize(
    "message_type",
    ["order_thank_you", "tier_upgraded", "repeat_invitation", "first_order_anniversary", "win_back"],
)
def test_every_latvian_subject_that_names_the_customer_uses_the_vocative(message_type: str) -> None:
    variables = rendering.sample_variables(message_type, 3)
    variables["customer"] = {**variables["customer"], "first_name": "Kārlis"}
    out = rendering.render(
        rendering.default_template("lv", message_type),
        message_type=message_type,
        template_locale="lv",
        format_locale="lv",
        variables=variables,
    )
    assert "Kārli" in out.subject and "Kārlis" not in out.subject + out.text, out.subject
