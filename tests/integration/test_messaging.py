"""Messaging and journeys with real parts: PostgreSQL, a real SMTP server (aiosmtpd), the standard
`email` parser on what it received, and the injectable clock moved through whole journeys."""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core.clock import FrozenClock
from service.ledger import jobs as ledger_jobs
from service.messaging.jobs import Sender, SendReport
from service.outreach import jobs as outreach
from tests.conftest import (
    START,
    Api,
    fetch,
    idempotency,
    in_app,
    iso,
    make_program,
    order_body,
    settings_for,
    table_counts,
)


@dataclass
class Mailbox:
    """What the SMTP server accepted; addresses starting with `bounce` are refused (550) at RCPT."""

    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        self.received.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def take(self) -> list[EmailMessage]:
        taken, self.received = self.received, []
        return taken


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's start() connects to the port it was given)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    smtp_server[0].take()
    return smtp_server[0]


@pytest.fixture
def sender(
    client: AsyncTestClient[Litestar], database_url: str, smtp_server: tuple[Mailbox, int]
) -> Iterator[Sender]:
    settings = settings_for(
        database_url, smtp_url=f"smtp://127.0.0.1:{smtp_server[1]}?starttls=never", smtp_connections=2
    )

    async def make() -> Sender:
        return Sender(settings, "test-worker")

    made = in_app(client, make)
    yield made
    in_app(client, made.close)


def run_journeys(api: Api, clock: FrozenClock) -> None:
    """What the worker's journey jobs do, at the clock's time."""
    in_app(api.client, outreach.enter_from_events, clock.now())
    in_app(api.client, outreach.enter_scheduled, clock.now())
    in_app(api.client, outreach.advance, clock.now())


def send(api: Api, sender: Sender, clock: FrozenClock) -> SendReport:
    report: SendReport = in_app(api.client, sender.run, clock.now())
    return report


async def order(api: Api, external_id: str, profile: dict[str, Any], **overrides: Any) -> Any:
    """An order with the customer's profile (name, email, locale... in the order, as shops send it)."""
    body = {**order_body(external_id, profile["external_id"], **overrides), "customer": profile}
    response = await api.client.post("/v1/orders", json=body, headers=api.headers())
    assert response.status_code == 201, response.text
    return response


async def messages(api: Api, customer: str) -> list[dict[str, Any]]:
    response = await api.client.get(f"/v1/messages?customer={customer}", headers=api.headers())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def setup_program(api: Api, **settings: Any) -> None:
    body = {
        "from_email": "hello@trail.example",
        "from_name": "Trail Shop",
        "reply_to": "care@trail.example",
        "default_locale": "en",
        "review_url": "https://trail.example/review",
        **settings,
    }
    response = await api.client.put("/v1/messaging/settings", json=body, headers=api.headers())
    assert response.status_code == 200, response.text


async def enable(api: Api, key: str) -> dict[str, Any]:
    response = await api.client.patch(f"/v1/journeys/{key}", json={"enabled": True}, headers=api.headers())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


async def test_post_purchase_journey_in_russian_by_real_smtp(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    journeys = (await api.client.get("/v1/journeys", headers=api.headers())).json()["items"]
    keys = {j["key"]: j for j in journeys}
    assert {"post_purchase", "repeat_customer", "win_back", "expiry_reminder"} <= set(keys)
    # All but `surprise`, which sends only what a gift rule asked to announce by message.
    assert not any(j["enabled"] for j in journeys if j["key"] != "surprise"), "the shipped journeys start off"
    assert keys["surprise"]["enabled"] and keys["surprise"]["trigger"]["kind"] == "gift_granted"
    # An order before the journey is turned on never enters it.
    customer = {
        "external_id": "ivan",
        "email": "ivan@example.com",
        "name": "Иван Петров",
        "locale": "ru-RU",
        "timezone": "Europe/Moscow",
        "marketing_consent": True,
    }
    assert (await order(api, "o-0", customer)).status_code == 201
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    assert (await order(api, "o-1", customer, placed_at=iso(clock.now()))).status_code == 201

    run_journeys(api, clock)
    run_journeys(api, clock)  # a rerun (or a second worker) queues nothing twice
    assert send(api, sender, clock).sent == 1
    [thanks] = mailbox.take()
    assert thanks["To"] == "Иван Петров <ivan@example.com>"
    assert thanks["From"] == "Trail Shop <hello@trail.example>" and thanks["Reply-To"] == "care@trail.example"
    assert thanks["Message-ID"].startswith("<encore.") and thanks["Date"]
    assert thanks["Content-Language"] == "ru-RU"
    assert thanks["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert thanks["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/v1/unsubscribe/")
    assert thanks.get_content_type() == "multipart/alternative"
    assert "o-1" in thanks["Subject"]
    text, html = parts(thanks)
    assert "Иван" in text and "Иван" in html
    assert "Trail shoe" in text and "Socks" in html
    assert "90 баллов" in text, text  # EUR 90.00 at 1 point per euro: ru "many"
    assert "90,00" in text and "€" in text  # the customer's locale formats the money

    # Five days later: "how is it?"; a week after that: the review request (marketing; consent given).
    clock.advance(timedelta(days=5))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [check_in] = mailbox.take()
    assert "o-1" in check_in["Subject"]
    clock.advance(timedelta(days=7))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [review] = mailbox.take()
    assert "https://trail.example/review" in parts(review)[0]

    log = await messages(api, "ivan")
    assert [m["message_type"] for m in log] == ["review_request", "delivery_check_in", "order_thank_you"]
    assert all(
        m["status"] == "sent" and m["journey"] == "post_purchase" and m["locale"] == "ru-RU" for m in log
    )
    assert [m["step"] for m in log] == [2, 1, 0]
    status = await api.status("ivan")
    assert [m["message_type"] for m in status["recent_messages"]] == [m["message_type"] for m in log]
    journey = (await api.client.get("/v1/journeys/post_purchase", headers=api.headers())).json()
    assert journey["completed"] == 1 and journey["active"] == 0
    # The whole journey again changes nothing: every step is unique per journey, customer, step, trigger.
    before = table_counts(api.client)
    run_journeys(api, clock)
    assert send(api, sender, clock).claimed == 0
    assert table_counts(api.client) == before


async def test_unknown_locale_falls_back_and_says_so(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api, default_locale="lv")
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    customer = {"external_id": "klaus", "email": "klaus@example.com", "name": "Klaus", "locale": "de-DE"}
    await order(api, "o-1", customer, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    send(api, sender, clock)
    [msg] = mailbox.take()
    assert msg["Content-Language"] == "lv"
    [logged] = await messages(api, "klaus")
    assert logged["locale"] == "lv" and "no templates for locale 'de-DE'" in logged["locale_note"]


async def test_quiet_hours_defer_caps_suppress_and_one_click_unsubscribe(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api, marketing_cap=2, marketing_cap_days=7, marketing_min_gap_hours=16)
    journey = {
        "key": "reviews",
        "name": "Thank a reviewer with early access",
        "trigger": {"kind": "event", "event_type": "review_written"},
        "steps": [{"message_type": "repeat_invitation", "offer": "Our winter boots, two days early."}],
        "exit_on": ["unsubscribed"],
        "enabled": True,
    }
    assert (
        await api.client.post("/v1/journeys", json=journey, headers=api.headers(**idempotency()))
    ).status_code == 201
    customer = {
        "external_id": "ada",
        "email": "ada@example.com",
        "name": "Ada",
        "timezone": "UTC",
        "marketing_consent": True,
    }
    await order(api, "o-1", customer)

    async def review(n: int) -> None:
        body = {"type": "review_written", "customer": {"external_id": "ada"}, "properties": {"n": n}}
        response = await api.client.post(
            "/v1/events", json=body, headers=api.headers(**{"Idempotency-Key": f"r-{n}"})
        )
        assert response.status_code in (201, 202), response.text

    clock.set(START.replace(hour=22))  # 22:00 in the customer's zone: quiet
    await review(1)
    run_journeys(api, clock)
    assert send(api, sender, clock).deferred == 1
    [deferred] = await messages(api, "ada")
    assert deferred["status"] == "deferred" and deferred["reason"] == "quiet hours in UTC"
    assert deferred["due_at"] == iso(START.replace(hour=8) + timedelta(days=1))
    assert mailbox.take() == []
    clock.set(START.replace(hour=8) + timedelta(days=1))
    assert send(api, sender, clock).sent == 1
    [invitation] = mailbox.take()
    text, _ = parts(invitation)
    assert "Our winter boots, two days early." in text and "Ada" in text

    # Another one at 10:00: within 16 h of the last, so deferred to 00:00 and then past the quiet night.
    clock.set(START.replace(hour=10) + timedelta(days=1))
    await review(2)
    run_journeys(api, clock)
    assert send(api, sender, clock).deferred == 1
    latest = (await messages(api, "ada"))[0]
    assert (
        latest["status"] == "deferred"
        and "quiet hours" in latest["reason"]
        and "after the last marketing" in latest["reason"]
    )
    clock.set(START.replace(hour=8) + timedelta(days=2))
    assert send(api, sender, clock).sent == 1
    mailbox.take()
    # A third within 7 days: the cap (2 in 7 days) suppresses it: never sent, and it says why.
    clock.set(START.replace(hour=12) + timedelta(days=3))
    await review(3)
    run_journeys(api, clock)
    assert send(api, sender, clock).suppressed == 1
    latest = (await messages(api, "ada"))[0]
    assert latest["status"] == "suppressed" and latest["reason"].startswith(
        "frequency cap: 2 marketing messages"
    )

    # One click: the receiver POSTs List-Unsubscribe=One-Click to the header's URL, without a key.
    url = invitation["List-Unsubscribe"].strip("<>")
    path = urlsplit(url).path
    page = await api.client.get(path)
    assert page.status_code == 200 and "<form" in page.text
    assert (await api.status("ada"))["customer"]["marketing_consent"] is True, "a GET never unsubscribes"
    done = await api.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    profile = (await api.status("ada"))["customer"]
    assert profile["marketing_consent"] is False and profile["transactional_consent"] is True
    assert (
        await api.client.post(path[:-3] + "AAA", data={"List-Unsubscribe": "One-Click"})
    ).status_code == 422
    # Marketing stops (the customer leaves the journey: exit on unsubscribed)...
    clock.set(START.replace(hour=12) + timedelta(days=20))
    await review(4)
    run_journeys(api, clock)
    assert send(api, sender, clock).claimed == 0
    assert fetch(
        api.client, "SELECT status, exit_reason FROM journey_enrollment ORDER BY entered_at DESC LIMIT 1"
    )[0] == {
        "status": "exited",
        "exit_reason": "no marketing consent",
    }
    # ... transactional messages still go.
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    await order(api, "o-2", {"external_id": "ada"}, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    assert mailbox.take()[0]["Subject"].startswith("Thank you for your order o-2")


async def test_a_new_order_exits_the_win_back(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    win_back = {
        "key": "win_back",
        "name": "Win-back with a reward on the second try",
        "trigger": {"kind": "inactivity", "days": 90},
        "steps": [
            {"message_type": "win_back"},
            {"delay": {"days": 14}, "message_type": "win_back", "reward_points": 200},
        ],
        "exit_on": ["ordered_again", "unsubscribed"],
        "enabled": True,
    }
    response = await api.client.put("/v1/journeys/win_back", json=win_back, headers=api.headers())
    assert response.status_code == 200, response.text
    for name in ("ben", "cleo"):
        customer = {
            "external_id": name,
            "email": f"{name}@example.com",
            "name": name.title(),
            "marketing_consent": True,
        }
        await order(api, f"o-{name}", customer)
    clock.set(START + timedelta(days=91))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 2
    first = {m["To"]: parts(m)[0] for m in mailbox.take()}
    assert "91 days since your last order" in first["Ben <ben@example.com>"]
    # Ben orders again; Cleo does not. Two weeks on, only Cleo gets the second step and its reward.
    clock.advance(timedelta(hours=2))
    await api.order("o-ben-2", "ben", placed_at=iso(clock.now()))
    clock.advance(timedelta(days=14))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [second] = mailbox.take()
    assert second["To"] == "Cleo <cleo@example.com>" and "200 points are waiting" in parts(second)[0]
    enrollments = fetch(
        api.client,
        "SELECT c.external_id, e.status, e.exit_reason FROM journey_enrollment e JOIN customer c ON c.id = e.customer_id ORDER BY 1",
    )
    assert enrollments == [
        {"external_id": "ben", "status": "exited", "exit_reason": "ordered again"},
        {"external_id": "cleo", "status": "completed", "exit_reason": None},
    ]
    assert (await api.status("cleo"))["points"]["available"] >= 200
    rewards = fetch(
        api.client, "SELECT count(*) AS n FROM points_entry WHERE reason LIKE 'journey win_back%'"
    )
    assert rewards == [{"n": 1}]


async def test_hard_bounce_fills_the_suppression_list(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    customer = {"external_id": "gone", "email": "bounce@example.com", "name": "Gone"}
    await order(api, "o-1", customer, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert send(api, sender, clock).failed == 1
    [failed] = await messages(api, "gone")
    assert (
        failed["status"] == "failed"
        and failed["reason"] == "refused by the mail server"
        and "550" in failed["last_error"]
    )
    listed = (await api.client.get("/v1/suppressions", headers=api.headers())).json()["items"]
    assert listed[0]["email"] == "bounce@example.com" and listed[0]["reason"] == "hard_bounce"
    clock.advance(timedelta(days=5))
    run_journeys(api, clock)
    assert send(api, sender, clock).suppressed == 1
    latest = (await messages(api, "gone"))[0]
    assert latest["reason"] == "address on the suppression list (hard_bounce)"
    assert mailbox.take() == []


async def test_templates_are_checked_at_save_versioned_and_previewed(api: Api) -> None:
    good = {
        "message_type": "points_expiring",
        "locale": "ru",
        "subject": "{{ plural(points, one='Сгорает # балл', few='Сгорают # балла', many='Сгорают # баллов', other='Сгорают # балла') }}",
        "text": "{{ greeting }}\n{{ date(expires_on) }}",
        "html": "<p>{{ greeting }}</p>",
    }
    created = await api.client.post("/v1/templates", json=good, headers=api.headers(**idempotency()))
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    for count, subject in (
        (1, "Сгорает 1 балл"),
        (2, "Сгорают 2 балла"),
        (5, "Сгорают 5 баллов"),
        (21, "Сгорает 21 балл"),
    ):
        preview = await api.client.post(
            f"/v1/templates/{template_id}/preview", json={"count": count}, headers=api.headers()
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["subject"] == subject
    again = await api.client.put(
        f"/v1/templates/{template_id}", json={**good, "subject": "Баллы"} | {}, headers=api.headers()
    )
    assert again.status_code == 422  # message_type/locale are not part of a new version
    updated = await api.client.put(
        f"/v1/templates/{template_id}",
        json={k: good[k] for k in ("subject", "text", "html")} | {"subject": "Баллы"},
        headers=api.headers(),
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    versions = (await api.client.get(f"/v1/templates/{template_id}/versions", headers=api.headers())).json()[
        "items"
    ]
    assert [v["version"] for v in versions] == [2, 1]
    duplicate = await api.client.post("/v1/templates", json=good, headers=api.headers(**idempotency()))
    assert duplicate.status_code == 409

    # The shipped Welsh default, previewed for a sample customer at each count: six plural forms.
    welsh = {
        count: (
            await api.client.post(
                "/v1/templates/preview",
                json={"message_type": "points_expiring", "locale": "cy", "count": count},
                headers=api.headers(),
            )
        ).json()["subject"]
        for count in (0, 1, 2, 3, 6, 7)
    }
    assert [welsh[n].split(" yn ")[0] for n in (0, 1, 2, 3, 6, 7)] == [
        "Bydd 0 pwynt",
        "Bydd 1 pwynt",
        "Bydd 2 bwynt",
        "Bydd 3 phwynt",
        "Bydd 6 phwynt",
        "Bydd 7 pwynt",
    ]

    # A real customer: their name and points.
    await order(api, "o-1", {"external_id": "zoe", "name": "Zoë Quinn", "locale": "en-GB"})
    real = await api.client.post(
        "/v1/templates/preview",
        json={"message_type": "win_back", "locale": "en", "customer": "zoe"},
        headers=api.headers(),
    )
    assert real.status_code == 200, real.text
    assert "Hi Zoë," in real.json()["text"] and "since your last order on 2 March 2026" in real.json()["text"]
    assert real.json()["locale"] == "en-GB"


BAD_TEMPLATES = [
    ({"subject": "{{ custmer.first_name }}"}, "subject", 1, "unknown variable 'custmer'"),
    ({"text": "Hello\n{% if points %}\nno end"}, "text", 3, "Unexpected end of template"),
    ({"text": "a\nb\n{{ points.nope }}"}, "text", 3, "has no attribute 'nope'"),
    (
        {"html": "{{ plural(points, one='# балл', other='# балла') }}"},
        "html",
        1,
        "plural() needs the forms few, many",
    ),
]


@pytest.mark.parametrize(("change", "part", "line", "error"), BAD_TEMPLATES)
async def test_a_template_that_fails_to_render_is_refused_at_save(
    api: Api, change: dict[str, str], part: str, line: int, error: str
) -> None:
    body = {
        "message_type": "points_expiring",
        "locale": "ru",
        "subject": "S",
        "text": "T",
        "html": "<p>H</p>",
        **change,
    }
    before = table_counts(api.client)
    response = await api.client.post("/v1/templates", json=body, headers=api.headers(**idempotency()))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == part and problem["line"] == line and error in problem["detail"], problem
    assert table_counts(api.client) == before


BAD_INPUTS = [
    (
        "POST",
        "/v1/journeys",
        {
            "key": "x",
            "name": "X",
            "trigger": {"kind": "order_placed"},
            "steps": [{"delay": {"days": -1}, "message_type": "order_thank_you"}],
        },
        "steps[0].delay.days",
    ),
    (
        "POST",
        "/v1/journeys",
        {
            "key": "x",
            "name": "X",
            "trigger": {"kind": "journey_completed", "journey": "x"},
            "steps": [{"message_type": "birthday"}],
        },
        "trigger.journey",
    ),
    (
        "POST",
        "/v1/journeys",
        {"key": "x", "name": "X", "trigger": {"kind": "inactivity"}, "steps": [{"message_type": "win_back"}]},
        "trigger.days",
    ),
    (
        "POST",
        "/v1/journeys",
        {"key": "x", "name": "X", "trigger": {"kind": "order_placed"}, "steps": [{"message_type": "nope"}]},
        "steps[0].message_type",
    ),
    (
        "POST",
        "/v1/journeys",
        {"key": "x", "name": "X", "trigger": {"kind": "order_placed"}, "steps": []},
        "steps",
    ),
    (
        "POST",
        "/v1/templates",
        {"message_type": "birthday", "locale": "de", "subject": "s", "text": "t", "html": "h"},
        "locale",
    ),
    ("PUT", "/v1/messaging/settings", {"from_email": "not an address"}, "from_email"),
    (
        "PUT",
        "/v1/messaging/settings",
        {"quiet_hours": {"start": "25:00", "end": "08:00"}},
        "quiet_hours.start",
    ),
    ("PUT", "/v1/messaging/settings", {"quiet_hours": {"start": "08:00", "end": "08:00"}}, "quiet_hours"),
    ("POST", "/v1/suppressions", {"email": "a..b@example.com"}, "email"),
    (
        "POST",
        "/v1/orders",
        {
            "external_id": "o-9",
            "customer": {"external_id": "c", "email": "<x@y.z>"},
            "currency": "EUR",
            "placed_at": iso(START),
            "lines": [],
            "total_amount": 0,
        },
        "customer.email",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "field_name"), BAD_INPUTS)
async def test_bad_input_is_a_422_naming_the_field_and_changes_nothing(
    api: Api, method: str, path: str, body: dict[str, Any], field_name: str
) -> None:
    await api.client.get("/v1/journeys", headers=api.headers())  # the shipped journeys exist
    before = table_counts(api.client)
    # A key for the creating POSTs that require one (the others ignore it): the body is what is refused.
    response = await api.client.request(method, path, json=body, headers=api.headers(**idempotency()))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field_name, response.json()
    assert table_counts(api.client) == before


async def test_chained_journeys_cannot_loop(api: Api) -> None:
    def chained(key: str, after: str) -> dict[str, Any]:
        return {
            "key": key,
            "name": key,
            "trigger": {"kind": "journey_completed", "journey": after},
            "steps": [{"message_type": "birthday"}],
        }

    assert (
        await api.client.post(
            "/v1/journeys", json=chained("a", "post_purchase"), headers=api.headers(**idempotency())
        )
    ).status_code == 201
    assert (
        await api.client.post("/v1/journeys", json=chained("b", "a"), headers=api.headers(**idempotency()))
    ).status_code == 201
    loop = await api.client.put("/v1/journeys/a", json=chained("a", "b"), headers=api.headers())
    assert (
        loop.status_code == 422 and "a -> b -> a" in loop.json()["detail"]
    ) or "b -> a -> b" in loop.json()["detail"]
    assert (await api.client.delete("/v1/journeys/a", headers=api.headers())).status_code == 409


async def test_repeat_customers_enter_when_their_own_rhythm_says_so(api: Api, clock: FrozenClock) -> None:
    await enable(api, "repeat_customer")
    # Every 20 days: due 20 days after the last order. A one-order customer never enters (min 2 orders).
    for n, day in enumerate((0, 20, 40)):
        profile = {"external_id": "regular", "marketing_consent": True}
        await order(api, f"r-{n}", profile, placed_at=iso(START - timedelta(days=60) + timedelta(days=day)))
    await api.order("once", "once", placed_at=iso(START - timedelta(days=100)))
    clock.set(START - timedelta(days=1))  # day 59: the usual 20 days after day 40 have not all passed
    run_journeys(api, clock)
    assert fetch(api.client, "SELECT count(*) AS n FROM journey_enrollment") == [{"n": 0}]
    clock.set(START + timedelta(hours=1))
    run_journeys(api, clock)
    run_journeys(api, clock)
    rows = fetch(
        api.client,
        "SELECT c.external_id, e.context ->> 'interval_days' AS days FROM journey_enrollment e JOIN customer c ON c.id = e.customer_id",
    )
    assert rows == [{"external_id": "regular", "days": "20"}]
    assert fetch(api.client, "SELECT message_type, status FROM message") == [
        {"message_type": "repeat_invitation", "status": "queued"}
    ]


async def test_a_completed_journey_enters_the_one_that_follows_it(api: Api, clock: FrozenClock) -> None:
    await enable(api, "post_purchase")
    follow_up = {
        "key": "after_purchase_gift",
        "name": "A gift a day after the follow-up ends",
        "trigger": {"kind": "journey_completed", "journey": "post_purchase"},
        "steps": [{"delay": {"days": 1}, "message_type": "birthday", "reward_points": 10}],
        "enabled": True,
    }
    assert (
        await api.client.post("/v1/journeys", json=follow_up, headers=api.headers(**idempotency()))
    ).status_code == 201
    clock.advance(timedelta(minutes=1))
    dan = {"external_id": "dan", "email": "dan@example.com", "marketing_consent": True}
    await order(api, "o-1", dan, placed_at=iso(clock.now()))
    for days in (0, 5, 7):  # thank-you, check-in, review request: post_purchase completes
        clock.advance(timedelta(days=days))
        run_journeys(api, clock)
    entered = fetch(
        api.client,
        "SELECT j.key, e.status, e.next_due_at FROM journey_enrollment e JOIN journey j ON j.id = e.journey_id ORDER BY j.key",
    )
    assert entered == [
        {"key": "after_purchase_gift", "status": "active", "next_due_at": clock.now() + timedelta(days=1)},
        {"key": "post_purchase", "status": "completed", "next_due_at": None},
    ]
    clock.advance(timedelta(days=1))
    run_journeys(api, clock)
    run_journeys(api, clock)
    queued = fetch(api.client, "SELECT message_type FROM message ORDER BY id")
    assert [m["message_type"] for m in queued] == [
        "order_thank_you",
        "delivery_check_in",
        "review_request",
        "birthday",
    ]
    rewards = fetch(
        api.client, "SELECT points FROM points_entry WHERE reason LIKE 'journey after_purchase_gift%'"
    )
    assert rewards == [{"points": 10}]


async def test_a_batch_claimed_ahead_and_not_used_is_given_back(
    api: Api, clock: FrozenClock, database_url: str
) -> None:
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    for n in range(3):
        profile = {"external_id": f"c-{n}", "email": f"c{n}@example.com"}
        await order(api, f"o-{n}", profile, placed_at=iso(clock.now()))
    run_journeys(api, clock)

    async def first_batch_only() -> int:
        sender = Sender(settings_for(database_url), "early-stopper")
        async with contextlib.aclosing(sender.batches(clock.now(), 1, budget_seconds=60)) as batches:
            async for batch in batches:  # the next batch is being claimed meanwhile
                return len(batch)
        return 0

    assert in_app(api.client, first_batch_only) == 1
    leased = fetch(api.client, "SELECT claimed_by FROM message WHERE claimed_by IS NOT NULL")
    assert leased == [{"claimed_by": "early-stopper"}], "only the batch handed out keeps its lease"


async def test_the_thank_you_says_what_is_pending_until_when_and_what_can_be_spent(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    """A new customer without a name, in Auckland: the order's 90 points are pending for the 14-day return
    window (until 16 March 12:00 UTC, already 17 March there), nothing can be spent yet."""
    await setup_program(api)
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    customer = {
        "external_id": "kiri",
        "email": "kiri@example.com",
        "locale": "en-GB",
        "timezone": "Pacific/Auckland",
    }
    await order(api, "sun-1", customer, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [thanks] = mailbox.take()
    assert thanks["Subject"] == "Thank you for your order sun-1", "no name: no shop's name in its place"
    assert thanks["Content-Language"] == "en-GB"
    text, html = (" ".join(part.split()) for part in parts(thanks))
    said = (
        "This order earns you 90 points, which you can spend from 17 March 2026, once the return period is "
        "over. You have no points to spend yet, and 90 points are pending."
    )
    assert said in text and "Hello," in text
    assert "90 points</strong>, which you can spend from 17 March 2026" in html
    [logged] = await messages(api, "kiri")
    assert logged["locale"] == "en-GB" and logged["locale_note"] is None

    # The return window over and the points matured, the next order's points are pending in their turn.
    clock.set(START + timedelta(days=15))
    matured = in_app(api.client, ledger_jobs.mature, clock.now())
    assert matured.lots == 1
    await order(api, "sun-2", {"external_id": "kiri"}, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [again] = mailbox.take()
    # 17 March 12:00 UTC + 14 days = 31 March 12:00 UTC: 1 April 01:00 in Auckland (NZDT until 5 April).
    assert (
        "This order earns you 90 points, which you can spend from 1 April 2026, once the return period is "
        "over. You can spend 90 points today, and 90 points are pending."
    ) in " ".join(parts(again)[0].split())


async def test_latvian_customers_are_addressed_in_the_vocative(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    for external_id, name in (("janis", "Jānis Bērziņš"), ("anna", "Anna Kalniņa")):
        profile = {
            "external_id": external_id,
            "email": f"{external_id}@example.com",
            "name": name,
            "locale": "lv",
        }
        await order(api, f"o-{external_id}", profile, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 2
    mails = {m["To"].split(" <")[0]: m for m in mailbox.take()}
    janis, anna = mails["Jānis Bērziņš"], mails["Anna Kalniņa"]
    assert janis["Subject"] == "Jāni, paldies par Jūsu pasūtījumu o-janis!"
    assert parts(janis)[0].startswith("Sveiki, Jāni!") and "<p>Sveiki, Jāni!</p>" in parts(janis)[1]
    assert anna["Subject"] == "Anna, paldies par Jūsu pasūtījumu o-anna!"
    assert parts(anna)[0].startswith("Sveiki, Anna!")


async def test_a_customer_locale_picks_the_templates_of_its_language_else_the_default(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api, default_locale="tr")
    await enable(api, "post_purchase")
    clock.advance(timedelta(minutes=1))
    for external_id, locale in (("gb", "en-GB"), ("br", "pt_BR"), ("ru", "ru")):
        profile = {"external_id": external_id, "email": f"{external_id}@example.com", "locale": locale}
        await order(api, f"o-{external_id}", profile, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 3
    languages = {m["To"]: m["Content-Language"] for m in mailbox.take()}
    assert languages == {"gb@example.com": "en-GB", "br@example.com": "tr", "ru@example.com": "ru"}
    logged = {c: (await messages(api, c))[0] for c in ("gb", "br", "ru")}
    assert logged["gb"]["locale"] == "en-GB" and logged["gb"]["locale_note"] is None
    assert logged["br"]["locale"] == "tr"
    assert (
        logged["br"]["locale_note"] == "no templates for locale 'pt-BR'; sent in 'tr', the program's default"
    )
    assert (await api.status("br"))["customer"]["locale"] == "pt-BR"


async def _preview(api: Api, body: dict[str, Any], path: str = "/v1/templates/preview") -> dict[str, Any]:
    response = await api.client.post(path, json=body, headers=api.headers())
    assert response.status_code == 200, (body, response.text)
    result: dict[str, Any] = response.json()
    return result


EXTREME_COUNTS = (0, 1, 2026, 10**9)


async def test_previews_render_every_count_the_schema_allows_with_the_programs_name(
    client: AsyncTestClient[Litestar],
) -> None:
    api = make_program(client, "Demo Shop")
    types = (await api.client.get("/v1/message-types", headers=api.headers())).json()["items"]
    thanks = next(t for t in types if t["key"] == "order_thank_you")
    assert {"pending_points", "points_available_on", "order"} <= set(thanks["variables"])
    for locale in ("en", "ru"):
        for message_type in (t["key"] for t in types):
            for count in EXTREME_COUNTS:
                body = {"message_type": message_type, "locale": locale, "count": count}
                shown = await _preview(api, body)
                assert "Sample Shop" not in shown["text"] and "Demo Shop" in shown["text"], shown["text"]
    # A saved template over dates and counts: the same extremes.
    template = {
        "message_type": "first_order_anniversary",
        "locale": "en",
        "subject": "{{ plural(years, one='# year', other='# years') }} since {{ date(first_order_on) }}",
        "text": "{{ greeting }} {{ orders_count }}",
        "html": "<p>{{ greeting }}</p>",
    }
    created = await api.client.post("/v1/templates", json=template, headers=api.headers(**idempotency()))
    assert created.status_code == 201, created.text
    path = f"/v1/templates/{created.json()['id']}/preview"
    subjects = [(await _preview(api, {"count": count}, path))["subject"] for count in EXTREME_COUNTS]
    assert subjects[:3] == [
        "0 years since March 2, 2026",
        "1 year since March 2, 2025",
        "2,025 years since March 2, 1",
    ]
    assert subjects[3] == "2,025 years since March 2, 1", "as far back as the calendar goes"


async def test_preview_dates_agree_with_the_count_and_the_clock(api: Api, clock: FrozenClock) -> None:
    clock.set(START + timedelta(days=30))  # 1 April 2026
    ru = await _preview(api, {"message_type": "points_expiring", "locale": "ru", "count": 5})
    assert "через 5 дней, 6 апреля 2026 г., с Вашего счёта сгорят 5 баллов" in " ".join(ru["text"].split())
    en = await _preview(api, {"message_type": "win_back", "locale": "en", "count": 40})
    assert "It has been 40 days since your last order on February 20, 2026." in en["text"]
    thanks = await _preview(api, {"message_type": "order_thank_you", "locale": "en", "count": 3})
    assert "which you can spend from April 15, 2026, once the return period is over" in thanks["text"]


async def test_a_real_customers_thank_you_preview_shows_their_pending_points(api: Api) -> None:
    await order(api, "o-1", {"external_id": "zoe", "name": "Zoë Quinn", "locale": "en-GB"})
    shown = await _preview(
        api, {"message_type": "order_thank_you", "locale": "en", "customer": "zoe", "count": 7}
    )
    assert shown["notes"] == ["no order given: the sample order is shown"]
    assert shown["locale"] == "en-GB" and shown["subject"] == "Thank you for your order 1001, Zoë"
    assert "You have no points to spend yet, and 90 points are pending." in " ".join(shown["text"].split())


# A loop the save check's sample customer (Ada) never enters; a real customer does.
GUARDED_LOOP = (
    "{% if customer.first_name == 'Mallory' %}{% for i in range(100000) %}{% for j in range(100000) %}"
    "{% endfor %}{% endfor %}{% endif %}<p>{{ greeting }}</p>"
)


async def test_a_template_over_a_render_limit_fails_its_message_and_the_batch_goes_on(
    api: Api, client: AsyncTestClient[Litestar], clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    other = make_program(client, "Other shop")
    for program in (api, other):
        await setup_program(program)
        await enable(program, "post_purchase")
    saved = await api.client.post(
        "/v1/templates",
        json={
            "message_type": "order_thank_you",
            "locale": "en",
            "subject": "Thanks",
            "text": "{{ greeting }}",
            "html": GUARDED_LOOP,
        },
        headers=api.headers(**idempotency()),
    )
    assert saved.status_code == 201, saved.text  # the samples never reach the loop
    mallory = {"external_id": "m", "email": "mallory@example.com", "name": "Mallory", "locale": "en"}
    grace = {"external_id": "g", "email": "grace@example.com", "name": "Grace", "locale": "en"}
    clock.advance(timedelta(minutes=1))  # orders placed after the journeys were turned on
    assert (await order(api, "o-m", mallory, placed_at=iso(clock.now()))).status_code == 201
    assert (await order(other, "o-g", grace, placed_at=iso(clock.now()))).status_code == 201
    run_journeys(api, clock)
    report = send(api, sender, clock)
    assert (report.failed, report.sent) == (1, 1)
    failed = (await messages(api, "m"))[0]
    assert failed["status"] == "failed"
    assert failed["reason"] == "could not render: over the render limit: more than 100,000 loop iterations"
    assert [m["To"] for m in mailbox.take()] == ["Grace <grace@example.com>"]


async def test_template_writes_and_previews_need_the_admin_scope(api: Api) -> None:
    created = await api.client.post("/v1/templates", json=TEMPLATE_BODY, headers=api.headers(**idempotency()))
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    reader = (
        await api.client.post(
            "/v1/api-keys", json={"name": "r", "scope": "read"}, headers=api.headers(**idempotency())
        )
    ).json()["api_key"]
    for method, path, body in (
        ("POST", "/v1/templates/preview", {"message_type": "win_back", "locale": "en"}),
        ("POST", f"/v1/templates/{template_id}/preview", {"count": 3}),
        ("POST", "/v1/templates", {**TEMPLATE_BODY, "locale": "de"}),
        ("PUT", f"/v1/templates/{template_id}", {k: TEMPLATE_BODY[k] for k in ("subject", "text", "html")}),
        ("DELETE", f"/v1/templates/{template_id}", None),
    ):
        answer = await api.client.request(method, path, json=body, headers=api.headers(reader))
        assert answer.status_code == 403, (method, path, answer.text)
    assert (await api.client.get("/v1/templates", headers=api.headers(reader))).status_code == 200


TEMPLATE_BODY = {
    "message_type": "win_back",
    "locale": "en",
    "subject": "We miss you",
    "text": "{{ greeting }}",
    "html": "<p>{{ greeting }}</p>",
}


@pytest.mark.parametrize(
    ("html", "limit"),
    [
        ("{% for i in range(10000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "loop_iterations"),
        ("{{ ('x' * 10**8)|length }}", "value_size"),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
            "cpu_time",
        ),
    ],
)
async def test_a_hostile_draft_is_refused_naming_the_limit_and_nothing_is_saved(
    api: Api, html: str, limit: str
) -> None:
    draft = {**TEMPLATE_BODY, "html": html}
    preview = await api.client.post(
        "/v1/templates/preview",
        json={
            "message_type": "win_back",
            "locale": "en",
            "parts": {k: draft[k] for k in ("subject", "text", "html")},
        },
        headers=api.headers(),
    )
    saved = await api.client.post("/v1/templates", json=draft, headers=api.headers(**idempotency()))
    for answer in (preview, saved):
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["field"] == "html" and problem["limit"] == limit
        assert "over the render limit" in problem["detail"]
    assert (await api.client.get("/v1/templates", headers=api.headers())).json()["items"] == []


async def test_birthdays_and_first_order_anniversaries_enter_their_journeys(
    api: Api, clock: FrozenClock
) -> None:
    """The scheduled triggers read the dates customers and orders publish (a 29 February birthday is kept
    on the 28th in a year without one); each occasion enters once."""
    await enable(api, "birthday")
    await enable(api, "first_order_anniversary")
    today = clock.now().date()
    consent = {"marketing_consent": True}
    await api.client.put(
        "/v1/customers/born-today",
        json={**consent, "birthday": today.replace(year=1990).isoformat()},
        headers=api.headers(),
    )
    await api.client.put(
        "/v1/customers/born-tomorrow",
        json={**consent, "birthday": (today + timedelta(days=1)).replace(year=1990).isoformat()},
        headers=api.headers(),
    )
    await order(
        api,
        "first-a-year-ago",
        {"external_id": "loyal", **consent},
        placed_at=iso(clock.now() - timedelta(days=365)),
    )
    run_journeys(api, clock)
    run_journeys(api, clock)
    rows = fetch(
        api.client,
        "SELECT c.external_id, e.trigger_key FROM journey_enrollment e JOIN customer c ON c.id = e.customer_id "
        "JOIN journey j ON j.id = e.journey_id WHERE j.key IN ('birthday', 'first_order_anniversary') ORDER BY 1",
    )
    assert rows == [
        {"external_id": "born-today", "trigger_key": f"birthday:{today.year}"},
        {"external_id": "loyal", "trigger_key": f"anniversary:{today.year}"},
    ]


async def test_a_leap_day_birthday_is_kept_on_the_28th_in_other_years(database_url: str) -> None:
    from datetime import date

    import asyncpg

    from service.customers import service as customers

    # The published selection over one made-up customer row instead of the table.
    sql = customers.birthdays_on("$1", "$2::date").replace(
        "FROM customer c", "FROM (SELECT $1::int AS program_id, $3::date AS birthday, 1 AS id) c"
    )
    leap = date(2000, 2, 29)
    conn = await asyncpg.connect(database_url)
    try:
        picked = [
            bool(await conn.fetch(sql, 1, today, leap))
            for today in (date(2027, 2, 28), date(2028, 2, 28), date(2028, 2, 29), date(2027, 3, 1))
        ]
    finally:
        await conn.close()
    assert picked == [True, False, True, False]
