"""The variables of a message that sends a code, and the journey checks of steps that give one: pure."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from service.messaging.schemas import MessagingSettings
from service.messaging.variables import code_source, code_vars, localized, message_vars
from service.outreach import domain
from service.outreach.schemas import JourneyIn, StepIn, TriggerIn, TriggerKind

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RIGA = ZoneInfo("Europe/Riga")
EVENT = {
    "customer": "ada",
    "redemption_id": "5d0c1c1e-0000-4000-8000-000000000001",
    "code": "SHOP-AAAA-BBBB-CCCC-DDDD",
    "reward": {
        "id": "r",
        "version": 1,
        "name": {"en": "EUR 5 off", "lv": "EUR 5 atlaide"},
        "kind": "amount_off",
    },
    "points": 500,
    # 22:30 UTC is already the next day in Riga: the date is the customer's.
    "expires_at": "2026-03-08T22:30:00+00:00",
    "source": "points",
    "days": 7,
}


def test_a_text_per_locale_falls_back_to_english_then_to_any() -> None:
    texts = {"en": "EUR 5 off", "lv": "EUR 5 atlaide"}
    assert localized(texts, "lv") == "EUR 5 atlaide"
    assert localized(texts, "ru") == "EUR 5 off"
    assert localized({"tr": "5 EUR indirim", "ms": ""}, "ru") == "5 EUR indirim"
    assert (
        localized({}, "en") is None and localized(None, "en") is None and localized("plain", "lv") == "plain"
    )


def test_the_code_comes_from_the_step_before_the_trigger() -> None:
    assert code_source({"event": EVENT}) == EVENT
    attached = {
        "redemption_id": "x",
        "code": "STEP-CODE",
        "reward": {"name": {"en": "Gift"}},
        "expires_at": None,
    }
    assert code_source({"event": EVENT, "redemption": attached}) == attached
    assert code_source({"event": {"customer": "ada", "points": 3}}) is None and code_source({}) is None


def test_code_variables_in_the_customers_date_and_the_messages_locale() -> None:
    values = code_vars(EVENT, None, "lv", RIGA)
    assert values == {
        "code": "SHOP-AAAA-BBBB-CCCC-DDDD",
        "reward": {"name": "EUR 5 atlaide", "description": None},
        "expires_on": date(2026, 3, 9),
    }
    # What is loaded at send time (the reward version's texts, the code's current date) comes first.
    row = {
        "code": "SHOP-AAAA-BBBB-CCCC-DDDD",
        "status": "issued",
        "expires_at": None,
        "name": {"en": "Five off", "ru": "Скидка 5 EUR"},
        "description": {"en": "On any order."},
    }
    assert code_vars(EVENT, row, "ru", RIGA) == {
        "code": "SHOP-AAAA-BBBB-CCCC-DDDD",
        "reward": {"name": "Скидка 5 EUR", "description": "On any order."},
        "expires_on": None,
    }
    assert code_vars(None, None, "en", RIGA) == {"code": None, "reward": None, "expires_on": None}


def test_code_expiring_counts_the_days_left_and_a_gift_type_shows_the_step_code() -> None:
    settings = MessagingSettings()
    expiring = message_vars("code_expiring", {"event": EVENT}, {}, None, {}, settings, RIGA, NOW, locale="en")
    assert expiring["days"] == 7 and expiring["expires_on"] == date(2026, 3, 9)
    assert expiring["reward"]["name"] == "EUR 5 off"
    step_code = {
        "redemption_id": "x",
        "code": "GIFT-1",
        "reward": {"name": {"en": "Mug"}},
        "expires_at": None,
    }
    birthday = message_vars("birthday", {"redemption": step_code}, {}, None, {}, settings, RIGA, NOW)
    assert (
        birthday["code"] == "GIFT-1"
        and birthday["reward"]["name"] == "Mug"
        and birthday["expires_on"] is None
    )
    assert message_vars("birthday", {}, {}, None, {}, settings, RIGA, NOW)["code"] is None


def _journey(kind: TriggerKind, *steps: StepIn) -> JourneyIn:
    return JourneyIn(key="j", name="J", trigger=TriggerIn(kind=kind), steps=list(steps))


@pytest.mark.parametrize(
    ("journey", "field"),
    [
        # A reward on a type that shows no code: the customer would never see it.
        (_journey("order_placed", StepIn(message_type="order_thank_you", reward=uuid4())), "steps[0].reward"),
        # A code message with no code: neither the trigger nor the step gives one.
        (_journey("order_placed", StepIn(message_type="reward_issued")), "steps[0].message_type"),
        (
            _journey("reward_issued", StepIn(message_type="win_back"), StepIn(message_type="code_expiring")),
            "steps[1].message_type",
        ),
    ],
)
def test_steps_that_could_not_show_their_code_are_refused(journey: JourneyIn, field: str) -> None:
    assert [f for f, _ in domain.problems(journey)] == [field]


def test_steps_that_show_a_code_are_accepted() -> None:
    for journey in (
        _journey("order_placed", StepIn(message_type="reward_issued", reward=uuid4())),
        _journey("inactivity", StepIn(message_type="win_back", reward=uuid4())),
        _journey("reward_issued", StepIn(message_type="reward_issued")),
        _journey("code_expiring", StepIn(message_type="code_expiring"), StepIn(message_type="reward_issued")),
    ):
        problems = [p for p in domain.problems(journey) if p[0] != "trigger.days"]
        assert problems == [], journey
