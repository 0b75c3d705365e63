"""Surprise gifts announced by message, with real parts (PostgreSQL, a real SMTP server): a gift.granted
event whose rule announces it by message enters the shipped `surprise` journey (on from the start, even
for a program whose journeys were never read) and goes out in the customer's language with its note and
code; a gift kept for the parcel sends nothing, and a gift's code never also starts `reward_issued`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from service.core import db
from service.core.clock import FrozenClock
from service.ledger import service as ledger
from service.messaging import notes
from service.messaging.jobs import Sender
from service.outbox.service import Event, emit
from service.programs import service as programs
from service.rewards import service as rewards
from tests.conftest import Api, fetch, in_app
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
from tests.integration.test_reward_messages import reward

# The messaging tests' real SMTP server and sender, as fixtures of this module too.
smtp_server, mailbox, sender = messaging_tests.smtp_server, messaging_tests.mailbox, messaging_tests.sender

JANIS = {
    "external_id": "janis",
    "email": "janis@example.com",
    "name": "Jānis Bērziņš",
    "locale": "lv",
    "timezone": "Europe/Riga",
    "marketing_consent": True,
}


def _customer_row(api: Api, external_id: str) -> dict[str, Any]:
    [row] = fetch(
        api.client,
        "SELECT id, name, email, external_id, locale FROM customer WHERE program_id = $1::uuid AND external_id = $2",
        api.program_id,
        external_id,
    )
    return row


def _code(api: Api, external_id: str, reward_id: str, clock: FrozenClock) -> dict[str, Any]:
    """A code at no cost, as a gift rule gives it (source gift): the payload's code gift."""
    row = _customer_row(api, external_id)

    async def run() -> Any:
        async with db.transaction() as conn:
            program = await programs.load(conn, UUID(api.program_id))
            return await rewards.grant(
                conn,
                program,
                ledger.Customer(program.id, row["id"], external_id),
                UUID(reward_id),
                source="gift",
                source_key=f"gift:{uuid4()}:1",
                now=clock.now(),
                actor="gift rule",
            )

    granted = in_app(api.client, run)
    assert granted is not None
    return {
        "kind": "reward",
        "redemption_id": str(granted.redemption_id),
        "code": granted.code,
        "reward_name": granted.reward_name,
        "expires_at": granted.expires_at.isoformat() if granted.expires_at else None,
    }


def _granted(api: Api, clock: FrozenClock, payload: dict[str, Any]) -> None:
    async def run() -> None:
        async with db.transaction() as conn:
            await emit(conn, UUID(api.program_id), [Event("gift.granted", payload)], clock.now())

    in_app(api.client, run)


def _payload(
    customer: str, order_id: str | None, announce: str, gifts: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "gift_id": str(uuid4()),
        "rule_id": str(uuid4()),
        "rule_version": 1,
        "rule_name": "Third order thank-you",
        "customer": customer,
        "trigger": "nth_order",
        "order": order_id,
        "announce": announce,
        "cost": {"amount": 500, "currency": "EUR"},
        "gifts": gifts,
    }


def _journeys(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        "SELECT key, enabled, deleted_at FROM journey WHERE program_id = $1::uuid ORDER BY key",
        api.program_id,
    )


async def test_a_gift_announced_by_message_goes_out_in_latvian_with_its_note_and_code(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)  # the program's journeys are never read before the gift
    assert _journeys(api) == []
    clock.advance(timedelta(minutes=1))
    await order(api, "o-1", JANIS)
    five = await reward(api)
    code = _code(api, "janis", five, clock)
    note = notes.render_note(
        "lv",
        "en",
        None,
        customer={"first_name": "Jānis", "name": "Jānis Bērziņš"},
        item={"name": "Trail shoe", "sku": "SHOE-1"},
        order=None,
        program={"name": "Shop"},
    )
    assert note.startswith("Sveiki, Jāni!") and "(Trail shoe)" in note
    gifts = [
        {"kind": "points", "points": 200},
        code,
        {"kind": "item", "sku": "MUG-1", "name": "Enamel mug", "pick_note": "wrap it", "in_parcel": True},
        {"kind": "note", "text": note},
    ]
    _granted(api, clock, _payload("janis", "o-1", "message", gifts))

    run_journeys(api, clock)
    run_journeys(api, clock)  # a rerun queues nothing twice
    journeys = {j["key"]: j for j in _journeys(api)}
    assert journeys["surprise"]["enabled"] and set(journeys) == {"surprise"}, "seeded by the worker"
    assert send(api, sender, clock).sent == 1
    [surprise] = mailbox.take()
    assert surprise["Subject"] == "Jāni, neliels pārsteigums tieši Jums!"
    text, html = parts(surprise)
    assert "Gribējām Jums pateikties par pasūtījumu o-1" in text
    assert "Jūsu kontā esam ieskaitījuši 200 bonusa punktu." in text
    assert f"Dāvana Jums – EUR 5 atlaide. Jūsu kods: {code['code']}" in text
    assert "derīguma termiņš – 2026. gada 1. aprīlis" in text, "30 days, in Riga's calendar"
    assert "Jūsu sūtījumā atradīsiet nelielu papildu pārsteigumu: Enamel mug." in text
    assert f"Mūsu zīmīte Jums:\n\n{note}\n" in text
    assert "<blockquote>Sveiki, Jāni!<br>" in html and f"<strong>{code['code']}</strong>" in html
    [row] = await messages(api, "janis")
    assert row["message_type"] == "surprise" and row["status"] == "sent" and row["locale"] == "lv"

    # The rest of the shipped journeys arrive on the first read, all off; surprise stays as it was.
    listed = (await api.client.get("/v1/journeys", headers=api.headers())).json()["items"]
    assert len(listed) == 13 and [j["key"] for j in listed if j["enabled"]] == ["surprise"]


async def test_a_gift_kept_for_the_parcel_sends_nothing_and_its_code_never_starts_reward_issued(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    await enable(api, "reward_issued")  # on: yet a gift's code is the gift's to announce, or the parcel's
    clock.advance(timedelta(minutes=1))
    await order(api, "o-1", JANIS)
    five = await reward(api)
    code = _code(api, "janis", five, clock)
    _granted(api, clock, _payload("janis", "o-1", "parcel", [code, {"kind": "note", "text": "Paldies!"}]))

    run_journeys(api, clock)
    assert fetch(api.client, "SELECT count(*) AS n FROM journey_enrollment")[0]["n"] == 0
    assert send(api, sender, clock).sent == 0 and mailbox.take() == []
    assert await messages(api, "janis") == []

    # The same code announced by message: one surprise, with the code, and still no reward_issued.
    _granted(api, clock, _payload("janis", None, "message", [code]))
    run_journeys(api, clock)
    assert send(api, sender, clock).sent == 1
    [surprise] = mailbox.take()
    text, _ = parts(surprise)
    assert code["code"] in text and "par to, ka esat ar mums" in text, "no order: a gift for being here"
    assert [m["message_type"] for m in await messages(api, "janis")] == ["surprise"]


async def test_the_surprise_journey_reaches_programs_that_had_the_others_but_never_returns_once_deleted(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    # A program from before surprise gifts: every other shipped journey, one of them deleted.
    assert (await api.client.get("/v1/journeys", headers=api.headers())).status_code == 200
    fetch(api.client, "DELETE FROM journey WHERE key = 'surprise' RETURNING 1")
    deleted = await api.client.delete("/v1/journeys/win_back", headers=api.headers())
    assert deleted.status_code == 204, deleted.text
    assert "surprise" not in {j["key"] for j in _journeys(api)}

    listed = (await api.client.get("/v1/journeys", headers=api.headers())).json()["items"]
    keys = {j["key"]: j for j in listed}
    assert keys["surprise"]["enabled"] and "win_back" not in keys, "the missing one, not the deleted one"

    # Deleted by the marketer: neither a read nor a gift brings it back, and the gift sends nothing.
    assert (await api.client.delete("/v1/journeys/surprise", headers=api.headers())).status_code == 204
    assert "surprise" not in {
        j["key"] for j in (await api.client.get("/v1/journeys", headers=api.headers())).json()["items"]
    }
    clock.advance(timedelta(minutes=1))
    await order(api, "o-1", JANIS)
    _granted(api, clock, _payload("janis", "o-1", "message", [{"kind": "points", "points": 50}]))
    run_journeys(api, clock)
    assert [j["key"] for j in _journeys(api) if j["key"] == "surprise" and j["deleted_at"] is None] == []
    assert send(api, sender, clock).sent == 0 and await messages(api, "janis") == []


async def test_a_gift_for_a_customer_without_marketing_consent_is_not_announced(
    api: Api, clock: FrozenClock, sender: Sender, mailbox: Mailbox
) -> None:
    await setup_program(api)
    clock.advance(timedelta(minutes=1))
    await order(api, "o-1", {**JANIS, "marketing_consent": False})
    _granted(api, clock, _payload("janis", "o-1", "message", [{"kind": "points", "points": 50}]))
    run_journeys(api, clock)
    [enrollment] = fetch(api.client, "SELECT status, exit_reason, trigger_key FROM journey_enrollment")
    assert enrollment["status"] == "exited" and enrollment["exit_reason"] == "no marketing consent"
    assert enrollment["trigger_key"].startswith("gift:")
    assert send(api, sender, clock).sent == 0
