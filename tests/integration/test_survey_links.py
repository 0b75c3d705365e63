"""Surveys by e-mail with real parts (PostgreSQL, a real SMTP server, the answer page over HTTP): the shipped
`survey` journey asks an active survey after an order or its delivery; its links are signed for that
customer and survey; following one (a GET, as mail scanners do) records nothing; the page's form records
the answer, changeable for a week; a detractor's answer opens a case and an alarm mail reaches the
program's alert address; the follow-up after the case is closed reopens it when still unhappy."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.core.clock import FrozenClock
from service.feedback import jobs as feedback_jobs
from service.messaging.jobs import Sender
from tests.conftest import Api, fetch, idempotency, in_app, table_counts
from tests.integration import test_messaging as messaging_tests
from tests.integration.test_messaging import Mailbox, enable, order, parts, run_journeys, send, setup_program

smtp_server, mailbox, sender = messaging_tests.smtp_server, messaging_tests.mailbox, messaging_tests.sender

ADA = {"external_id": "ada", "email": "ada@example.com", "name": "Ada Lovelace", "locale": "en"}
STAFF = "care@trail.example"


async def _survey(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"key": "nps", "name": "After an order", "kind": "nps", "delay_days": 3, **fields}
    made = await api.client.post("/v1/surveys", json=body, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def _asked(api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox, **survey: Any) -> str:
    """An order, a survey due 3 days later, and its mail: returns the mail's text."""
    await setup_program(api)
    patched = await api.client.patch("/v1/program", json={"alert_email": STAFF}, headers=api.headers())
    assert patched.status_code == 200, patched.text
    await _survey(api, **survey)
    await enable(api, "survey")
    await order(api, "o-1", ADA)
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 0, "not yet: three days after the order"
    clock.advance(timedelta(days=3, hours=1))
    run_journeys(api, clock)
    run_journeys(api, clock)  # a rerun asks nobody twice
    assert send(api, sender, clock).sent == 1
    [mail] = mailbox.take()
    assert mail["To"] == "Ada Lovelace <ada@example.com>" and mail["Subject"] == "How was your order o-1?"
    text, html = parts(mail)
    assert "How likely are you to recommend" in text and "{shop}" not in text
    assert html.count('href="http') >= 11
    return text


def _link(text: str, score: int) -> str:
    match = re.search(rf"^{score}: (\S+)$", text, re.MULTILINE)
    assert match, text
    url = urlsplit(match.group(1))
    return f"{url.path}?{url.query}"


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def _feedback(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        "SELECT score, category, alarm, comment, channel, case_id, source_key, follows_up_case_id, changeable_until "
        "FROM feedback WHERE program_id = $1::uuid",
        api.program_id,
    )


async def test_a_survey_mail_answered_on_its_page_opens_a_case_and_alarms_staff(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    text = await _asked(api, clock, sender, mailbox)
    link = _link(text, 3)
    before = table_counts(api.client)
    for _ in range(2):  # a mail scanner opens every link: nothing is recorded
        page = await api.client.get(link)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'value="3" checked' in page.text and "<script" not in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert (
            page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        )
    assert table_counts(api.client) == before and _feedback(api) == []
    token = link.split("?")[0]

    # A post without the page's token (another site's form) records nothing.
    forged = await api.client.post(token, data={"score": "3", "csrf": "guess"})
    assert forged.status_code == 403 and "open the link in the email again" in forged.text
    bad = await api.client.post(token, data={"score": "11", "csrf": _csrf(page.text)})
    assert bad.status_code == 422 and "Please choose a score." in bad.text
    long = await api.client.post(token, data={"score": "3", "comment": "x" * 5001, "csrf": _csrf(page.text)})
    assert long.status_code == 422 and "at most 5,000 characters" in long.text
    assert table_counts(api.client) == before

    said = "Late, and nobody answered my emails."
    posted = await api.client.post(token, data={"score": "3", "comment": said, "csrf": _csrf(page.text)})
    assert posted.status_code == 200, posted.text
    assert "Thank you! We have your answer" in posted.text and "Change my answer" in posted.text
    [answer] = _feedback(api)
    assert (answer["score"], answer["category"], answer["alarm"], answer["comment"], answer["channel"]) == (
        3, "detractor", True, said, "email",
    )  # fmt: skip
    assert answer["source_key"].startswith("link:") and answer["case_id"] is not None
    case = (await api.client.get(f"/v1/cases/{answer['case_id']}", headers=api.headers())).json()
    assert case["status"] == "open" and case["source"] == "feedback" and said in case["summary"]

    clock.advance(timedelta(minutes=1))  # the report runs to now, exclusive
    report = (await api.client.get("/v1/reports/nps", headers=api.headers())).json()["totals"]
    assert (report["surveys_sent"], report["responses"], report["response_rate"]) == (1, 1, "1.0000")
    assert (report["nps"], report["alarms"], report["alarms_open"]) == (-100, 1, 1)

    # The alarm: a staff message to the alert address, outside the customer's guardrails.
    assert send(api, sender, clock).sent == 1
    [alarm] = mailbox.take()
    assert alarm["To"] == STAFF and alarm["Subject"] == "Alarm: NPS 3 from Ada Lovelace"
    assert alarm["List-Unsubscribe"] is None
    alarm_text, _ = parts(alarm)
    assert f"Comment: {said}" in alarm_text and f"/v1/cases/{answer['case_id']}" in alarm_text
    assert "Customer: Ada Lovelace (ada, ada@example.com)" in alarm_text and "1 open case" in alarm_text

    # Changed within the week: the same answer, nothing set off twice.
    changed = await api.client.post(token, data={"score": "9", "comment": "", "csrf": _csrf(posted.text)})
    assert changed.status_code == 200, changed.text
    [answer] = _feedback(api)
    assert (answer["score"], answer["category"], answer["comment"]) == (9, "promoter", None)
    assert (
        len(fetch(api.client, "SELECT id FROM service_case WHERE program_id = $1::uuid", api.program_id)) == 1
    )
    assert send(api, sender, clock).sent == 0, "the alarm went once"
    again = await api.client.get(link)  # the link's own score chosen again, the answer changeable
    assert 'value="3" checked' in again.text and "Change my answer" in again.text
    assert "You can change your answer here until" in again.text
    assert 'value="9" checked' in (await api.client.get(token)).text, "no score in the link: the answer's"

    clock.advance(timedelta(days=7, minutes=1))
    closed = await api.client.post(token, data={"score": "1", "csrf": _csrf(posted.text)})
    assert closed.status_code == 409 and "answered this survey already" in closed.text
    assert (await api.client.get(link)).status_code == 409
    assert _feedback(api)[0]["score"] == 9


@pytest.mark.parametrize("token", ["nonsense", "YS4xLjIuMw.AAAA", "a" * 300, "%F0%9F%98%80"])
async def test_a_forged_or_cut_link_gets_a_clear_page_never_a_500(api: Api, token: str) -> None:
    for response in (
        await api.client.get(f"/v1/answer/{token}?score=3"),
        await api.client.post(f"/v1/answer/{token}", data={"score": "3", "csrf": "x"}),
    ):
        assert response.status_code in (403, 404), response.text
    page = await api.client.get(f"/v1/answer/{token}")
    assert page.status_code == 404 and "This link does not work" in page.text


async def test_an_unanswered_link_expires_after_30_days(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    link = _link(await _asked(api, clock, sender, mailbox), 8)
    clock.advance(timedelta(days=30, minutes=1))
    page = await api.client.get(link)
    assert page.status_code == 410 and "This survey has closed" in page.text


async def test_the_follow_up_after_a_closed_case_reopens_it_when_still_unhappy(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    text = await _asked(api, clock, sender, mailbox, follow_up=True)
    token = _link(text, 2).split("?")[0]
    page = await api.client.get(token)
    posted = await api.client.post(token, data={"score": "2", "comment": "Broken", "csrf": _csrf(page.text)})
    assert posted.status_code == 200, posted.text
    [answer] = _feedback(api)
    send(api, sender, clock)
    mailbox.take()  # the alarm
    closing = await api.client.post(
        f"/v1/cases/{answer['case_id']}/close",
        json={"note": "Sent a new one"},
        headers=api.headers(**idempotency()),
    )
    assert closing.status_code == 200, closing.text
    assert in_app(api.client, feedback_jobs.follow_ups, clock.now()) == 0, "not before two days"
    clock.advance(timedelta(days=2, hours=1))
    assert in_app(api.client, feedback_jobs.follow_ups, clock.now()) == 1
    assert in_app(api.client, feedback_jobs.follow_ups, clock.now()) == 0, "once per closing"
    assert send(api, sender, clock).sent == 1
    [follow_up] = mailbox.take()
    assert follow_up["Subject"] == "Did we put it right?"
    follow_text, _ = parts(follow_up)
    assert "we have tried to put it right. Did we?" in follow_text
    second = _link(follow_text, 4).split("?")[0]
    page = await api.client.get(second)
    answered = await api.client.post(
        second, data={"score": "4", "comment": "Still broken", "csrf": _csrf(page.text)}
    )
    assert answered.status_code == 200, answered.text
    case = (await api.client.get(f"/v1/cases/{answer['case_id']}", headers=api.headers())).json()
    assert case["status"] == "open" and case["reopened"] == 1
    assert case["entries"][-1]["kind"] == "reopened" and "Still broken" in case["entries"][-1]["text"]
    listed = (await api.client.get("/v1/feedback?customer=ada", headers=api.headers())).json()["items"]
    assert listed[0]["follows_up_case_id"] == str(answer["case_id"]) and listed[0]["reopened"] is True
    assert (
        len(fetch(api.client, "SELECT id FROM service_case WHERE program_id = $1::uuid", api.program_id)) == 1
    )


async def test_a_survey_after_delivery_waits_for_the_delivered_event(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    await _survey(api, key="csat", kind="csat", send_after="delivery", delay_days=1,
                  dimensions=[{"key": "speed"}, {"key": "accuracy"}])  # fmt: skip
    await enable(api, "survey")
    await order(api, "o-1", {**ADA, "locale": "ru"})
    clock.advance(timedelta(days=5))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 0, "no delivery yet"
    delivered = await api.client.post(
        "/v1/events",
        json={"type": "order_delivered", "customer": {"external_id": "ada"}, "properties": {"order": "o-1"}},
        headers=api.headers(**idempotency()),
    )
    assert delivered.status_code in (200, 201, 202), delivered.text
    clock.advance(timedelta(days=1, hours=1))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [mail] = mailbox.take()
    text, _ = parts(mail)
    assert "Насколько вы довольны" in text or "довольны" in text, text
    token = _link(text, 5).split("?")[0]
    page = await api.client.get(token)
    assert page.status_code == 200 and '<html lang="ru">' in page.text and "Ваш ответ" in page.text
    assert 'name="dimension.speed"' in page.text and "Скорость" in page.text
    posted = await api.client.post(
        token, data={"score": "5", "dimension.speed": "4", "dimension.accuracy": "", "csrf": _csrf(page.text)}
    )
    assert posted.status_code == 200, posted.text
    row = fetch(
        api.client, "SELECT score, dimensions FROM feedback WHERE program_id = $1::uuid", api.program_id
    )
    assert row[0]["score"] == 5 and '"speed": 4' in str(row[0]["dimensions"]).replace("'", '"')


async def test_a_promoter_is_asked_for_a_review(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    await _survey(api, ask_promoters="review")
    await enable(api, "promoter_ask")
    clock.advance(timedelta(minutes=1))  # events after the journey was turned on
    await order(api, "o-1", {**ADA, "marketing_consent": True})
    answered = await api.client.post(
        "/v1/feedback",
        json={"customer": "ada", "survey": "nps", "score": 10, "order": "o-1"},
        headers=api.headers(**idempotency()),
    )
    assert answered.status_code == 201, answered.text
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [mail] = mailbox.take()
    text, _ = parts(mail)
    assert "kind score of 10" in text and "Write a review: https://trail.example/review" in text


async def test_hostile_form_posts_change_nothing_and_never_answer_a_500(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    token = _link(await _asked(api, clock, sender, mailbox), 3).split("?")[0]
    csrf = _csrf((await api.client.get(token)).text)
    before = table_counts(api.client)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body, headers in (
        (f"score=%FF%FE&csrf={csrf}".encode(), form),
        (f"score=3&comment=a%00b&csrf={csrf}".encode(), form),
        (f"score=3&score=99&dimension.nope=4&csrf={csrf}".encode(), form),
        (f"score=99999999999999999999999&csrf={csrf}".encode(), form),
        (b"\xff\xfe\x00garbage", form),
        (b'{"score": 3}', {"Content-Type": "application/json"}),
    ):
        response = await api.client.post(token, content=body, headers=headers)
        assert response.status_code < 500 and response.status_code != 200, (body, response.text)
    files = await api.client.post(token, data={"csrf": csrf}, files={"score": ("s.txt", b"3")})
    assert files.status_code < 500 and files.status_code != 200, files.text
    for part in (b"\xff\xfe", b"Content-Type: text/plain; charset=bogus\r\n\r\n3"):
        multipart = (
            b'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + csrf.encode() + b"\r\n"
            b'--b\r\nContent-Disposition: form-data; name="comment"\r\n' + part + b"\r\n--b--\r\n"
        )
        response = await api.client.post(
            token, content=multipart, headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert response.status_code < 500 and response.status_code != 200, response.text
    assert table_counts(api.client) == before
