"""Cases over HTTP: opened by an agent or a complaint event, moved by notes and recoveries, closed with a
note, their response times measured with the injectable clock; the lists' filters and cursor pages, the
customer status' open cases, programs kept apart, and which keys may act on them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import START, Api, fetch, idempotency, iso, make_program, table_counts
from tests.integration.test_recovery import complain, recover, settings


async def make_key(api: Api, name: str, scope: str = "agent") -> tuple[str, str]:
    """A key of `scope` named `name`: (the key, its id)."""
    made = await api.client.post(
        "/v1/api-keys", json={"name": name, "scope": scope}, headers=api.headers(**idempotency())
    )
    assert made.status_code == 201, made.text
    return made.json()["api_key"], made.json()["id"]


async def open_case(api: Api, key: str, body: dict[str, Any], idem: str | None = None) -> Any:
    headers = api.headers(key, **({"Idempotency-Key": idem} if idem else idempotency()))
    return await api.client.post("/v1/cases", json=body, headers=headers)


async def opened(api: Api, key: str, customer: str = "c-1", summary: str = "parcel lost") -> dict[str, Any]:
    made = await open_case(api, key, {"customer": customer, "summary": summary})
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def note(api: Api, key: str, case_id: str, body: Any) -> Any:
    return await api.client.post(
        f"/v1/cases/{case_id}/notes", json=body, headers=api.headers(key, **idempotency())
    )


async def close(api: Api, key: str, case_id: str, body: Any) -> Any:
    return await api.client.post(
        f"/v1/cases/{case_id}/close", json=body, headers=api.headers(key, **idempotency())
    )


async def get_case(api: Api, key: str, case_id: str) -> dict[str, Any]:
    got = await api.client.get(f"/v1/cases/{case_id}", headers=api.headers(key))
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


async def listed(api: Api, key: str, query: str) -> list[str]:
    got = await api.client.get(f"/v1/cases?{query}", headers=api.headers(key))
    assert got.status_code == 200, got.text
    assert got.json()["next_cursor"] is None
    return [c["id"] for c in got.json()["items"]]


def payloads(api: Api, topic: str) -> list[dict[str, Any]]:
    rows = fetch(api.client, "SELECT payload FROM outbox WHERE topic = $1 ORDER BY tx, seq", topic)
    found = [r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"]) for r in rows]
    assert all(p.pop("type") == topic and p.pop("id") for p in found)  # the envelope; the rest is the event's
    return found


def timeline(case: dict[str, Any]) -> list[tuple[str, str, str | None, str]]:
    return [(e["kind"], e["text"], e["by"] and e["by"]["name"], e["at"]) for e in case["entries"]]


def count(api: Api, sql: str, *args: Any) -> int:
    return int(fetch(api.client, sql, *args)[0]["n"])


EUR0 = {"amount": 0, "currency": "EUR"}


# --- opened by an agent -------------------------------------------------------------------------------


async def test_an_agent_opens_a_case_as_its_first_action(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, mira_id = await make_key(api, "Mira")
    body = {"customer": "c-1", "summary": "parcel lost", "order": "o-1", "note": "called the carrier"}
    made = await open_case(api, mira, body, idem="case-1")
    assert made.status_code == 201, made.text
    case = made.json()
    mira_ref = {"key_id": mira_id, "name": "Mira"}
    assert {k: v for k, v in case.items() if k not in ("id", "entries")} == {
        "customer_external_id": "c-1",
        "status": "open",
        "source": "agent",
        "summary": "parcel lost",
        "order_external_id": "o-1",
        "agent": mira_ref,
        "opened_at": iso(START),
        "first_action_at": iso(START),
        "time_to_first_action_seconds": 0,
        "closed_at": None,
        "time_to_resolution_seconds": None,
        "resolution": None,
        "reopened": 0,
        "recoveries": 0,
        "recovery_cost": EUR0,
    }
    assert timeline(case) == [
        ("opened", "Opened by Mira: parcel lost", "Mira", iso(START)),
        ("note", "called the carrier", "Mira", iso(START)),
    ]
    assert all(e["by"] == mira_ref and e["recovery_id"] is None for e in case["entries"])
    assert await get_case(api, mira, case["id"]) == case
    [event] = payloads(api, "case.opened")
    assert event == {
        "case_id": case["id"],
        "customer": "c-1",
        "source": "agent",
        "summary": "parcel lost",
        "order": "o-1",
        "agent": mira_ref,
        "opened_at": iso(START),
    }
    # The same key and body later: the same case, nothing written again.
    clock.advance(timedelta(minutes=5))
    before = table_counts(api.client)
    again = await open_case(api, mira, body, idem="case-1")
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == case
    assert table_counts(api.client) == before
    assert count(api, "SELECT count(*) AS n FROM service_case") == 1
    assert len(payloads(api, "case.opened")) == 1
    # The same key with another body is refused.
    other = await open_case(api, mira, {**body, "summary": "parcel late"}, idem="case-1")
    assert other.status_code == 409, other.text
    assert other.json()["type"] == "urn:encore:problem:idempotency-key-reused"


async def test_an_agent_case_without_a_note_and_bad_openings(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    assert (await api.order("o-2", customer="c-2")).status_code == 201
    mira, _ = await make_key(api, "Mira")
    case = await opened(api, mira)
    assert timeline(case) == [("opened", "Opened by Mira: parcel lost", "Mira", iso(START))]
    assert case["order_external_id"] is None and case["time_to_first_action_seconds"] == 0
    before = table_counts(api.client)
    unknown = await open_case(api, mira, {"customer": "nobody", "summary": "x"})
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["field"] == "customer"
    foreign = await open_case(api, mira, {"customer": "c-1", "summary": "x", "order": "o-2"})
    assert foreign.status_code == 422, foreign.text
    assert foreign.json()["field"] == "order"
    no_order = await open_case(api, mira, {"customer": "c-1", "summary": "x", "order": "o-9"})
    assert no_order.status_code == 404, no_order.text
    assert no_order.json()["field"] == "order"
    empty = await open_case(api, mira, {"customer": "c-1", "summary": ""})
    assert empty.status_code == 422, empty.text
    assert empty.json()["field"] == "summary"
    missing = await open_case(api, mira, {"customer": "c-1"})
    assert missing.status_code == 422, missing.text
    assert missing.json()["field"] == "summary"
    no_key = await api.client.post(
        "/v1/cases", json={"customer": "c-1", "summary": "x"}, headers=api.headers(mira)
    )
    assert no_key.status_code == 400, no_key.text
    assert no_key.json()["field"] == "header:Idempotency-Key"
    assert table_counts(api.client) == before


# --- opened by a complaint ------------------------------------------------------------------------------


async def test_a_complaint_opens_a_case_at_its_own_time(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    assert (await api.order("o-2", customer="c-2")).status_code == 201
    mira, _ = await make_key(api, "Mira")
    clock.advance(timedelta(hours=3))
    happened = START + timedelta(hours=1, minutes=15)
    fields: dict[str, Any] = {
        "properties": {"comment": " box was crushed ", "order": "o-1"},
        "occurred_at": iso(happened),
    }
    first = await complain(api, idem="complaint-1", **fields)
    assert first["occurred_at"] == iso(happened)
    case_id = first["case_id"]
    assert case_id
    case = await get_case(api, mira, case_id)
    assert {k: v for k, v in case.items() if k not in ("id", "entries")} == {
        "customer_external_id": "c-1",
        "status": "open",
        "source": "complaint",
        "summary": "box was crushed",
        "order_external_id": "o-1",
        "agent": None,
        "opened_at": iso(happened),
        "first_action_at": None,
        "time_to_first_action_seconds": None,
        "closed_at": None,
        "time_to_resolution_seconds": None,
        "resolution": None,
        "reopened": 0,
        "recoveries": 0,
        "recovery_cost": EUR0,
    }
    assert timeline(case) == [("opened", "Opened by a complaint: box was crushed", None, iso(happened))]
    # The same event again (its Idempotency-Key): the same answer, no second case.
    replayed = await complain(api, idem="complaint-1", **fields)
    assert replayed == first
    assert count(api, "SELECT count(*) AS n FROM service_case") == 1
    # Another complaint is another case: `reason` comes before `subject`; an order of someone else's is
    # not linked; no text at all is "complaint".
    second = await complain(api, properties={"subject": "the box", "reason": "late", "order": "o-2"})
    assert second["case_id"] not in (None, case_id)
    other = await get_case(api, mira, second["case_id"])
    assert (other["summary"], other["order_external_id"], other["opened_at"]) == (
        "late",
        None,
        iso(clock.now()),
    )
    bare = await complain(api, properties={"summary": "   ", "stars": 1})
    assert (await get_case(api, mira, bare["case_id"]))["summary"] == "complaint"
    assert count(api, "SELECT count(*) AS n FROM service_case") == 3
    events = payloads(api, "case.opened")
    assert [(e["case_id"], e["source"], e["summary"], e["agent"]) for e in events] == [
        (case_id, "complaint", "box was crushed", None),
        (second["case_id"], "complaint", "late", None),
        (bare["case_id"], "complaint", "complaint", None),
    ]
    assert events[0]["opened_at"] == iso(happened) and events[0]["order"] == "o-1"
    # Another event type opens nothing and says no case.
    rule_free = await api.client.post(
        "/v1/events",
        json={"type": "review_written", "customer": {"external_id": "c-1"}},
        headers=api.headers(**idempotency()),
    )
    assert rule_free.status_code == 202, rule_free.text
    assert rule_free.json()["case_id"] is None
    assert count(api, "SELECT count(*) AS n FROM service_case") == 3


# --- notes -------------------------------------------------------------------------------------------------


async def test_notes_move_a_case_the_first_one_takes_it(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, mira_id = await make_key(api, "Mira")
    ben, _ = await make_key(api, "Ben")
    case_id = (await complain(api, properties={"reason": "parcel lost"}))["case_id"]
    clock.advance(timedelta(minutes=7))
    first = await note(api, mira, case_id, {"text": "called the carrier"})
    assert first.status_code == 201, first.text
    case = first.json()
    at_first = iso(START + timedelta(minutes=7))
    assert case["first_action_at"] == at_first and case["time_to_first_action_seconds"] == 420
    assert case["agent"] == {"key_id": mira_id, "name": "Mira"}
    assert case["status"] == "open" and case["time_to_resolution_seconds"] is None
    clock.advance(timedelta(minutes=20))
    second = await note(api, ben, case_id, {"text": "carrier says delivered"})
    assert second.status_code == 201, second.text
    case = second.json()
    assert case["first_action_at"] == at_first and case["time_to_first_action_seconds"] == 420
    assert case["agent"] == {"key_id": mira_id, "name": "Mira"}
    assert timeline(case) == [
        ("opened", "Opened by a complaint: parcel lost", None, iso(START)),
        ("note", "called the carrier", "Mira", at_first),
        ("note", "carrier says delivered", "Ben", iso(START + timedelta(minutes=27))),
    ]
    assert await get_case(api, ben, case_id) == case
    # Bad notes change nothing.
    before = table_counts(api.client)
    for body, field in (({"text": ""}, "text"), ({}, "text"), ({"text": "x", "by": "Ben"}, "by")):
        bad = await note(api, mira, case_id, body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["field"] == field
    unknown = await note(api, mira, "00000000-0000-4000-8000-000000000000", {"text": "x"})
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["field"] == "path:case_id"
    malformed = await note(api, mira, "not-a-uuid", {"text": "x"})
    assert malformed.status_code == 422, malformed.text
    assert malformed.json()["field"] == "path:case_id"
    malformed_get = await api.client.get("/v1/cases/not-a-uuid", headers=api.headers(mira))
    assert malformed_get.status_code == 422, malformed_get.text
    assert malformed_get.json()["field"] == "path:case_id"
    assert table_counts(api.client) == before
    # Closed is final.
    assert (await close(api, mira, case_id, {"note": "reshipped"})).status_code == 200
    late = await note(api, ben, case_id, {"text": "one more thing"})
    assert late.status_code == 409, late.text
    assert late.json()["type"] == "urn:encore:problem:case-closed"
    assert len((await get_case(api, ben, case_id))["entries"]) == 4


# --- close -------------------------------------------------------------------------------------------------


async def test_close_needs_a_note_and_measures_the_times(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, mira_id = await make_key(api, "Mira")
    ben, ben_id = await make_key(api, "Ben")
    case_id = (await complain(api, properties={"text": "wrong size"}))["case_id"]
    clock.advance(timedelta(minutes=30))
    before = table_counts(api.client)
    for body in ({}, {"note": ""}):
        missing = await close(api, ben, case_id, body)
        assert missing.status_code == 422, missing.text
        assert missing.json()["field"] == "note"
    assert table_counts(api.client) == before
    # Closing without any earlier action: the close is the first action, and the closer takes the case.
    closed = await close(api, ben, case_id, {"note": "exchange sent"})
    assert closed.status_code == 200, closed.text
    case = closed.json()
    at = iso(START + timedelta(minutes=30))
    assert (case["status"], case["resolution"], case["closed_at"], case["first_action_at"]) == (
        "closed",
        "exchange sent",
        at,
        at,
    )
    assert case["time_to_first_action_seconds"] == 1800 and case["time_to_resolution_seconds"] == 1800
    assert case["agent"] == {"key_id": ben_id, "name": "Ben"}
    assert timeline(case)[-1] == ("closed", "exchange sent", "Ben", at)
    assert await get_case(api, mira, case_id) == case
    clock.advance(timedelta(minutes=1))
    twice = await close(api, mira, case_id, {"note": "again"})
    assert twice.status_code == 409, twice.text
    assert twice.json()["type"] == "urn:encore:problem:case-closed"
    assert "2026-03-02 12:30" in twice.json()["detail"]
    assert (await get_case(api, mira, case_id))["resolution"] == "exchange sent"
    [event] = payloads(api, "case.closed")
    assert event == {
        "case_id": case_id,
        "customer": "c-1",
        "source": "complaint",
        "summary": "wrong size",
        "order": None,
        "agent": {"key_id": ben_id, "name": "Ben"},
        "opened_at": iso(START),
        "closed_at": at,
        "resolution": "exchange sent",
        "reopened": 0,
        "time_to_first_action_seconds": 1800,
        "time_to_resolution_seconds": 1800,
        "recoveries": 0,
        "recovery_cost": EUR0,
    }
    # An agent's case with a recovery on it: the first action at its opening, the resolution later.
    await settings(api, 5000)
    own = await opened(api, mira, summary="late parcel")
    clock.advance(timedelta(minutes=10))
    given = await recover(
        api, mira, {"reason": "late", "action": {"kind": "points", "points": 250}, "case_id": own["id"]}
    )
    assert given.status_code == 201, given.text
    clock.advance(timedelta(minutes=80))
    done = await close(api, mira, own["id"], {"note": "points given"})
    assert done.status_code == 200, done.text
    assert done.json()["time_to_first_action_seconds"] == 0
    assert done.json()["time_to_resolution_seconds"] == 5400
    assert [e["kind"] for e in done.json()["entries"]] == ["opened", "recovery", "closed"]
    last = payloads(api, "case.closed")[-1]
    assert last["agent"] == {"key_id": mira_id, "name": "Mira"}
    assert (last["recoveries"], last["recovery_cost"]) == (1, {"amount": 250, "currency": "EUR"})
    assert (last["time_to_first_action_seconds"], last["time_to_resolution_seconds"]) == (0, 5400)


# --- recoveries on cases ---------------------------------------------------------------------------------


async def test_recoveries_count_on_their_case(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    assert (await api.order("o-2", customer="c-2")).status_code == 201
    mira, mira_id = await make_key(api, "Mira")
    await settings(api, 5000)
    case_id = (await complain(api, properties={"reason": "parcel lost"}))["case_id"]
    clock.advance(timedelta(minutes=3))
    given = await recover(
        api, mira, {"reason": "parcel lost", "action": {"kind": "points", "points": 300}, "case_id": case_id}
    )
    assert given.status_code == 201, given.text
    assert given.json()["case_id"] == case_id
    clock.advance(timedelta(minutes=3))
    more = await recover(
        api, mira, {"reason": "sorry", "action": {"kind": "points", "points": 200}, "case_id": case_id}
    )
    assert more.status_code == 201, more.text
    case = await get_case(api, mira, case_id)
    assert (case["recoveries"], case["recovery_cost"]) == (2, {"amount": 500, "currency": "EUR"})
    assert case["time_to_first_action_seconds"] == 180
    assert case["agent"] == {"key_id": mira_id, "name": "Mira"}
    assert timeline(case)[1:] == [
        ("recovery", "Recovery by Mira: parcel lost — 300 points", "Mira", iso(START + timedelta(minutes=3))),
        ("recovery", "Recovery by Mira: sorry — 200 points", "Mira", iso(START + timedelta(minutes=6))),
    ]
    assert [e["recovery_id"] for e in case["entries"]] == [None, given.json()["id"], more.json()["id"]]
    # By the complaint alone: its case is found.
    event = await complain(api, properties={"reason": "damaged"})
    by_complaint = await recover(
        api,
        mira,
        {"reason": "damaged", "action": {"kind": "points", "points": 100}, "complaint_id": event["id"]},
    )
    assert by_complaint.status_code == 201, by_complaint.text
    assert by_complaint.json()["case_id"] == event["case_id"]
    assert by_complaint.json()["complaint_id"] == event["id"]
    found = await get_case(api, mira, event["case_id"])
    assert (found["recoveries"], found["recovery_cost"]["amount"]) == (1, 100)
    assert [e["recovery_id"] for e in found["entries"]] == [None, by_complaint.json()["id"]]
    # Another customer's case, or one of another program: refused, nothing changed.
    before = table_counts(api.client)
    foreign = await recover(
        api,
        mira,
        {"reason": "x", "action": {"kind": "points", "points": 10}, "case_id": case_id},
        customer="c-2",
    )
    assert foreign.status_code == 422, foreign.text
    assert foreign.json()["field"] == "case_id"
    unknown = await recover(
        api,
        mira,
        {
            "reason": "x",
            "action": {"kind": "points", "points": 10},
            "case_id": "00000000-0000-4000-8000-000000000000",
        },
    )
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["field"] == "case_id"
    assert table_counts(api.client) == before
    # A closed case named: 409; its complaint alone: the recovery stands on its own.
    assert (await close(api, mira, event["case_id"], {"note": "done"})).status_code == 200
    refused = await recover(
        api, mira, {"reason": "x", "action": {"kind": "points", "points": 10}, "case_id": event["case_id"]}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "urn:encore:problem:case-closed"
    alone = await recover(
        api, mira, {"reason": "x", "action": {"kind": "points", "points": 10}, "complaint_id": event["id"]}
    )
    assert alone.status_code == 201, alone.text
    assert alone.json()["case_id"] is None and alone.json()["complaint_id"] == event["id"]
    assert (await get_case(api, mira, event["case_id"]))["recoveries"] == 1


# --- lists -------------------------------------------------------------------------------------------------


async def test_the_list_filters_by_status_agent_and_customer(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    assert (await api.order("o-2", customer="c-2")).status_code == 201
    mira, mira_id = await make_key(api, "Mira")
    ben, ben_id = await make_key(api, "Ben")
    a = (await complain(api, properties={"reason": "a"}))["case_id"]  # 12:00, nobody's
    clock.advance(timedelta(minutes=1))
    b = (await opened(api, mira, summary="b"))["id"]  # 12:01, Mira's
    clock.advance(timedelta(minutes=1))
    c = (await opened(api, ben, customer="c-2", summary="c"))["id"]  # 12:02, Ben's, closed
    assert (await close(api, ben, c, {"note": "done"})).status_code == 200
    clock.advance(timedelta(minutes=1))
    d = (await complain(api, customer="c-2", properties={"reason": "d"}))["case_id"]  # 12:03, Ben's by a note
    assert (await note(api, ben, d, {"text": "looking"})).status_code == 201
    clock.advance(timedelta(minutes=1))
    e = (await complain(api, properties={"reason": "e"}))["case_id"]  # 12:04, nobody's
    # Recorded last, but it happened before all of them: the list goes by opened_at.
    f = (await complain(api, properties={"reason": "f"}, occurred_at=iso(START - timedelta(hours=1))))[
        "case_id"
    ]
    assert await listed(api, mira, "") == [e, d, c, b, a, f]
    assert await listed(api, mira, "status=open") == [e, d, b, a, f]
    assert await listed(api, mira, "status=closed") == [c]
    assert await listed(api, mira, f"agent={mira_id}") == [b]
    assert await listed(api, mira, f"agent={ben_id}") == [d, c]
    assert await listed(api, mira, f"agent={ben_id}&status=open") == [d]
    assert await listed(api, mira, "agent=none") == [e, a, f]
    assert await listed(api, mira, "customer=c-2") == [d, c]
    assert await listed(api, mira, "customer=c-1&agent=none&status=open") == [e, a, f]
    assert await listed(api, mira, "customer=nobody") == []
    assert await listed(api, mira, "agent=00000000-0000-4000-8000-000000000000") == []
    items = (await api.client.get(f"/v1/cases?agent={ben_id}", headers=api.headers(mira))).json()["items"]
    assert "entries" not in items[0]
    assert [(i["summary"], i["status"], i["agent"]["name"]) for i in items] == [
        ("d", "open", "Ben"),
        ("c", "closed", "Ben"),
    ]
    for query, field in (
        ("agent=mira", "query:agent"),
        ("status=pending", "query:status"),
        ("limit=0", "query:limit"),
        ("cursor=bm9wZQ", "query:cursor"),
        ("cursor=not-a-cursor!", "query:cursor"),
    ):
        bad = await api.client.get(f"/v1/cases?{query}", headers=api.headers(mira))
        assert bad.status_code == 422, (query, bad.text)
        assert bad.json()["field"] == field, (query, bad.json())


async def test_cursor_pages_walk_every_case_once_newest_first(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, _ = await make_key(api, "Mira")
    made: list[str] = []
    for minute in (0, 5, 5, 9, 14):  # two opened at the same moment: the id breaks the tie
        clock.set(START + timedelta(minutes=minute))
        made.append((await opened(api, mira, summary=f"case at {minute}"))["id"])
    # A complaint dated with microseconds, between two of them.
    made.append(
        (await complain(api, properties={"reason": "fine"}, occurred_at="2026-03-02T12:07:00.123456Z"))[
            "case_id"
        ]
    )
    expected = [
        c["id"]
        for c in (await api.client.get("/v1/cases?limit=200", headers=api.headers(mira))).json()["items"]
    ]
    assert sorted(expected) == sorted(made)
    opened_at = [(await get_case(api, mira, case_id))["opened_at"] for case_id in expected]
    assert opened_at == sorted(opened_at, reverse=True)
    assert opened_at[2] == "2026-03-02T12:07:00.123456Z"
    tied = sorted(made[1:3], reverse=True)
    assert expected[3:5] == tied
    walked: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await api.client.get(f"/v1/cases?{query}", headers=api.headers(mira))
        assert page.status_code == 200, page.text
        pages += 1
        walked.extend(c["id"] for c in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        assert len(page.json()["items"]) == 2
    assert pages == 3
    assert walked == expected
    # Filters hold across pages.
    first = (await api.client.get("/v1/cases?limit=1&agent=none", headers=api.headers(mira))).json()
    assert [c["id"] for c in first["items"]] == [made[5]] and first["next_cursor"] is None


# --- the customer status and programs kept apart ----------------------------------------------------------


async def test_the_customer_status_shows_open_cases_only(api: Api, clock: FrozenClock) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, mira_id = await make_key(api, "Mira")
    assert (await api.status())["open_cases"] == []
    first = (await complain(api, properties={"reason": "parcel lost"}))["case_id"]
    clock.advance(timedelta(minutes=2))
    second = (await opened(api, mira, summary="wrong colour"))["id"]
    clock.advance(timedelta(minutes=2))
    third = (await complain(api, properties={"reason": "rude courier"}))["case_id"]
    assert (await note(api, mira, first, {"text": "called the carrier"})).status_code == 201
    assert (await note(api, mira, first, {"text": "carrier will call back"})).status_code == 201
    assert (await close(api, mira, third, {"note": "apologised"})).status_code == 200
    status = await api.status()
    mira_ref = {"key_id": mira_id, "name": "Mira"}
    assert status["open_cases"] == [
        {
            "id": first,
            "source": "complaint",
            "summary": "parcel lost",
            "opened_at": iso(START),
            "first_action_at": iso(START + timedelta(minutes=4)),
            "agent": mira_ref,
            "last_entry": "carrier will call back",
        },
        {
            "id": second,
            "source": "agent",
            "summary": "wrong colour",
            "opened_at": iso(START + timedelta(minutes=2)),
            "first_action_at": iso(START + timedelta(minutes=2)),
            "agent": mira_ref,
            "last_entry": None,
        },
    ]
    # The agent's key reads the same status.
    agent_view = await api.client.get("/v1/customers/c-1", headers=api.headers(mira))
    assert agent_view.status_code == 200, agent_view.text
    assert agent_view.json()["open_cases"] == status["open_cases"]


async def test_a_case_of_another_program_is_invisible(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, _ = await make_key(api, "Mira")
    await settings(api, 5000)
    ours = (await opened(api, mira))["id"]
    other = make_program(api.client, "Other shop")
    assert (await other.order("o-1")).status_code == 201  # the same customer and order ids there
    theirs = (await complain(other, properties={"reason": "theirs"}))["case_id"]
    assert theirs
    got = await api.client.get(f"/v1/cases/{theirs}", headers=api.headers(mira))
    assert got.status_code == 404, got.text
    assert (await api.client.get(f"/v1/cases/{theirs}", headers=api.headers())).status_code == 404
    assert await listed(api, mira, "") == [ours]
    assert await listed(api, mira, "agent=none") == []
    assert [c["id"] for c in (await api.status())["open_cases"]] == [ours]
    before = table_counts(api.client)
    assert (await note(api, mira, theirs, {"text": "x"})).status_code == 404
    assert (await close(api, mira, theirs, {"note": "x"})).status_code == 404
    crossed = await recover(
        api, mira, {"reason": "x", "action": {"kind": "points", "points": 5}, "case_id": theirs}
    )
    assert crossed.status_code == 404, crossed.text
    assert crossed.json()["field"] == "case_id"
    assert table_counts(api.client) == before
    their_case = await get_case(other, other.key, theirs)
    assert (their_case["status"], len(their_case["entries"])) == ("open", 1)
    assert [
        c["id"] for c in (await other.client.get("/v1/cases", headers=other.headers())).json()["items"]
    ] == [theirs]


# --- permissions -----------------------------------------------------------------------------------------


async def test_a_read_key_reads_cases_but_cannot_move_them(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    mira, _ = await make_key(api, "Mira")
    case_id = (await opened(api, mira))["id"]
    for scope in ("read", "server", "marketer"):
        key, _ = await make_key(api, f"a {scope} key", scope)
        before = table_counts(api.client)
        for response in (
            await open_case(api, key, {"customer": "c-1", "summary": "x"}),
            await note(api, key, case_id, {"text": "x"}),
            await close(api, key, case_id, {"note": "x"}),
        ):
            assert response.status_code == 403, (scope, response.text)
        assert table_counts(api.client) == before
        assert (await get_case(api, key, case_id))["id"] == case_id
        assert await listed(api, key, "") == [case_id]
    # The admin key acts on cases too, in its own name.
    by_admin = await note(api, api.key, case_id, {"text": "admin here"})
    assert by_admin.status_code == 201, by_admin.text
    assert by_admin.json()["entries"][-1]["by"]["name"] != "Mira"
    assert by_admin.json()["agent"]["name"] == "Mira"


async def test_blank_text_is_no_summary_note_or_resolution(api: Api) -> None:
    """As an adjustment's blank reason is 422 (test_ledger), whitespace alone is no summary, note or
    resolution: closing "with a note" does not pass with "   "."""
    assert (await api.order("o-1")).status_code == 201
    mira, _ = await make_key(api, "Mira")
    case_id = (await opened(api, mira))["id"]
    before = table_counts(api.client)
    for response, field in (
        (await open_case(api, mira, {"customer": "c-1", "summary": "   "}), "summary"),
        (await open_case(api, mira, {"customer": "c-1", "summary": "late", "note": " \n "}), "note"),
        (await note(api, mira, case_id, {"text": "   "}), "text"),
        (await close(api, mira, case_id, {"note": "   "}), "note"),
    ):
        assert response.status_code == 422, (field, response.status_code, response.text[:200])
        assert response.json()["field"] == field
    assert table_counts(api.client) == before
    assert (await get_case(api, mira, case_id))["status"] == "open"
