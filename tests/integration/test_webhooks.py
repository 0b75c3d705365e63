"""Outbound webhooks against a real local HTTP receiver that verifies signatures with the
`standardwebhooks` library. The clock is moved, never slept (but for the receiver's own delays)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core.clock import FrozenClock
from service.webhooks import jobs, service
from service.webhooks.domain import RETRY_WINDOW
from service.webhooks.schemas import EndpointPatch
from tests.conftest import START, Api, fetch, idempotency, in_app, iso, settings_for
from tests.support.receiver import Answer, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


class Hooks:
    """Drives the worker's two webhook stages inside the app's event loop, under the test clock."""

    def __init__(self, client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock) -> None:
        self.client = client
        self.database_url = database_url
        self.clock = clock

    def dispatch(self) -> int:
        return in_app(self.client, jobs.dispatch, self.clock.now())

    def deliver(self, **settings: Any) -> int:
        config = settings_for(self.database_url, **settings)

        async def run() -> int:
            async with jobs.Deliverer(config, self.clock, "test-worker") as deliverer:
                return await deliverer.run(budget_seconds=5)

        return in_app(self.client, run)

    def run(self, **settings: Any) -> int:
        self.dispatch()
        return self.deliver(**settings)


@pytest.fixture
def hooks(client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock) -> Hooks:
    return Hooks(client, database_url, clock)


async def _endpoint(api: Api, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url, **body}, headers=api.headers(**idempotency())
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secrets.append(created["secret"])
    return created


async def _deliveries(api: Api, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params=params, headers=api.headers()
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_events_arrive_signed_once_each_and_only_those_subscribed(
    api: Api, receiver: Receiver, hooks: Hooks
) -> None:
    endpoint = await _endpoint(api, receiver, event_types=["order.created", "points.*"])
    assert endpoint["secret"].startswith("whsec_")
    assert (await api.order("o-1")).status_code == 201
    outbox = fetch(
        api.client, "SELECT id, topic FROM outbox WHERE topic IN ('order.created', 'points.earned')"
    )

    assert hooks.run() == 2
    assert hooks.run() == 0  # nothing twice
    assert sorted(r.json["type"] for r in receiver.received) == ["order.created", "points.earned"]
    assert {r.id for r in receiver.received} == {str(row["id"]) for row in outbox}
    for request in receiver.received:
        assert request.verified_with == [endpoint["secret"]]
        assert request.json["data"]["id"] == request.id  # webhook-id is the event's id
        assert request.json["timestamp"].startswith(iso(START)[:19])
        assert request.headers["content-type"] == "application/json"
    earned = next(r.json["data"] for r in receiver.received if r.json["type"] == "points.earned")
    assert earned["customer"] == "c-1" and earned["points"] == 90

    deliveries = await _deliveries(api, endpoint["id"])
    assert [d["status"] for d in deliveries] == ["succeeded", "succeeded"]
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 for d in deliveries)
    assert all(d["last_latency_ms"] is not None and d["next_attempt_at"] is None for d in deliveries)


async def test_every_event_is_explicit_and_absent_means_every_event(
    api: Api, receiver: Receiver, hooks: Hooks
) -> None:
    default = await _endpoint(api, receiver)
    star = await _endpoint(api, receiver, event_types=["*"])
    assert default["event_types"] == star["event_types"] == ["*"]
    listed = (await api.client.get("/v1/webhook-endpoints", headers=api.headers())).json()["items"]
    assert [e["event_types"] for e in listed] == [["*"], ["*"]]
    assert (await api.order("o-1")).status_code == 201
    topics = {r["topic"] for r in fetch(api.client, "SELECT topic FROM outbox")}
    assert {"order.created", "points.earned", "customer.created"} <= topics
    hooks.run()
    for endpoint in (default, star):  # every event written after the endpoint, for each of them
        delivered = {d["event_type"] for d in await _deliveries(api, endpoint["id"])}
        assert {"order.created", "points.earned", "customer.created"} <= delivered
    # Narrowing, then back to every event.
    narrowed = await api.client.patch(
        f"/v1/webhook-endpoints/{star['id']}", json={"event_types": ["order.created"]}, headers=api.headers()
    )
    assert narrowed.json()["event_types"] == ["order.created"]
    widened = await api.client.patch(
        f"/v1/webhook-endpoints/{star['id']}",
        json={"event_types": ["*"], "url": "https://xn--bcher-kva.example/hook"},  # the IDNA form is fine
        headers=api.headers(),
    )
    assert widened.status_code == 200, widened.text
    assert widened.json()["event_types"] == ["*"]
    assert widened.json()["url"] == "https://xn--bcher-kva.example/hook"


async def test_failures_are_retried_with_backoff_under_the_same_id(
    api: Api, receiver: Receiver, hooks: Hooks, clock: FrozenClock
) -> None:
    endpoint = await _endpoint(api, receiver, event_types=["order.created"])
    receiver.script.extend([Answer(500, body=b"database down"), Answer(503)])
    await api.order("o-1")

    assert hooks.run() == 1
    [delivery] = await _deliveries(api, endpoint["id"])
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["last_status_code"] == 500 and delivery["last_error"] == "HTTP 500: database down"
    first_wait = _at(delivery["next_attempt_at"]) - START
    assert timedelta(seconds=15) <= first_wait <= timedelta(seconds=30)

    assert hooks.deliver() == 0  # not due yet: the clock has not moved
    clock.set(_at(delivery["next_attempt_at"]))
    assert hooks.deliver() == 1
    [delivery] = await _deliveries(api, endpoint["id"])
    second_wait = _at(delivery["next_attempt_at"]) - clock.now()
    assert delivery["attempts"] == 2 and timedelta(seconds=30) <= second_wait <= timedelta(seconds=60)

    clock.set(_at(delivery["next_attempt_at"]))
    assert hooks.deliver() == 1
    [delivery] = await _deliveries(api, endpoint["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert len(set(receiver.ids())) == 1 and len(receiver.ids()) == 3
    assert all(r.verified_with for r in receiver.received)
    health = (await api.client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=api.headers())).json()
    assert health["failing_since"] is None and health["last_success_at"] == iso(clock.now())


async def test_a_slow_or_huge_answer_does_not_hold_up_other_deliveries(
    api: Api, hooks: Hooks, clock: FrozenClock
) -> None:
    slow, huge, fine = Receiver().start(), Receiver().start(), Receiver().start()
    try:
        slow.default = Answer(200, delay=1.5)
        huge.default = Answer(200, huge_bytes=50_000_000)
        endpoints = [await _endpoint(api, r, event_types=["order.created"]) for r in (slow, huge, fine)]
        for n in range(5):
            await api.order(f"o-{n}")
        hooks.run(webhook_timeout_seconds=0.5)
        assert [len(r.received) for r in (slow, huge, fine)] == [5, 5, 5]
        slow_deliveries, huge_deliveries, fine_deliveries = [
            await _deliveries(api, e["id"]) for e in endpoints
        ]
        assert {d["last_error"] for d in slow_deliveries} == {"no answer within 0.5 s"}
        assert {d["status"] for d in slow_deliveries} == {"pending"}
        # A 2xx with a 50 MB body counts as delivered; the body is not read to its end.
        assert {d["status"] for d in huge_deliveries} == {"succeeded"}
        assert {d["status"] for d in fine_deliveries} == {"succeeded"}
        assert max(d["last_latency_ms"] for d in fine_deliveries) < 500
    finally:
        for r in (slow, huge, fine):
            r.stop()


async def test_dead_letter_after_three_days_then_disable_after_five_then_resume(
    api: Api, receiver: Receiver, hooks: Hooks, clock: FrozenClock
) -> None:
    receiver.default = Answer(502)
    endpoint = await _endpoint(api, receiver, event_types=["order.created"])
    await api.order("o-1")
    hooks.dispatch()
    attempts_at = []
    while True:
        hooks.deliver()
        [delivery] = await _deliveries(api, endpoint["id"])
        attempts_at.append(_at(delivery["last_attempt_at"]))
        if delivery["status"] != "pending":
            break
        clock.set(_at(delivery["next_attempt_at"]))
    assert delivery["status"] == "dead" and delivery["finished_at"] == iso(attempts_at[-1])
    assert attempts_at[-1] == START + RETRY_WINDOW  # the last try is at the end of the window
    assert attempts_at == sorted(attempts_at) and 10 <= len(attempts_at) <= 30
    assert len(set(receiver.ids())) == 1

    # Still failing on day 5 (a new event each day): the endpoint is disabled and the program told.
    for day in (4, 5):
        clock.set(START + timedelta(days=day))
        await api.order(f"o-day-{day}", placed_at=iso(clock.now()))
        hooks.run()
    state = (await api.client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=api.headers())).json()
    assert state["enabled"] is False and state["failing_since"] == iso(START)
    assert state["disabled_reason"].startswith("disabled automatically")
    told = fetch(api.client, "SELECT payload FROM outbox WHERE topic = 'webhook_endpoint.disabled'")
    assert len(told) == 1
    statuses = sorted(d["status"] for d in await _deliveries(api, endpoint["id"]))
    assert statuses == ["dead", "paused", "paused"]

    # Repaired and enabled again: the paused deliveries go out, a dead one on request.
    receiver.default = Answer(204, body=b"")
    clock.set(START + timedelta(days=6))
    response = await api.client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=api.headers()
    )
    assert response.status_code == 200 and response.json()["disabled_reason"] is None
    hooks.run()
    dead = [d for d in await _deliveries(api, endpoint["id"]) if d["status"] == "dead"]
    assert len(dead) == 1
    retried = await api.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{dead[0]['id']}/retry", headers=api.headers()
    )
    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    hooks.deliver()
    final = await _deliveries(api, endpoint["id"])
    assert {d["status"] for d in final} == {"succeeded"}, final


async def test_an_endpoint_disabled_during_an_attempt_keeps_its_retry_paused(
    api: Api, receiver: Receiver, hooks: Hooks, database_url: str
) -> None:
    endpoint = await _endpoint(api, receiver, event_types=["order.created"])
    await api.order("o-1")
    receiver.default = Answer(500)

    def admin_disables_it() -> None:
        async def disable() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                async with conn.transaction():
                    await service.update(
                        conn,
                        UUID(api.program_id),
                        UUID(endpoint["id"]),
                        EndpointPatch(enabled=False),
                        START,
                        allow_local_http=True,
                    )
            finally:
                await conn.close()

        receiver.on_request = None
        asyncio.run(disable())

    receiver.on_request = admin_disables_it
    hooks.run()
    [delivery] = await _deliveries(api, endpoint["id"])
    assert (
        delivery["status"] == "paused" and delivery["attempts"] == 1 and delivery["last_status_code"] == 500
    )
    assert hooks.deliver() == 0  # a paused delivery is not claimed
    assert len(receiver.received) == 1


async def test_secret_rotation_signs_with_both_secrets_during_the_overlap(
    api: Api, receiver: Receiver, hooks: Hooks, clock: FrozenClock
) -> None:
    endpoint = await _endpoint(api, receiver, event_types=["order.created"])
    old = endpoint["secret"]
    rotated = await api.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=api.headers(),
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    receiver.secrets.append(new)
    assert new != old and rotated.json()["previous_secret_valid_until"] == iso(START + timedelta(hours=1))
    await api.order("o-1")
    hooks.run()
    assert receiver.received[-1].verified_with == [old, new]
    assert len(receiver.received[-1].headers["webhook-signature"].split(" ")) == 2

    clock.set(START + timedelta(hours=1, seconds=1))
    await api.order("o-2")
    hooks.run()
    assert receiver.received[-1].verified_with == [new]
    listed = (await api.client.get("/v1/webhook-endpoints", headers=api.headers())).json()["items"]
    assert "secret" not in listed[0] and listed[0]["previous_secret_valid_until"] is None


async def test_test_event_goes_to_that_endpoint_only(api: Api, receiver: Receiver, hooks: Hooks) -> None:
    other = Receiver().start()
    try:
        endpoint = await _endpoint(api, receiver, event_types=["order.created"])
        await _endpoint(api, other)
        sent = await api.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=api.headers())
        assert sent.status_code == 202 and sent.json()["event_type"] == "webhook.test"
        hooks.run()
        assert [r.json["type"] for r in receiver.received] == ["webhook.test"]
        assert "webhook.test" not in [r.json["type"] for r in other.received]
        assert receiver.received[0].verified_with == [endpoint["secret"]]
    finally:
        other.stop()


async def test_endpoint_input_is_checked_and_changes_nothing_when_bad(api: Api, receiver: Receiver) -> None:
    cases = [
        ({"url": "http://example.com/hook"}, "url"),
        ({"url": "https://10.1.2.3/hook"}, "url"),
        ({"url": "https://[fd00::1]:8443/hook"}, "url"),
        ({"url": "https://192.168.1.10/hook"}, "url"),
        ({"url": "https://printer.local/hook"}, "url"),
        ({"url": "https://169.254.169.254/latest"}, "url"),
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "https://user:pw@example.com/hook"}, "url"),
        ({"url": "https://example.com:99999/"}, "url"),
        ({"url": "https://example.com/", "event_types": ["order.shipped"]}, "event_types[0]"),
        ({"url": "https://example.com/", "event_types": ["order.created", "nope.*"]}, "event_types[1]"),
        ({"url": "https://example.com/", "event_types": "order.created"}, "event_types"),
        ({"url": "https://example.com/", "event_types": []}, "event_types"),  # would subscribe to nothing
        ({"url": "https://example.com/", "event_types": ["*", "order.created"]}, "event_types[0]"),
        ({"url": "https://bücher.example/hook"}, "url"),
        ({"url": "https://127。0。0。1/hook"}, "url"),
        ({"url": "https://example.com/", "secret": "mine"}, "secret"),
        ({"url": 42}, "url"),
        ({}, "url"),
    ]
    for body, field in cases:
        response = await api.client.post(
            "/v1/webhook-endpoints", json=body, headers=api.headers(**idempotency())
        )
        assert response.status_code in (400, 422), (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json().get("field") == field, (body, response.json())
    assert fetch(api.client, "SELECT count(*) AS n FROM webhook_endpoint")[0]["n"] == 0
    idn = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://bücher.example/hook"},
        headers=api.headers(**idempotency()),
    )
    assert idn.json()["detail"] == (
        "the host 'bücher.example' is not ASCII: write its IDNA (punycode) form, "
        "https://xn--bcher-kva.example/hook"
    )
    empty = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://example.com/", "event_types": []},
        headers=api.headers(**idempotency()),
    )
    assert "length >= 1" in empty.json()["detail"]

    ok = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/encore", "event_types": ["points.*"]},
        headers=api.headers(**{"Idempotency-Key": "ep-1"}),
    )
    again = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/encore", "event_types": ["points.*"]},
        headers=api.headers(**{"Idempotency-Key": "ep-1"}),
    )
    assert ok.status_code == 201 and again.status_code == 201 and again.json() == ok.json()
    assert again.headers["idempotent-replayed"] == "true"
    endpoint_id = ok.json()["id"]
    bad_patch = await api.client.patch(
        f"/v1/webhook-endpoints/{endpoint_id}",
        json={"url": "http://hooks.example.com"},
        headers=api.headers(),
    )
    assert bad_patch.status_code == 422 and bad_patch.json()["field"] == "url"
    for body, field in (
        ({"url": "https://bücher.example/hook"}, "url"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["points.*", "*"]}, "event_types[1]"),
    ):
        refused = await api.client.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json=body, headers=api.headers()
        )
        assert refused.status_code == 422 and refused.json()["field"] == field, (body, refused.text)
    unchanged = (await api.client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=api.headers())).json()
    assert unchanged["url"] == "https://hooks.example.com/encore" and unchanged["event_types"] == ["points.*"]
    for path in (f"/v1/webhook-endpoints/{endpoint_id}/deliveries/999/retry",):
        assert (await api.client.post(path, headers=api.headers())).status_code == 404
    bad_cursor = await api.client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"cursor": "x"}, headers=api.headers()
    )
    assert bad_cursor.status_code == 422
    bad_status = await api.client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"status": "lost"}, headers=api.headers()
    )
    assert bad_status.status_code == 422 and "status" in bad_status.json()["field"]
    too_long = await api.client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        json={"overlap_seconds": 8 * 24 * 3600},
        headers=api.headers(),
    )
    assert too_long.status_code in (400, 422) and too_long.json()["field"] == "overlap_seconds"

    read_key = (
        await api.client.post(
            "/v1/api-keys", json={"name": "r", "scope": "server"}, headers=api.headers(**idempotency())
        )
    ).json()
    forbidden = await api.client.get("/v1/webhook-endpoints", headers=api.headers(read_key["api_key"]))
    assert forbidden.status_code == 403

    deleted = await api.client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=api.headers())
    assert deleted.status_code == 204
    gone = await api.client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=api.headers())
    assert gone.status_code == 404
    topics = [
        r["topic"]
        for r in fetch(api.client, "SELECT topic FROM outbox WHERE topic LIKE 'webhook%' ORDER BY created_at")
    ]
    assert sorted(topics) == ["webhook_endpoint.created", "webhook_endpoint.deleted"]
