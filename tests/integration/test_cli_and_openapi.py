"""The `encore` command and the committed OpenAPI document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.app import openapi_document
from tests.conftest import Api, fetch

ROOT = Path(__file__).resolve().parents[2]


def encore(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENCORE_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_committed_openapi_matches_the_app() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_bytes()
    assert committed == openapi_document(), "openapi/openapi.json is stale: run `make openapi` and commit it"


async def test_programs_create_prints_json_with_a_working_key(api: Api, database_url: str) -> None:
    result = encore(
        database_url, "programs", "create", "--name", "Corner shop", "--currency", "GBP", "--json"
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"program_id", "api_key"}
    program = await api.client.get("/v1/program", headers=api.headers(created["api_key"]))
    assert program.status_code == 200
    assert program.json()["base_currency"] == "GBP" and program.json()["id"] == created["program_id"]
    bad = encore(database_url, "programs", "create", "--name", "X", "--currency", "ZZZ")
    assert bad.returncode != 0 and "currency" in bad.stderr


async def test_ledger_commands(api: Api, database_url: str) -> None:
    await api.client.patch("/v1/program", json={"points_expire_after_days": 30}, headers=api.headers())
    await api.order("o-1")
    matured = encore(database_url, "ledger", "mature", "--now", "2026-03-17T00:00:00Z")
    assert matured.returncode == 0 and "matured 1 lots, 90 points" in matured.stdout
    expired = encore(database_url, "ledger", "expire", "--now", "2026-04-16T00:00:00Z")
    assert expired.returncode == 0 and "expired 1 lots, 90 points" in expired.stdout
    ok = encore(database_url, "ledger", "verify")
    assert ok.returncode == 0 and "ledger consistent" in ok.stdout
    fetch(api.client, "UPDATE customer_balance SET debt = 7 RETURNING customer_id")
    broken = encore(database_url, "ledger", "verify")
    assert broken.returncode == 1
    assert "cached debt differs from the sum of the entries" in broken.stderr


async def test_tiers_reevaluate_command(api: Api, database_url: str) -> None:
    tier = {
        "key": "silver",
        "name": "Silver",
        "rank": 1,
        "qualification": {"metric": "orders", "threshold": 2, "window": "rolling_months", "months": 1},
    }
    assert (await api.client.post("/v1/tiers", json=tier, headers=api.headers())).status_code == 201
    await api.order("o-1")
    await api.order("o-2")  # Silver at once; the orders leave the window a month later
    later = encore(database_url, "tiers", "reevaluate", "--now", "2026-05-20T00:00:00Z")
    assert later.returncode == 0, later.stderr
    assert "1 warn" in later.stdout
    again = encore(database_url, "tiers", "reevaluate", "--now", "2026-05-20T00:00:00Z")
    assert again.returncode == 0 and "no change" in again.stdout
    bad = encore(database_url, "tiers", "reevaluate", "--program", "not-a-uuid")
    assert bad.returncode != 0 and "--program" in bad.stderr
