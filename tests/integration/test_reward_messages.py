"""Codes in messages with real parts (PostgreSQL, a real SMTP server): a redeemed code is sent by the
`reward_issued` journey, a journey step gives a code at no cost in its own message, unused codes get one
notice 7 days ahead (`code_expiring`) and expire by the sweep, points given back only if the program says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.core import db
from service.core.clock import FrozenClock
from service.messaging.jobs import Sender
from service.rewards import jobs
from service.scheduler.worker import Worker
from tests.conftest import Api, fetch, idempotency, in_app, iso, make_program, settings_for, verify_ledger
from tests.integration import test_messaging as messaging_tests
from tests.integration.test_messaging import (
    Mailbox,
    enable,
    messages,
    order,
    parts,
    run_journeys,
    send,
    setup_program,
)

# The messaging tests' real SMTP server and sender, as fixtures of this module too.
smtp_server, mailbox, sender = messaging_tests.smtp_server, messaging_tests.mailbox, messaging_tests.sender

FIVE_OFF = {
    "kind": "amount_off",
    "name": {"en": "EUR 5 off", "lv": "EUR 5 atlaide"},
    "description": {"en": "Off any order of EUR 25 or more.", "lv": "Jebkuram pasūtījumam no EUR 25."},
    "cost_points": 500,
    "amount": {"amount": 500, "currency": "EUR"},
    "code_valid_days": 30,
}


async def reward(api: Api, **overrides: Any) -> str:
    created = await api.client.post(
        "/v1/rewards", json={**FIVE_OFF, **overrides}, headers=api.headers(**idempotency())
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def customer(api: Api, external_id: str, **profile: Any) -> None:
    body = {"email": f"{external_id}@example.com", "name": external_id.title(), **profile}
    response = await api.client.put(f"/v1/customers/{external_id}", json=body, headers=api.headers())
    assert response.status_code in (200, 201), response.text


async def earn(api: Api, external_id: str, points: int) -> None:
    made = await api.client.post(
        f"/v1/customers/{external_id}/adjustments",
        json={"points": points, "reason": "seed"},
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text


async def redeem(api: Api, external_id: str, reward_id: str) -> dict[str, Any]:
    made = await api.client.post(
        f"/v1/customers/{external_id}/redemptions",
        json={"reward_id": reward_id},
        headers=api.headers(**idempotency()),
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def available(api: Api, external_id: str) -> int:
    return int((await api.status(external_id))["points"]["available"])


def redemptions(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        "SELECT r.code, r.status, r.source, r.source_key, r.points, r.expiry_notice, c.external_id AS customer "
        "FROM redemption r JOIN customer c ON c.id = r.customer_id ORDER BY r.created_at, r.code",
    )


def topics(api: Api, topic: str) -> list[dict[str, Any]]:
    return [
        db.json_value(r["payload"])
        for r in fetch(api.client, "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", topic)
    ]


async def journey(api: Api, body: dict[str, Any]) -> Any:
    return await api.client.post("/v1/journeys", json=body, headers=api.headers(**idempotency()))


async def test_a_redeemed_code_is_sent_in_the_customers_locale_and_reminded_before_it_lapses(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    journeys = {
        j["key"]: j for j in (await api.client.get("/v1/journeys", headers=api.headers())).json()["items"]
    }
    assert journeys["reward_issued"]["trigger"]["kind"] == "reward_issued"
    assert journeys["code_expiring"]["trigger"]["kind"] == "code_expiring"
    assert not journeys["reward_issued"]["enabled"] and not journeys["code_expiring"]["enabled"]
    await enable(api, "reward_issued")
    await enable(api, "code_expiring")
    clock.advance(timedelta(minutes=1))
    await customer(api, "janis", name="Jānis Bērziņš", locale="lv")
    await earn(api, "janis", 1200)
    five = await reward(api)
    code = (await redeem(api, "janis", five))["code"]

    run_journeys(api, clock)
    run_journeys(api, clock)  # a rerun queues nothing twice
    assert send(api, sender, clock).sent == 1
    [issued] = mailbox.take()
    text, html = parts(issued)
    assert issued["Subject"] == "Jūsu kods: EUR 5 atlaide"
    assert f"\n{code}\n" in text and f"<strong>{code}</strong>" in html
    assert "Jebkuram pasūtījumam no EUR 25." in text and "Sveiki, Jāni!" in text
    assert "derīguma termiņš – 2026. gada 1. aprīlis" in text, "30 days from 2 March, in Riga's calendar"

    # 7 days before it lapses: one notice, whatever the sweep's reruns; the reminder names code and days.
    clock.advance(timedelta(days=22))
    assert in_app(api.client, jobs.code_expiry_notices, clock.now()) == 0, "not yet within 7 days"
    clock.advance(timedelta(days=1, hours=1))
    assert in_app(api.client, jobs.code_expiry_notices, clock.now()) == 1
    assert in_app(api.client, jobs.code_expiry_notices, clock.now()) == 0
    [notice] = topics(api, "redemption.expiring_soon")
    assert notice["code"] == code and notice["days"] == 7 and notice["customer"] == "janis"
    assert notice["reward"]["name"]["lv"] == "EUR 5 atlaide" and notice["source"] == "points"
    assert redemptions(api)[0]["expiry_notice"] == 7
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [reminder] = mailbox.take()
    assert reminder["Subject"].startswith("Jūsu koda derīguma termiņš")
    assert f"kodu {code} (EUR 5 atlaide)" in parts(reminder)[0] and "pēc 7 dienām" in parts(reminder)[0]

    # The sweep: past its date the code expires; its 500 points stay spent (the program's default).
    clock.advance(timedelta(days=7))
    assert in_app(api.client, jobs.expire_codes, clock.now()).codes == 1
    assert in_app(api.client, jobs.expire_codes, clock.now()).codes == 0
    assert [r["status"] for r in redemptions(api)] == ["expired"]
    assert await available(api, "janis") == 700
    assert len(topics(api, "redemption.expired")) == 1
    verify_ledger(api.client)


async def _set_program(api: Api, **columns: Any) -> None:
    async def run() -> None:
        async with db.connection() as conn:
            for name, value in columns.items():
                await conn.execute(
                    f"UPDATE program SET {name} = $2 WHERE id = $1::uuid", api.program_id, value
                )

    in_app(api.client, run)


async def test_the_sweep_expires_in_chunks_leaves_used_codes_and_returns_points_when_told(
    api: Api, clock: FrozenClock
) -> None:
    await _set_program(api, code_expiry_returns_points=True)
    five = await reward(api, code_valid_days=10)
    endless = await reward(api, code_valid_days=None, name={"en": "Mug"})
    for name in ("ann", "ben", "cleo"):
        await customer(api, name)
        await earn(api, name, 1000)
    codes = {name: (await redeem(api, name, five))["code"] for name in ("ann", "ben", "cleo")}
    await redeem(api, "ann", endless)
    used = await api.client.post(f"/v1/codes/{codes['ben']}/use", json={}, headers=api.headers())
    assert used.status_code == 200, used.text

    # The notice skips the used code and the one that never expires.
    clock.advance(timedelta(days=4))
    assert in_app(api.client, jobs.code_expiry_notices, clock.now()) == 2
    clock.advance(timedelta(days=7))
    result = in_app(api.client, jobs.expire_codes, clock.now(), 1)  # one code per chunk
    assert result.codes == 2 and result.chunks >= 2
    by_customer = {(r["customer"], r["code"]): r["status"] for r in redemptions(api)}
    assert (
        by_customer[("ann", codes["ann"])] == "expired" and by_customer[("cleo", codes["cleo"])] == "expired"
    )
    assert by_customer[("ben", codes["ben"])] == "used"
    assert sorted(by_customer.values()) == ["expired", "expired", "issued", "used"]
    # The program gives expired codes' points back: ann spent 500 + 500, got 500 back.
    assert await available(api, "ann") == 500 and await available(api, "cleo") == 1000
    assert await available(api, "ben") == 500
    verify_ledger(api.client)


async def test_a_journey_step_gives_a_code_at_no_cost_once_in_its_own_message(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    five = await reward(api)
    await enable(api, "reward_issued")  # on: yet the step's own message is the only one with the code
    welcome = {
        "key": "welcome_gift",
        "name": "A code after the first order",
        "trigger": {"kind": "order_placed"},
        "steps": [{"message_type": "reward_issued", "reward": five}],
        "enabled": True,
    }
    created = await journey(api, welcome)
    assert created.status_code == 201, created.text
    assert created.json()["steps"][0]["reward"] == five
    clock.advance(timedelta(minutes=1))
    await order(
        api,
        "o-1",
        {"external_id": "ada", "email": "ada@example.com", "name": "Ada"},
        placed_at=iso(clock.now()),
    )
    run_journeys(api, clock)
    run_journeys(api, clock)
    [given] = redemptions(api)
    assert given["source"] == "journey" and given["points"] == 0 and given["status"] == "issued"
    assert given["source_key"].startswith("journey:")
    created_events = topics(api, "redemption.created")
    assert [e["source"] for e in created_events] == ["journey"]
    assert send(api, sender, clock).sent == 1
    [mail] = mailbox.take()
    text, _html = parts(mail)
    assert mail["Subject"] == "Your code for EUR 5 off" and f"\n{given['code']}\n" in text
    assert "Enter it at checkout by April 1, 2026." in text
    # The whole journey again gives nothing twice.
    run_journeys(api, clock)
    assert len(redemptions(api)) == 1 and send(api, sender, clock).claimed == 0


async def test_a_reward_that_cannot_be_given_leaves_the_message_without_a_code(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    paused = await reward(api, status="paused")
    thanks = {
        "key": "thanks_gift",
        "name": "A thank-you with a gift",
        "trigger": {"kind": "order_placed"},
        "steps": [{"message_type": "repeat_invitation", "reward": paused, "offer": "Early access."}],
        "enabled": True,
    }
    assert (await journey(api, thanks)).status_code == 201
    clock.advance(timedelta(minutes=1))
    profile = {"external_id": "ada", "email": "ada@example.com", "name": "Ada", "marketing_consent": True}
    await order(api, "o-1", profile, placed_at=iso(clock.now()))
    run_journeys(api, clock)
    assert redemptions(api) == []
    assert send(api, sender, clock).sent == 1
    text, html = parts(mailbox.take()[0])
    assert "Early access." in text and "A gift for you" not in text + html


async def test_steps_are_checked_at_save(api: Api) -> None:
    five = await reward(api)
    unknown = "00000000-0000-4000-8000-000000000000"
    base = {"key": "j", "name": "J", "trigger": {"kind": "order_placed"}}
    cases = [
        ({"steps": [{"message_type": "reward_issued", "reward": unknown}]}, "steps[0].reward"),
        (
            {"steps": [{"message_type": "win_back"}, {"message_type": "order_thank_you", "reward": five}]},
            "steps[1].reward",
        ),
        ({"steps": [{"message_type": "reward_issued"}]}, "steps[0].message_type"),
        ({"steps": [{"message_type": "code_expiring", "reward": None}]}, "steps[0].message_type"),
    ]
    for body, field in cases:
        response = await journey(api, {**base, **body})
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field, response.text
    # Another program's reward is unknown there.
    other = make_program(api.client, "Other shop")
    theirs = await journey(other, {**base, "steps": [{"message_type": "reward_issued", "reward": five}]})
    assert theirs.status_code == 422 and theirs.json()["field"] == "steps[0].reward", theirs.text
    ours = await journey(api, {**base, "steps": [{"message_type": "reward_issued", "reward": five}]})
    assert ours.status_code == 201, ours.text


async def test_the_worker_runs_the_code_sweeps(api: Api, database_url: str, clock: FrozenClock) -> None:
    worker = Worker(settings_for(database_url), clock, worker_id="test-worker")
    names = {job.name: job for job in worker.jobs()}
    assert {"rewards.expire", "rewards.expiry_notices"} <= set(names)
    assert "7 days" in names["rewards.expiry_notices"].about


async def test_the_code_expiring_message_is_not_sent_for_a_code_used_since_its_notice(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    await enable(api, "code_expiring")
    await customer(api, "ada")
    await earn(api, "ada", 600)
    code = (await redeem(api, "ada", await reward(api, code_valid_days=5)))["code"]
    clock.advance(timedelta(minutes=1))
    assert in_app(api.client, jobs.code_expiry_notices, clock.now()) == 1
    run_journeys(api, clock)  # queued
    used = await api.client.post(f"/v1/codes/{code}/use", json={}, headers=api.headers())
    assert used.status_code == 200, used.text
    assert send(api, sender, clock).suppressed == 1
    [latest] = await messages(api, "ada")
    assert latest["status"] == "suppressed" and latest["reason"] == "the code is used"
    assert mailbox.take() == []
