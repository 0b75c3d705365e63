"""A customer's locale is one CLDR knows, kept in BCP 47 form, and picks the templates of its language
(else the program's default, said so); a birthday lies between 1900-01-01 and today."""

from datetime import UTC, date, datetime

import pytest
from babel.localedata import locale_identifiers
from hypothesis import given
from hypothesis import strategies as st

from service.core.errors import InvalidInput
from service.core.locales import canonical
from service.customers.schemas import CustomerProfile
from service.customers.service import profile_changes
from service.messaging.locales import choose_locale

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tag", "stored"),
    [
        ("en", "en"),
        ("pt_BR", "pt-BR"),
        ("pt-br", "pt-BR"),
        ("EN_gb", "en-GB"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("lv-LV", "lv-LV"),
        ("iw", "he-IL"),  # CLDR's alias for Hebrew
    ],
)
def test_known_locales_are_kept_in_bcp47_form(tag: str, stored: str) -> None:
    assert canonical(tag) == stored


@pytest.mark.parametrize("tag", ["xx", "en-XX", "zz-ZZ", "tlh", "und", "root", "x-y", "", "en--GB"])
def test_tags_cldr_does_not_know_are_refused(tag: str) -> None:
    assert canonical(tag) is None


@given(st.sampled_from(sorted(locale_identifiers())))
def test_every_cldr_locale_is_accepted_and_its_canonical_form_is_stable(identifier: str) -> None:
    tag = canonical(identifier)
    if identifier == "root":
        assert tag is None
        return
    assert tag is not None and "_" not in tag
    assert canonical(tag) == tag


@pytest.mark.parametrize(
    ("stored", "template", "formats", "note"),
    [
        ("en-GB", "en", "en_GB", None),
        ("ru-RU", "ru", "ru_RU", None),
        ("cy", "cy", "cy", None),
        ("de-DE", "lv", "lv", "no templates for locale 'de-DE'; sent in 'lv', the program's default"),
        (
            "xx",
            "lv",
            "lv",
            "unknown locale 'xx'; sent in 'lv', the program's default",
        ),  # stored before the check
        (None, "lv", "lv", None),
    ],
)
def test_messages_go_in_the_shipped_locale_of_the_language_else_the_default(
    stored: str | None, template: str, formats: str, note: str | None
) -> None:
    choice = choose_locale(stored, "lv")
    assert (choice.template_locale, choice.format_locale, choice.note) == (template, formats, note)


def _changes(prefix: str = "", now: datetime = NOW, **fields: object) -> dict[str, object]:
    return profile_changes(CustomerProfile(**fields), now, prefix)  # type: ignore[arg-type]


def test_the_profile_stores_the_canonical_locale_and_refuses_unknown_ones_naming_the_field() -> None:
    assert _changes(locale="pt_BR") == {"locale": "pt-BR"}
    assert _changes(locale=None) == {"locale": None}
    for prefix in ("", "customer."):
        with pytest.raises(InvalidInput) as refused:
            _changes(prefix, locale="xx")
        assert refused.value.field == f"{prefix}locale" and "'xx'" in refused.value.detail


@pytest.mark.parametrize(
    "birthday", [date(1900, 1, 1), date(1990, 5, 17), date(2026, 3, 2), date(2026, 3, 3)]
)
def test_birthdays_from_1900_to_today_anywhere_on_earth_are_kept(birthday: date) -> None:
    # 12:00 UTC on 2 March is already 3 March in Kiribati (UTC+14): someone born there today is born.
    assert _changes(birthday=birthday) == {"birthday": birthday}


@pytest.mark.parametrize(
    ("birthday", "why"),
    [
        (date(2026, 3, 4), "in the future"),
        (date(2999, 1, 1), "in the future"),
        (date(1899, 12, 31), "before 1900"),
    ],
)
def test_future_and_absurdly_old_birthdays_are_refused_naming_the_field(birthday: date, why: str) -> None:
    for prefix in ("", "customer."):
        with pytest.raises(InvalidInput) as refused:
            _changes(prefix, birthday=birthday)
        assert refused.value.field == f"{prefix}birthday" and why in refused.value.detail


def test_the_future_is_the_clocks_not_the_machines() -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    assert _changes(now=later, birthday=date(2029, 6, 1)) == {"birthday": date(2029, 6, 1)}
    with pytest.raises(InvalidInput):
        _changes(now=datetime(2000, 1, 1, tzinfo=UTC), birthday=date(2001, 1, 1))
