"""The shipped templates: every type in every locale compiles, knows only its variables, renders over
numbers that reach every plural category, and the layout uses only what it is given."""

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

import pytest

from service.messaging import catalogue, rendering, variables
from service.messaging.catalogue import LOCALES, MESSAGE_TYPES
from service.messaging.schemas import LocaleCode, MessageTypeKey


def test_the_api_accepts_exactly_the_catalogue() -> None:
    assert set(get_args(MessageTypeKey)) == set(MESSAGE_TYPES)
    assert get_args(LocaleCode) == LOCALES


@pytest.mark.parametrize("locale", LOCALES)
def test_every_type_is_shipped_and_renders(locale: str) -> None:
    sources = rendering.default_sources(locale)
    # gift_note: the surprise gift's personal note (service/messaging/notes.py, tests/unit/test_gift_notes.py).
    assert set(sources) == {*MESSAGE_TYPES, "_layout", "gift_note"}, (
        "one table per message type, plus _layout and gift_note"
    )
    for message_type in MESSAGE_TYPES:
        assert set(sources[message_type]) == set(rendering.PARTS), message_type
        rendering.check(message_type, locale, sources[message_type])
        for count in rendering.PLURAL_PROBES:
            out = rendering.render(
                rendering.default_template(locale, message_type),
                message_type=message_type,
                template_locale=locale,
                format_locale=locale,
                variables=rendering.sample_variables(message_type, count),
            )
            assert out.subject and "\n" not in out.subject
            assert "Ada" in out.text, "the greeting names the customer"
            if MESSAGE_TYPES[message_type].category == "staff":  # to staff: nothing to unsubscribe from
                assert "https://encore.example/u/sample" not in out.text + out.html
            else:
                assert (
                    "https://encore.example/u/sample" in out.text
                    and 'href="https://encore.example/u/sample"' in out.html
                )
            assert "#" not in out.subject, "a plural form's # was not replaced"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_parts_rendered_as_one_template_are_the_parts_rendered_alone(locale: str) -> None:
    for message_type in MESSAGE_TYPES:
        whole = rendering.default_template(locale, message_type)
        assert whole.whole is not None
        alone = dataclasses.replace(whole, whole=None)
        for count in (0, 1, 2, 5, 21):
            variables = rendering.sample_variables(message_type, count)
            args = {"message_type": message_type, "template_locale": locale, "format_locale": locale}
            assert rendering.render(whole, variables=variables, **args) == rendering.render(
                alone, variables=variables, **args
            )


def _render(locale: str, message_type: str, variables: dict[str, Any]) -> rendering.Rendered:
    return rendering.render(
        rendering.default_template(locale, message_type),
        message_type=message_type,
        template_locale=locale,
        format_locale=locale,
        variables=variables,
    )


def _nameless(message_type: str, count: int = 3) -> dict[str, Any]:
    variables = rendering.sample_variables(message_type, count, program={"name": "Zebra Shop", "url": None})
    variables["customer"] = {**variables["customer"], "first_name": None, "name": None}
    return variables


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_a_customer_without_a_name_is_never_addressed_by_the_shops_name(
    locale: str, message_type: str
) -> None:
    out = _render(locale, message_type, _nameless(message_type))
    assert ", Zebra Shop" not in out.subject and "Zebra Shop," not in out.subject, out.subject
    assert "None" not in out.subject + out.text
    assert not re.search(r"(^[,\s])|(,\s*[,!?.]?$)|(\s[,!?])", out.subject), out.subject
    assert not re.search(r"\bAda\b", out.subject + out.text)


NAMELESS_THANKS = {
    "en": "Thank you for your order 1001",
    "tr": "Zebra Shop olarak 1001 numaralı siparişiniz için teşekkür ederiz!",
    "cy": "Diolch am eich archeb 1001 gyda Zebra Shop",
    "lv": "Zebra Shop pateicas par Jūsu pasūtījumu 1001",
    "ms": "Terima kasih atas pesanan anda 1001",
    "ru": "Спасибо за заказ № 1001 в Zebra Shop!",
}


@pytest.mark.parametrize("locale", LOCALES)
def test_the_nameless_thank_you_subject(locale: str) -> None:
    assert _render(locale, "order_thank_you", _nameless("order_thank_you")).subject == NAMELESS_THANKS[locale]


def _thanks(points: int, available: int, pending: int, on: date | None) -> dict[str, Any]:
    variables = rendering.sample_variables("order_thank_you", points)
    variables["customer"] = {**variables["customer"], "points": available}
    variables.update(pending_points=pending, points_available_on=on)
    return variables


# A new customer's first order: 130 points pending until 16 March, nothing to spend yet.
FIRST_ORDER = {
    "en": "This order earns you 130 points, which you can spend from March 16, 2026, once the return period "
    "is over. You have no points to spend yet, and 130 points are pending.",
    "tr": "Bu siparişle 130 puan kazandınız; bu puanları iade süresi sona erdikten sonra, 16 Mart 2026 "
    "tarihinden itibaren kullanabilirsiniz. Henüz kullanabileceğiniz puanınız yok; 130 puan ise beklemede.",
    "cy": "Rydych chi'n ennill 130 pwynt gyda'r archeb hon, a gallwch chi eu gwario o 16 Mawrth 2026 ymlaen, "
    "pan ddaw'r cyfnod dychwelyd i ben. Does gennych chi ddim pwyntiau i'w gwario eto, ac mae 130 pwynt yn "
    "yr arfaeth.",
    "lv": "Par šo pasūtījumu Jūs saņemat 130 punktu. Tos varēsiet izmantot, tiklīdz beigsies preču "
    "atgriešanas termiņš (2026. gada 16. marts). Pagaidām Jums nav punktu, ko varētu izmantot, bet 130 "
    "punktu jau ir ceļā uz Jūsu kontu.",
    "ms": "Anda memperoleh 130 mata daripada pesanan ini. Mata ini boleh ditebus mulai 16 Mac 2026, selepas "
    "tempoh pemulangan tamat. Anda belum mempunyai mata untuk ditebus, manakala 130 mata masih dalam proses.",
    "ru": "За этот заказ Вы получаете 130 баллов. Они станут доступны 16 марта 2026 г., после окончания "
    "срока возврата. Пока у Вас нет баллов, которые можно потратить, а 130 баллов ожидают зачисления.",
}


# A customer with 21 points to spend orders again: this order's 1 point is pending until 16 March.
RETURNING = {
    "en": "This order earns you 1 point, which you can spend from March 16, 2026, once the return period is "
    "over. You can spend 21 points today, and 1 point is pending.",
    "tr": "Bu siparişle 1 puan kazandınız; bu puanı iade süresi sona erdikten sonra, 16 Mart 2026 tarihinden "
    "itibaren kullanabilirsiniz. Bugün kullanabileceğiniz 21 puan var; 1 puan ise beklemede.",
    "cy": "Rydych chi'n ennill 1 pwynt gyda'r archeb hon, a gallwch chi ei wario o 16 Mawrth 2026 ymlaen, pan "
    "ddaw'r cyfnod dychwelyd i ben. Gallwch chi wario 21 pwynt heddiw, ac mae 1 pwynt yn yr arfaeth.",
    "lv": "Par šo pasūtījumu Jūs saņemat 1 punktu. To varēsiet izmantot, tiklīdz beigsies preču atgriešanas "
    "termiņš (2026. gada 16. marts). Šobrīd varat izmantot 21 punktu, un vēl 1 punkts ir ceļā uz Jūsu kontu.",
    "ms": "Anda memperoleh 1 mata daripada pesanan ini. Mata ini boleh ditebus mulai 16 Mac 2026, selepas "
    "tempoh pemulangan tamat. Hari ini anda boleh menebus 21 mata, manakala 1 mata masih dalam proses.",
    "ru": "За этот заказ Вы получаете 1 балл. Он станет доступен 16 марта 2026 г., после окончания срока "
    "возврата. Сейчас Вам доступен 21 балл, а 1 балл ожидает зачисления.",
}
# A program without a return window: the points can be spent at once, nothing is pending.
READY = {
    "en": "This order earns you 2 points, ready to spend now. You can spend 5 points today.",
    "tr": "Bu siparişle 2 puan kazandınız; bu puanlar hesabınızda hemen kullanıma hazır. Bugün "
    "kullanabileceğiniz 5 puan var.",
    "cy": "Rydych chi'n ennill 2 bwynt gyda'r archeb hon, ac maen nhw'n barod i'w gwario nawr. Gallwch chi "
    "wario 5 pwynt heddiw.",
    "lv": "Par šo pasūtījumu Jūs saņemat 2 punktus – tie jau ir Jūsu rīcībā. Šobrīd varat izmantot 5 punktus.",
    "ms": "Anda memperoleh 2 mata daripada pesanan ini, dan mata ini boleh terus ditebus. Hari ini anda boleh "
    "menebus 5 mata.",
    "ru": "За этот заказ Вы получаете 2 балла — их можно тратить сразу. Сейчас Вам доступно 5 баллов.",
}


def _points_paragraph(out: rendering.Rendered) -> str:
    """The paragraph before the signature (and the footer), spaces as one."""
    return " ".join(out.text.split("\n\n")[-3].split())


@pytest.mark.parametrize("locale", LOCALES)
def test_the_thank_you_says_what_is_pending_until_when_and_what_can_be_spent(locale: str) -> None:
    first = _render(locale, "order_thank_you", _thanks(130, 0, 130, date(2026, 3, 16)))
    assert _points_paragraph(first) == FIRST_ORDER[locale]
    html = " ".join(re.sub(r"</?strong>", "", first.html).split())
    assert FIRST_ORDER[locale] in html
    returning = _render(locale, "order_thank_you", _thanks(1, 21, 1, date(2026, 3, 16)))
    assert _points_paragraph(returning) == RETURNING[locale]
    assert _points_paragraph(_render(locale, "order_thank_you", _thanks(2, 5, 0, None))) == READY[locale]


def _expiring(points: int, days: int) -> dict[str, Any]:
    variables = rendering.sample_variables("points_expiring", points)
    variables.update(days=days, expires_on=date(2026, 3, 2) + timedelta(days=days))
    return variables


TODAY = {"en": "today", "tr": "bugün", "cy": "heddiw", "lv": "šodien", "ms": "hari ini", "ru": "сегодня"}
TOMORROW = {"en": "tomorrow", "tr": "yarın", "cy": "yfory", "lv": "rīt", "ms": "esok", "ru": "завтра"}


@pytest.mark.parametrize("locale", LOCALES)
def test_points_expiring_today_or_tomorrow_say_so(locale: str) -> None:
    today = _render(locale, "points_expiring", _expiring(5, 0)).text
    tomorrow = _render(locale, "points_expiring", _expiring(5, 1)).text
    later = _render(locale, "points_expiring", _expiring(5, 29)).text
    assert TODAY[locale] in today and TOMORROW[locale] not in today
    assert TOMORROW[locale] in tomorrow
    assert TODAY[locale] not in later and "29" in later


def test_points_expiring_reads_naturally_for_one_point() -> None:
    en = _render("en", "points_expiring", _expiring(1, 29)).text
    assert "A friendly heads-up: 1 point in your account will expire on March 31, 2026, in 29 days." in en
    assert "Use it on your next order" in en and "of your points" not in en
    assert (
        "150 points in your account will expire" in _render("en", "points_expiring", _expiring(150, 29)).text
    )
    cy = _render("cy", "points_expiring", _expiring(3, 29)).text
    assert "bydd 3 phwynt yn eich cyfrif yn dod i ben" in cy and "o'ch pwyntiau" not in cy


EXTREMES = (0, 1, 2, 2026, 10**9)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("count", EXTREMES)
def test_sample_values_render_for_every_count_the_preview_allows(locale: str, count: int) -> None:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    for message_type in MESSAGE_TYPES:
        out = _render(locale, message_type, rendering.sample_variables(message_type, count, now=now))
        assert out.subject and "#" not in out.subject


@pytest.mark.parametrize("count", EXTREMES)
def test_sample_dates_follow_from_the_clock_and_agree_with_the_counts(count: int) -> None:
    now = datetime(2027, 2, 28, 23, 0, tzinfo=UTC)
    today = now.date()
    expiring = catalogue.sample_context("points_expiring", points=count, now=now)
    assert expiring["expires_on"] - today == timedelta(days=expiring["days"])
    assert expiring["days"] == count or expiring["expires_on"] == date.max
    win_back = catalogue.sample_context("win_back", points=count, now=now)
    assert today - win_back["last_order_on"] == timedelta(days=win_back["days_since_last_order"])
    assert win_back["days_since_last_order"] == count or win_back["last_order_on"] == date.min
    anniversary = catalogue.sample_context("first_order_anniversary", points=count, now=now)
    assert anniversary["years"] == min(count, today.year - 1)
    assert variables.years_between(anniversary["first_order_on"], today) == anniversary["years"]
    thanks = catalogue.sample_context("order_thank_you", points=count, now=now, pending_days=14)
    assert thanks["points_available_on"] == date(2027, 3, 14) and thanks["order"]["placed_at"] == now
    assert catalogue.sample_context("order_thank_you", now=now, pending_days=0)["points_available_on"] is None


def _code(message_type: str, days: int, **reward: Any) -> dict[str, Any]:
    variables = rendering.sample_variables(message_type, 3)
    variables.update(code="SHOP-7KQ2-M9XD-4RTA-HW3C", expires_on=date(2026, 3, 2) + timedelta(days=days))
    variables["reward"] = {"name": "EUR 5 off", "description": None, **reward}
    if message_type == "code_expiring":
        variables["days"] = days
    return variables


@pytest.mark.parametrize("locale", LOCALES)
def test_a_code_expiring_today_or_tomorrow_says_so_and_names_the_code(locale: str) -> None:
    today = _render(locale, "code_expiring", _code("code_expiring", 0))
    tomorrow = _render(locale, "code_expiring", _code("code_expiring", 1)).text
    later = _render(locale, "code_expiring", _code("code_expiring", 6)).text
    assert TODAY[locale] in today.text and TOMORROW[locale] not in today.text
    assert TOMORROW[locale] in tomorrow and TODAY[locale] not in later and "6" in later
    for out in (today.text, today.html):
        assert "SHOP-7KQ2-M9XD-4RTA-HW3C" in out and "EUR 5 off" in out


@pytest.mark.parametrize("locale", LOCALES)
def test_the_issued_code_shows_its_reward_description_and_last_day(locale: str) -> None:
    out = _render(locale, "reward_issued", _code("reward_issued", 30, description="Any order over EUR 25."))
    assert (
        "\nSHOP-7KQ2-M9XD-4RTA-HW3C\n" in out.text and "<strong>SHOP-7KQ2-M9XD-4RTA-HW3C</strong>" in out.html
    )
    assert "Any order over EUR 25." in out.text and "Any order over EUR 25." in out.html
    assert "2026" in out.text, "the last day it can be used"
    endless = _render(locale, "reward_issued", {**_code("reward_issued", 0), "expires_on": None})
    assert "2026" not in endless.text.split("-- ")[0] and "None" not in endless.text


GIFT_TYPES = ("repeat_invitation", "first_order_anniversary", "win_back", "birthday")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("message_type", GIFT_TYPES)
def test_a_reward_message_shows_the_code_its_step_gave_and_only_then(locale: str, message_type: str) -> None:
    assert {"code", "reward", "expires_on"} <= MESSAGE_TYPES[message_type].variables
    given = _render(locale, message_type, _code(message_type, 30))
    assert (
        "SHOP-7KQ2-M9XD-4RTA-HW3C" in given.text and "<strong>SHOP-7KQ2-M9XD-4RTA-HW3C</strong>" in given.html
    )
    assert "EUR 5 off" in given.text
    none = {**_code(message_type, 30), "code": None, "reward": None, "expires_on": None}
    plain = _render(locale, message_type, none)
    assert (
        "SHOP-" not in plain.text + plain.html and "EUR 5 off" not in plain.text and "None" not in plain.text
    )


def test_the_code_messages_are_transactional_and_send_a_code() -> None:
    issued, expiring = MESSAGE_TYPES["reward_issued"], MESSAGE_TYPES["code_expiring"]
    assert issued.category == expiring.category == "transactional"
    assert issued.needs_code and expiring.needs_code and expiring.open_code and not issued.open_code
    assert not issued.quiet_hours, "a code just bought goes at once, like the thank-you"
    assert "days" in expiring.variables and "days" not in issued.variables
