"""Webhook signing secrets are stored encrypted: what the database holds, `encore secrets rotate` as a real
process with two keys, `encore migrate` sealing rows stored in plain text, and a secret no key opens.
Deliveries are checked by a real receiver verifying Standard Webhooks signatures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core import db
from service.core.clock import FrozenClock
from service.core.secrets import SecretBox, new_key
from service.webhooks import domain, jobs
from tests.conftest import ENCRYPTION_KEY, START, Api, fetch, idempotency, in_app, settings_for
from tests.support.cli import encore
from tests.support.receiver import Receiver

OLD_BOX = SecretBox((ENCRYPTION_KEY,))  # the key the tests' app seals with


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def _deliver(client: AsyncTestClient[Litestar], database_url: str, clock: FrozenClock, *keys: str) -> int:
    """One run of the worker's delivery stage, with these encryption keys."""
    config = settings_for(database_url, encryption_keys=keys)

    async def run() -> int:
        async with jobs.Deliverer(config, clock, "test-worker") as deliverer:
            return await deliverer.run(budget_seconds=5)

    return in_app(client, run)


async def _send_test(api: Api, endpoint_id: str) -> dict[str, Any]:
    sent = await api.client.post(f"/v1/webhook-endpoints/{endpoint_id}/test", headers=api.headers())
    assert sent.status_code == 202, sent.text
    delivery: dict[str, Any] = sent.json()
    return delivery


async def _delivery(api: Api, endpoint_id: str, delivery_id: int) -> dict[str, Any]:
    response = await api.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=api.headers())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    [found] = [d for d in items if d["id"] == delivery_id]
    return found


def _stored(api: Api, endpoint_id: str) -> dict[str, Any]:
    [row] = fetch(
        api.client, "SELECT secret, previous_secret FROM webhook_endpoint WHERE id = $1", UUID(endpoint_id)
    )
    return row


def _everything_stored(api: Api) -> str:
    """Every row of the tables that could hold a secret, as text."""
    rows = fetch(
        api.client,
        "SELECT (SELECT string_agg(e::text, '|') FROM webhook_endpoint e) AS endpoints,"
        " (SELECT string_agg(k::text, '|') FROM idempotency_key k) AS answers,"
        " (SELECT string_agg(o::text, '|') FROM outbox o) AS events",
    )
    return " ".join(str(v) for v in rows[0].values())


async def test_a_secret_reads_back_after_encore_secrets_rotate(
    api: Api, receiver: Receiver, clock: FrozenClock, database_url: str
) -> None:
    body = {"url": receiver.url, "event_types": ["order.created"]}
    headers = api.headers(**{"Idempotency-Key": "hook-1"})
    created = await api.client.post("/v1/webhook-endpoints", json=body, headers=headers)
    assert created.status_code == 201, created.text
    endpoint_id, first = created.json()["id"], created.json()["secret"]
    rotated = await api.client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=api.headers(),
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["secret"]
    receiver.secrets.extend([first, second])

    # Stored sealed: no secret, nor anything that looks like one, in the endpoint or the stored answer.
    stored = _stored(api, endpoint_id)
    assert stored["secret"].startswith("fernet:") and stored["previous_secret"].startswith("fernet:")
    everything = _everything_stored(api)
    assert first not in everything and second not in everything and "whsec_" not in everything
    assert OLD_BOX.open(stored["secret"]) == second and OLD_BOX.open(stored["previous_secret"]) == first
    replayed = await api.client.post("/v1/webhook-endpoints", json=body, headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.json()["secret"] == first

    # A new key first, the old one still listed (the API and worker restarted with both), then rotate.
    new = new_key()
    both = f"{new}, {ENCRYPTION_KEY}"
    result = encore(database_url, "secrets", "rotate", "--batch", "1", ENCORE_ENCRYPTION_KEYS=both)
    assert result.returncode == 0, result.stderr
    assert "rotated 3 of 3 encrypted values to the first key" in result.stdout
    assert (
        "webhook endpoints: 2 of 2" in result.stdout and "stored idempotent answers: 1 of 1" in result.stdout
    )
    after = _stored(api, endpoint_id)
    assert after["secret"] != stored["secret"] and after["previous_secret"] != stored["previous_secret"]
    new_box = SecretBox((new,))  # the new key alone opens everything now
    assert new_box.open(after["secret"]) == second and new_box.open(after["previous_secret"]) == first
    [answer] = fetch(api.client, "SELECT response_body FROM idempotency_key")
    assert '"secret":"' + first in new_box.open(answer["response_body"])
    for output in (result.stdout, result.stderr):
        assert first not in output and second not in output and new not in output

    again = encore(database_url, "secrets", "rotate", ENCORE_ENCRYPTION_KEYS=both)
    assert again.returncode == 0, again.stderr
    assert "rotated 0 of 3 encrypted values" in again.stdout  # idempotent
    assert _stored(api, endpoint_id) == after

    # The worker, with only the new key left, signs with the same secrets as before.
    delivery = await _send_test(api, endpoint_id)
    assert _deliver(api.client, database_url, clock, new) == 1
    assert (await _delivery(api, endpoint_id, delivery["id"]))["status"] == "succeeded"
    [request] = receiver.received
    assert request.verified_with == [first, second]


async def test_encore_migrate_encrypts_a_secret_stored_in_plain_text(
    api: Api, receiver: Receiver, clock: FrozenClock, database_url: str
) -> None:
    """A row written before secrets were encrypted: refused for signing until `encore migrate` seals it."""
    legacy, previous = domain.new_secret(), domain.new_secret()
    endpoint_id = uuid4()
    answer = f'{{"id":"{endpoint_id}","secret":"{legacy}"}}'

    async def write_legacy() -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO webhook_endpoint (id, program_id, url, event_types, secret, previous_secret,"
                " previous_secret_until, created_at, updated_at) VALUES ($1, $2, $3, '{*}', $4, $5, $6, $6, $6)",
                endpoint_id,
                UUID(api.program_id),
                receiver.url,
                legacy,
                previous,
                START.replace(year=START.year + 1),
            )
            await conn.execute(
                "INSERT INTO idempotency_key (program_id, key, request_hash, status_code, response_body,"
                " created_at) VALUES ($1, 'old-create', 'x', 201, $2, $3)",
                UUID(api.program_id),
                answer,
                START,
            )

    in_app(api.client, write_legacy)
    receiver.secrets.extend([legacy, previous])
    delivery = await _send_test(api, str(endpoint_id))
    assert _deliver(api.client, database_url, clock, ENCRYPTION_KEY) == 1
    refused = await _delivery(api, str(endpoint_id), delivery["id"])
    assert refused["status"] == "pending" and refused["last_status_code"] is None  # retried later
    assert refused["last_error"] == "the signing secret is stored in plain text: `encore migrate` encrypts it"
    assert receiver.received == []

    migrated = encore(database_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "encrypted 3 secrets stored in plain text" in migrated.stdout
    stored = _stored(api, str(endpoint_id))
    assert OLD_BOX.open(stored["secret"]) == legacy and OLD_BOX.open(stored["previous_secret"]) == previous
    [kept] = fetch(api.client, "SELECT response_body FROM idempotency_key")
    assert OLD_BOX.open(kept["response_body"]) == answer
    assert "whsec_" not in _everything_stored(api)
    again = encore(database_url, "migrate")
    assert again.returncode == 0 and "encrypted" not in again.stdout, again.stderr

    retried = await api.client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery['id']}/retry", headers=api.headers()
    )
    assert retried.status_code == 202, retried.text
    assert _deliver(api.client, database_url, clock, ENCRYPTION_KEY) == 1
    assert receiver.received[0].verified_with == [legacy, previous]


async def test_encore_migrate_seals_a_plaintext_answer_when_no_endpoint_is_left_to_seal(
    api: Api, receiver: Receiver, database_url: str
) -> None:
    """A migrate that died after sealing the endpoints but before the stored answers: the next one still
    seals the answers (they would otherwise keep a working secret in plain text until retention)."""
    created = await api.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url}, headers=api.headers(**idempotency())
    )
    assert created.status_code == 201, created.text
    endpoint_id, secret = created.json()["id"], created.json()["secret"]
    assert _stored(api, endpoint_id)["secret"].startswith("fernet:")  # nothing left to seal there
    answer = f'{{"id":"{endpoint_id}","secret":"{secret}"}}'

    async def write_plaintext_answer() -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO idempotency_key (program_id, key, request_hash, status_code, response_body,"
                " created_at) VALUES ($1, 'left-behind', 'x', 201, $2, $3)",
                UUID(api.program_id),
                answer,
                START,
            )

    in_app(api.client, write_plaintext_answer)
    migrated = encore(database_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "encrypted 1 secrets stored in plain text" in migrated.stdout
    [kept] = fetch(api.client, "SELECT response_body FROM idempotency_key WHERE key = 'left-behind'")
    assert OLD_BOX.open(kept["response_body"]) == answer
    assert secret not in _everything_stored(api) and "whsec_" not in _everything_stored(api)
    again = encore(database_url, "migrate")
    assert again.returncode == 0 and "encrypted" not in again.stdout, again.stderr


async def test_a_secret_no_key_opens_fails_its_delivery_and_is_named_by_rotate(
    api: Api, receiver: Receiver, clock: FrozenClock, database_url: str
) -> None:
    good = await api.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url}, headers=api.headers(**idempotency())
    )
    assert good.status_code == 201, good.text
    receiver.secrets.append(good.json()["secret"])
    lost = await api.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url}, headers=api.headers(**idempotency())
    )
    lost_id = lost.json()["id"]

    async def seal_with_a_lost_key() -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE webhook_endpoint SET secret = $2 WHERE id = $1",
                UUID(lost_id),
                SecretBox((new_key(),)).seal(domain.new_secret()),
            )

    in_app(api.client, seal_with_a_lost_key)
    failed = await _send_test(api, lost_id)
    delivered = await _send_test(api, good.json()["id"])
    assert _deliver(api.client, database_url, clock, ENCRYPTION_KEY) == 2  # the batch goes on
    assert (await _delivery(api, good.json()["id"], delivered["id"]))["status"] == "succeeded"
    attempt = await _delivery(api, lost_id, failed["id"])
    assert attempt["status"] == "pending" and attempt["attempts"] == 1
    assert (
        attempt["last_error"]
        == "the signing secret cannot be decrypted: ENCORE_ENCRYPTION_KEYS lost the key that sealed it"
    )
    assert [r.json["data"]["endpoint_id"] for r in receiver.received] == [good.json()["id"]]

    before = _stored(api, good.json()["id"])
    new = new_key()
    result = encore(database_url, "secrets", "rotate", ENCORE_ENCRYPTION_KEYS=f"{new},{ENCRYPTION_KEY}")
    assert result.returncode == 1
    assert f"webhook endpoint {lost_id} (secret): cannot be decrypted" in result.stderr
    assert "1 values could not be decrypted" in result.stderr and "Traceback" not in result.stderr
    # The other endpoint's secret is rotated, and both creations' stored answers (creating takes an
    # Idempotency-Key, so each answer is kept, sealed with the key that still opens).
    assert "rotated 3 of 4 encrypted values" in result.stdout
    assert (
        "webhook endpoints: 1 of 2, stripe connections: 0 of 0, stored idempotent answers: 2 of 2"
        in result.stdout
    )
    assert SecretBox((new,)).open(_stored(api, good.json()["id"])["secret"]) == OLD_BOX.open(before["secret"])


def test_a_bad_key_stops_a_command_with_one_line_naming_the_variable(database_url: str) -> None:
    key = new_key()
    result = encore(database_url, "migrate", ENCORE_ENCRYPTION_KEYS=f"{key} {key[:-3]}")
    assert result.returncode == 1
    assert "Error: ENCORE_ENCRYPTION_KEYS: the 2nd key (of 2) is not a Fernet key" in result.stderr
    assert "Traceback" not in result.stderr and key[:-3] not in result.stderr
    made = encore(database_url, "secrets", "new-key")
    assert made.returncode == 0, made.stderr
    box = SecretBox((made.stdout.strip(),))  # a key that works
    assert box.open(box.seal("x")) == "x"
