"""Survey links and staff messages, as pure decisions: a link's token names one message, customer and
survey and nothing else verifies; what a link's page may do as time passes; the staff cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.feedback import domain
from service.messaging import delivery
from service.messaging.domain import STAFF_CAP_WINDOW, decide_staff

KEY = b"k" * 32
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=2**62), st.uuids(), st.uuids())
def test_an_answer_token_reads_back_and_only_under_its_key(
    message_id: int, customer: UUID, survey: UUID
) -> None:
    token = delivery.answer_token(KEY, message_id, customer, survey)
    assert delivery.read_answer_token(KEY, token) == delivery.Answer(message_id, customer, survey)
    with pytest.raises(ValueError):
        delivery.read_answer_token(b"another key", token)


@given(st.integers(min_value=1, max_value=2**40), st.uuids(), st.uuids(), st.data())
def test_an_altered_token_is_refused(
    message_id: int, customer: UUID, survey: UUID, data: st.DataObject
) -> None:
    token = delivery.answer_token(KEY, message_id, customer, survey)
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from("AQgw._-x").filter(lambda c: c != token[index]))
    altered = token[:index] + replacement + token[index + 1 :]
    try:
        read = delivery.read_answer_token(KEY, altered)
    except ValueError:
        return
    # base64 without padding: a changed last character may decode to the same bytes
    assert read == delivery.Answer(message_id, customer, survey)


def test_an_unsubscribe_token_is_no_answer_token_and_back() -> None:
    customer, survey = UUID(int=1), UUID(int=2)
    unsubscribe = delivery.unsubscribe_token(KEY, 7, customer, "all")
    with pytest.raises(ValueError):
        delivery.read_answer_token(KEY, unsubscribe)
    answer = delivery.answer_token(KEY, 7, customer, survey)
    with pytest.raises(Exception, match="not valid"):
        delivery.read_unsubscribe_token(KEY, answer)


@given(st.integers(min_value=0, max_value=60 * 24 * 60))
def test_a_link_is_open_30_days_and_an_answer_changeable_7(minutes: int) -> None:
    now = START + timedelta(minutes=minutes)
    unanswered = domain.link_state(START, None, False, now)
    assert unanswered == ("open" if now < START + timedelta(days=30) else "expired")
    until = START + timedelta(days=domain.CHANGEABLE_DAYS)
    answered = domain.link_state(START, until, True, now)
    assert answered == ("changeable" if now < until else "closed")
    assert domain.link_state(START, None, True, now) == "closed", "an answer without a week never changes"


@given(st.lists(st.integers(min_value=0, max_value=180), max_size=40), st.integers(min_value=1, max_value=10))
def test_the_staff_cap_defers_until_the_hour_has_room(sent_minutes_ago: list[int], cap: int) -> None:
    sent = [START - timedelta(minutes=m) for m in sent_minutes_ago]
    decision = decide_staff("care@shop.example", sent, cap, START)
    in_hour = [s for s in sent if s > START - STAFF_CAP_WINDOW]
    if len(in_hour) < cap:
        assert decision.outcome == "send"
        return
    assert decision.outcome == "defer" and decision.until is not None and decision.until > START

    # At `until` the last hour holds fewer than the cap (the message may go); a moment before, it did not.
    def in_hour_before(moment: datetime) -> int:
        return len([s for s in sent if moment - STAFF_CAP_WINDOW < s <= moment])

    assert in_hour_before(decision.until) < cap
    assert in_hour_before(decision.until - timedelta(microseconds=1)) >= cap


def test_a_staff_message_without_an_address_is_suppressed() -> None:
    assert decide_staff(None, [], 5, START).outcome == "suppress"
    assert decide_staff("not an address", [], 5, START).outcome == "suppress"
