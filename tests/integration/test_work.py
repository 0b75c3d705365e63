"""The request helper (service/core/work.py) on the real database: the program loaded only when asked,
after-commit work only after a commit (never after a rollback or on a replay), `before` around it all."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from litestar import Request

from service.core import db
from service.core.auth import Principal
from service.core.errors import IdempotencyMismatch, InvalidInput
from service.core.work import Runner, Work
from service.programs import service as programs
from service.programs.service import Program
from tests.conftest import START, Api, fetch, in_app


def _runner(api: Api, path: str = "/v1/probe") -> Runner[Program]:
    """A runner as the app builds one for a POST to `path` by the program's admin key."""
    key_id = fetch(api.client, "SELECT id FROM api_key WHERE program_id = $1", UUID(api.program_id))[0]["id"]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("testserver", 80),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "user": Principal(UUID(api.program_id), key_id, "admin"),
    }
    return Runner(Request(scope), START, programs.load)


async def _name(program_id: UUID) -> str:
    # Another connection: sees only what was committed.
    async with db.connection() as conn:
        name: str = await conn.fetchval("SELECT name FROM program WHERE id = $1", program_id)
    return name


def test_after_commit_work_sees_the_commit_and_a_replay_runs_nothing(api: Api) -> None:
    run = _runner(api)
    seen: list[str] = []

    async def rename(work: Work[Program]) -> dict[str, str]:
        assert work.program.id == work.program_id and work.now == START
        await work.conn.execute("UPDATE program SET name = 'Renamed' WHERE id = $1", work.program_id)

        async def after() -> None:
            seen.append(await _name(work.program_id))

        work.after_commit(after)
        assert seen == []  # not yet: the transaction is open
        return {"name": "Renamed"}

    async def twice() -> tuple[Any, Any]:
        first = await run.idempotent("k-1", {"to": "Renamed"}, rename, load="program")
        again = await run.idempotent("k-1", {"to": "Renamed"}, rename, load="program")
        return first, again

    first, again = in_app(api.client, twice)
    assert seen == ["Renamed"]  # after the commit, once: the replay ran neither the use case nor its work
    assert first.status_code == 201 and first.content == b'{"name":"Renamed"}'
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == first.content
    with pytest.raises(IdempotencyMismatch):
        in_app(api.client, run.idempotent, "k-1", {"to": "Other"}, rename)


def test_no_after_commit_work_after_a_rollback(api: Api) -> None:
    run = _runner(api)
    seen: list[str] = []

    async def fail(work: Work[None]) -> None:
        assert work.program is None  # not asked for: not loaded
        await work.conn.execute("UPDATE program SET name = 'Lost' WHERE id = $1", work.program_id)

        async def after() -> None:
            seen.append("ran")

        work.after_commit(after)
        raise InvalidInput("refused", field="name")

    with pytest.raises(InvalidInput):
        in_app(api.client, run.transaction, fail)
    with pytest.raises(InvalidInput):
        in_app(api.client, run.idempotent, "k-2", {}, fail)
    assert seen == []
    assert in_app(api.client, _name, UUID(api.program_id)) == "Shop"
    # The failed request's key was rolled back with it: the client can retry.
    assert fetch(api.client, "SELECT count(*) AS n FROM idempotency_key WHERE key = 'k-2'")[0]["n"] == 0


def test_before_is_entered_before_the_connection_and_left_after_the_work(api: Api) -> None:
    run = _runner(api)
    steps: list[str] = []

    class Slot:
        async def __aenter__(self) -> None:
            steps.append("slot")

        async def __aexit__(self, *_: object) -> None:
            steps.append("slot left")

    async def read(work: Work[Program]) -> str:
        steps.append(f"read {work.program.base_currency}")

        async def after() -> None:
            steps.append("after")

        work.after_commit(after)
        return "ok"

    assert in_app(api.client, lambda: run.read(read, load="program", before=Slot())) == "ok"
    assert steps == ["slot", "read EUR", "after", "slot left"]
