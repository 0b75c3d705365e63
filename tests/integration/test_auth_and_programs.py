"""API keys and scopes, tenant isolation, and the program settings."""

from __future__ import annotations

import json

from tests.conftest import Api, fetch, idempotency, make_program, order_body, table_counts
from tests.support.cli import encore


async def test_missing_invalid_and_revoked_keys_are_401(api: Api) -> None:
    assert (await api.client.get("/v1/program")).status_code == 401
    bad = await api.client.get("/v1/program", headers={"Authorization": "Bearer enc_nope"})
    assert bad.status_code == 401
    assert bad.headers["content-type"].startswith("application/problem+json")
    created = await api.client.post(
        "/v1/api-keys", json={"name": "pos", "scope": "server"}, headers=api.headers(**idempotency())
    )
    assert created.status_code == 201
    key = created.json()["api_key"]
    assert (await api.client.get("/v1/program", headers=api.headers(key))).status_code == 200
    revoked = await api.client.delete(f"/v1/api-keys/{created.json()['id']}", headers=api.headers())
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await api.client.get("/v1/program", headers=api.headers(key))).status_code == 401


async def test_scopes(api: Api) -> None:
    read = (
        await api.client.post(
            "/v1/api-keys", json={"name": "r", "scope": "read"}, headers=api.headers(**idempotency())
        )
    ).json()
    server = (
        await api.client.post(
            "/v1/api-keys", json={"name": "s", "scope": "server"}, headers=api.headers(**idempotency())
        )
    ).json()
    assert (await api.order("o-1")).status_code == 201
    read_order = await api.client.post("/v1/orders", json={}, headers=api.headers(read["api_key"]))
    assert read_order.status_code == 403
    assert (
        await api.client.get("/v1/customers/c-1", headers=api.headers(read["api_key"]))
    ).status_code == 200
    server_keys = await api.client.get("/v1/api-keys", headers=api.headers(server["api_key"]))
    assert server_keys.status_code == 403
    server_adjust = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5, "reason": "x"},
        headers=api.headers(server["api_key"], **idempotency()),
    )
    assert server_adjust.status_code == 403
    server_patch = await api.client.patch(
        "/v1/program", json={"pending_days": 0}, headers=api.headers(server["api_key"])
    )
    assert server_patch.status_code == 403


async def test_keys_are_stored_only_as_hashes_and_listed_without_secrets(api: Api) -> None:
    created = (
        await api.client.post(
            "/v1/api-keys", json={"name": "pos", "scope": "server"}, headers=api.headers(**idempotency())
        )
    ).json()
    listed = (await api.client.get("/v1/api-keys", headers=api.headers())).json()["items"]
    assert all("api_key" not in item for item in listed)
    assert {item["name"] for item in listed} == {"initial admin key", "pos"}
    rows = fetch(api.client, "SELECT key_hash FROM api_key")
    assert all(created["api_key"] not in str(row) for row in rows)


async def test_creating_a_key_needs_an_idempotency_key_and_a_replay_shows_the_same_key(api: Api) -> None:
    body = {"name": "agent desk", "scope": "agent"}
    missing = await api.client.post("/v1/api-keys", json=body, headers=api.headers())
    assert missing.status_code == 400 and missing.json()["field"] == "header:Idempotency-Key"
    headers = api.headers(**{"Idempotency-Key": "desk-key"})
    first = await api.client.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await api.client.post("/v1/api-keys", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    listed = (await api.client.get("/v1/api-keys", headers=api.headers())).json()["items"]
    assert [item["name"] for item in listed].count("agent desk") == 1
    # The answer kept for replays holds the key: sealed, never in plain text.
    stored = fetch(api.client, "SELECT response_body FROM idempotency_key WHERE key = 'desk-key'")
    assert stored[0]["response_body"].startswith("fernet:")
    assert first.json()["api_key"] not in str(fetch(api.client, "SELECT * FROM idempotency_key"))
    other = await api.client.post("/v1/api-keys", json={**body, "scope": "marketer"}, headers=headers)
    assert other.status_code == 409


async def test_encore_programs_add_key_gives_each_scope(api: Api, database_url: str) -> None:
    made = encore(
        database_url,
        *("programs", "add-key", "--program", api.program_id, "--name", "campaigns", "--scope", "marketer"),
        "--json",
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["scope"] == "marketer" and key["api_key"].startswith("enc_")
    rule = {"name": "Double", "priority": 10, "effect": {"kind": "multiplier", "multiplier": "2"}}
    created = await api.client.post(
        "/v1/rules", json=rule, headers=api.headers(key["api_key"], **idempotency())
    )
    assert created.status_code == 201, created.text
    order = await api.client.post("/v1/orders", json=order_body("o-1"), headers=api.headers(key["api_key"]))
    assert order.status_code == 403
    wrong = encore(
        database_url, "programs", "add-key", "--program", api.program_id, "--name", "x", "--scope", "owner"
    )
    assert wrong.returncode != 0 and "owner" in wrong.stderr
    unknown = encore(
        database_url,
        *("programs", "add-key", "--program", "00000000-0000-0000-0000-000000000000"),
        *("--name", "x", "--scope", "read"),
    )
    assert unknown.returncode == 1 and "program not found" in unknown.stderr


async def test_another_programs_ids_are_404(api: Api) -> None:
    await api.order("o-1")
    other = make_program(api.client, "Other shop")
    assert (await api.client.get("/v1/customers/c-1", headers=other.headers())).status_code == 404
    assert (await api.client.get("/v1/orders/o-1", headers=other.headers())).status_code == 404
    refund = await api.client.post(
        "/v1/orders/o-1/refunds", json={"external_id": "r", "amount": 100}, headers=other.headers()
    )
    assert refund.status_code == 404
    adjust = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5, "reason": "x"},
        headers=other.headers(**idempotency()),
    )
    assert adjust.status_code == 404
    first_key = (await api.client.get("/v1/api-keys", headers=api.headers())).json()["items"][0]["id"]
    assert (await api.client.delete(f"/v1/api-keys/{first_key}", headers=other.headers())).status_code == 404
    # The same ids in the other program are independent.
    assert (await other.order("o-1")).status_code == 201
    assert (await other.status())["points"]["pending"] == 90
    assert (await api.status())["orders"]["count"] == 1


async def test_program_settings(api: Api) -> None:
    program = (await api.client.get("/v1/program", headers=api.headers())).json()
    assert program["earn_rates"] == {"EUR": "1"}
    assert program["pending_days"] == 14 and program["points_expire_after_days"] is None
    assert program["point_value"] == {"amount": 1, "points": 1, "currency": "EUR"}
    patched = await api.client.patch(
        "/v1/program",
        json={
            "earn_rates": {"EUR": "2", "USD": "1.5"},
            "points_expire_after_days": 365,
            "point_value": {"amount": 5, "points": 100},
            "timezone": "Europe/Riga",
        },
        headers=api.headers(),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["earn_rates"] == {"EUR": "2", "USD": "1.5"}
    order = await api.order("o-usd", currency="USD")
    assert order.json()["order"]["points_earned"] == 135
    assert (
        order.json()["entries"][0]["explanation"] == "Base earn rate v1: 1.5 points per USD 1.00 on USD 90.00"
    )
    cleared = await api.client.patch(
        "/v1/program", json={"points_expire_after_days": None}, headers=api.headers()
    )
    assert cleared.json()["points_expire_after_days"] is None


async def test_bad_program_settings_are_422_and_change_nothing(api: Api) -> None:
    before = (await api.client.get("/v1/program", headers=api.headers())).json()
    counts = table_counts(api.client)
    cases = [
        ({"earn_rates": {"XYZ": "1"}}, "earn_rates.XYZ"),
        ({"earn_rates": {"EUR": "-1"}}, "earn_rates.EUR"),
        ({"earn_rates": {"EUR": "5000"}}, "earn_rates.EUR"),
        ({"earn_rates": {"EUR": "0.1234567"}}, "earn_rates.EUR"),
        ({"pending_days": -1}, "pending_days"),
        ({"pending_days": "3"}, "pending_days"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"point_value": {"amount": 1, "points": 0}}, "point_value.points"),
        ({"point_value": {"amount": 1, "currency": "USD"}}, "point_value.currency"),
        ({"colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = await api.client.patch("/v1/program", json=body, headers=api.headers())
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
    assert (await api.client.get("/v1/program", headers=api.headers())).json() == before
    assert table_counts(api.client) == counts


async def test_customer_upsert_keeps_omitted_fields_and_validates(api: Api) -> None:
    first = await api.client.put(
        "/v1/customers/c-1",
        json={
            "email": "ann@example.com",
            "name": "Ann",
            "locale": "lv_LV",
            "birthday": "1990-05-17",
            "timezone": "Europe/Riga",
            "marketing_consent": True,
        },
        headers=api.headers(),
    )
    assert first.status_code == 200, first.text
    assert first.json()["locale"] == "lv-LV"
    second = await api.client.put("/v1/customers/c-1", json={"name": "Anna"}, headers=api.headers())
    assert second.json()["email"] == "ann@example.com" and second.json()["name"] == "Anna"
    cleared = await api.client.put("/v1/customers/c-1", json={"email": None}, headers=api.headers())
    assert cleared.json()["email"] is None
    for body, field in [
        ({"email": "not-an-email"}, "email"),
        ({"birthday": "1990-13-45"}, "birthday"),
        ({"timezone": "Nowhere/Town"}, "timezone"),
        ({"marketing_consent": "yes"}, "marketing_consent"),
    ]:
        response = await api.client.put("/v1/customers/c-1", json=body, headers=api.headers())
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field


async def test_health_and_metrics_need_no_key(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).status_code == 200
    await api.client.get("/v1/program", headers=api.headers())
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'app_name="encore"' in metrics.text and 'path="/v1/program"' in metrics.text
