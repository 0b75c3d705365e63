"""The `encore` command and the committed OpenAPI document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from service.app import openapi_document
from tests.conftest import Api, create_database, drop_database, fetch, idempotency
from tests.support.cli import encore

ROOT = Path(__file__).resolve().parents[2]


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
    assert (
        await api.client.post("/v1/tiers", json=tier, headers=api.headers(**idempotency()))
    ).status_code == 201
    await api.order("o-1")
    await api.order("o-2")  # Silver at once; the orders leave the window a month later
    later = encore(database_url, "tiers", "reevaluate", "--now", "2026-05-20T00:00:00Z")
    assert later.returncode == 0, later.stderr
    assert "1 warn" in later.stdout
    again = encore(database_url, "tiers", "reevaluate", "--now", "2026-05-20T00:00:00Z")
    assert again.returncode == 0 and "no change" in again.stdout
    bad = encore(database_url, "tiers", "reevaluate", "--program", "not-a-uuid")
    assert bad.returncode != 0 and "--program" in bad.stderr


async def test_migrate_says_in_one_line_what_it_did(database_url: str) -> None:
    url = await create_database(database_url, "encore_cli")
    try:
        first = encore(url, "migrate")
        assert first.returncode == 0, first.stderr
        count = len(list((ROOT / "migrations").glob("encore_*.py")))
        assert first.stdout.startswith(f"applied {count} of {count} migrations: 2026-11-22T23:17:39")
        again = encore(url, "ledger", "verify")
        assert again.returncode == 0, again.stderr
        assert f"database schema up to date ({count} migrations)" in again.stderr
        for chatter in (first.stdout + first.stderr, again.stdout + again.stderr):
            assert "already complete" not in chatter and "not yet run" not in chatter  # Piccolo's own prints
    finally:
        await drop_database(database_url, url)


async def test_a_failing_migration_still_shows_piccolos_message(database_url: str) -> None:
    url = await create_database(database_url, "encore_cli")
    try:
        blocker = await asyncpg.connect(url)
        try:
            await blocker.execute("CREATE TABLE program (id int)")  # in the first migration's way
        finally:
            await blocker.close()
        failed = encore(url, "migrate")
        assert failed.returncode != 0
        assert "Running" in failed.stderr and 'relation "program" already exists' in failed.stderr
    finally:
        await drop_database(database_url, url)


def test_the_embedded_database_starts_without_a_runtime_dir_warning(tmp_path: Path) -> None:
    """Without a login session (no XDG_RUNTIME_DIR) platformdirs warned on every call, as pgserver was
    imported; the command now brings its own runtime directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "ENCORE_DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "ledger", "verify"],
        cwd=ROOT,
        env={**env, "ENCORE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "ledger consistent" in result.stdout
    assert "RuntimeDirWarning" not in result.stderr and "XDG_RUNTIME_DIR" not in result.stderr
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
