"""The request helper for use cases: one unit of work per request.

A handler asks its `run` dependency (a `Runner`, built per request by the app) to run a use case:
`run.read` on a plain connection, `run.transaction` in one transaction, `run.idempotent` in one
transaction once per Idempotency-Key. The runner loads the program when asked (`load="program"`, or
`load="crediting"` for a use case that credits points), claims or replays the key, and after a
successful commit runs the work the use case registered with `work.after_commit` (never on a replay,
never after a rollback). Core sits below the features: the program loader is handed in by the app.

    @patch("/{rule_id:str}", guards=[requires(Permission.CONFIGURE)])
    async def update_rule(self, rule_id: FromPath[UUID], data: JSONBody[RulePatch], run: Run[Program]) -> RuleOut:
        return await run.transaction(
            lambda work: service.update(work.conn, work.program, rule_id, data, work.now), load="program"
        )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar, overload
from uuid import UUID

import msgspec
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from service.core import db, idempotency
from service.core.auth import Principal
from service.core.db import Connection
from service.core.secrets import SecretBox

T = TypeVar("T")
P = TypeVar("P")  # the program's settings, as the loader the app hands in returns them
P_co = TypeVar("P_co", covariant=True)
Loaded = TypeVar("Loaded")  # P when the use case asked for the program, None when it did not

# "program": the use case reads the program's settings; "crediting": it credits points by them, so a
# change of the settings waits for it (and it for the change): see `programs.load`.
Load: TypeAlias = Literal["program", "crediting"]
AfterCommit: TypeAlias = Callable[[], Awaitable[object]]


class LoadProgram(Protocol[P_co]):
    """How the app loads a program (service.programs.load): core cannot import the feature."""

    def __call__(self, conn: Connection, program_id: UUID, *, crediting: bool = False) -> Awaitable[P_co]: ...


@dataclass(slots=True)
class Work(Generic[Loaded]):
    """What a use case is given: its connection (in a transaction unless `run.read`), the program (None
    unless asked for with `load=`), the request's time and who asked."""

    conn: Connection
    program_id: UUID
    program: Loaded
    now: datetime
    actor: str  # as ledger entries and audit events name the caller: "api key <id>"
    _after_commit: list[AfterCommit] = field(default_factory=list)

    def after_commit(self, work: AfterCommit) -> None:
        """Run `work` once the transaction has committed (not at all if it rolls back or is replayed):
        what must not hold the transaction open or must not happen for a change that did not stick."""
        self._after_commit.append(work)


UseCase: TypeAlias = Callable[[Work[Loaded]], Awaitable[T]]


class Runner(Generic[P]):
    """A request's use cases: its program, time and caller, the database and the idempotency keys."""

    __slots__ = ("_load_program", "_request", "actor", "now", "program_id")

    def __init__(self, request: Request[Principal, Any, Any], now: datetime, load_program: LoadProgram[P]):
        self._request = request
        self._load_program = load_program
        self.program_id: UUID = request.user.program_id
        self.now = now  # one reading of the clock for the whole request
        self.actor = f"api key {request.user.key_id}"

    # Without `load` the use case gets Work[None]: no round trip for a program it does not read.
    @overload
    async def read(
        self,
        use_case: UseCase[P, T],
        *,
        load: Load,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> T: ...
    @overload
    async def read(
        self, use_case: UseCase[None, T], *, before: AbstractAsyncContextManager[object] | None = None
    ) -> T: ...
    async def read(
        self,
        use_case: UseCase[Any, T],
        *,
        load: Load | None = None,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> T:
        """`use_case` on a plain connection (reads that need no transaction). `before`: a context entered
        first and left last, e.g. a render slot that must not hold a connection while it waits."""
        return await self._on(db.connection, use_case, load, before)

    @overload
    async def transaction(
        self,
        use_case: UseCase[P, T],
        *,
        load: Load,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> T: ...
    @overload
    async def transaction(
        self, use_case: UseCase[None, T], *, before: AbstractAsyncContextManager[object] | None = None
    ) -> T: ...
    async def transaction(
        self,
        use_case: UseCase[Any, T],
        *,
        load: Load | None = None,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> T:
        """`use_case` in one transaction: it commits when the use case returns, rolls back if it raises;
        the after-commit work runs after the commit."""
        return await self._on(db.transaction, use_case, load, before)

    async def _on(
        self,
        connect: Callable[[], AbstractAsyncContextManager[Connection]],
        use_case: UseCase[Any, T],
        load: Load | None,
        before: AbstractAsyncContextManager[object] | None,
    ) -> T:
        """`use_case` on the connection `connect` gives (plain or in a transaction), `before` around it,
        then the after-commit work."""
        async with AsyncExitStack() as stack:
            if before is not None:
                await stack.enter_async_context(before)
            async with connect() as conn:
                work = await self._work(conn, load)
                result = await use_case(work)
            await _after(work)
        return result

    @overload
    async def idempotent(
        self,
        key: str | None,
        body: object,
        use_case: UseCase[P, T],
        *,
        load: Load,
        status_code: int = 201,
        sealed_with: SecretBox | None = None,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> Response[T]: ...
    @overload
    async def idempotent(
        self,
        key: str | None,
        body: object,
        use_case: UseCase[None, T],
        *,
        status_code: int = 201,
        sealed_with: SecretBox | None = None,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> Response[T]: ...
    async def idempotent(
        self,
        key: str | None,
        body: object,
        use_case: UseCase[Any, T],
        *,
        load: Load | None = None,
        status_code: int = 201,
        sealed_with: SecretBox | None = None,
        before: AbstractAsyncContextManager[object] | None = None,
    ) -> Response[T]:
        """`use_case` in one transaction, once per Idempotency-Key (`key`, None: no key sent): the same key
        and `body` again replay the stored answer (with `Idempotent-Replayed: true`), the same key with
        another body is 409. The key is claimed before the program is loaded: a replay reads nothing else.
        `sealed_with`: the answer holds a secret, so it is stored sealed."""
        key = idempotency.check_key(key)
        request_hash = idempotency.fingerprint(self._request.method, self._request.url.path, body)
        async with AsyncExitStack() as stack:
            if before is not None:
                await stack.enter_async_context(before)
            async with db.transaction() as conn:
                if key is not None:
                    replay = await idempotency.claim(
                        conn, self.program_id, key, request_hash, self.now, sealed_with
                    )
                    if replay is not None:
                        return _replayed(replay)
                work = await self._work(conn, load)
                encoded = msgspec.json.encode(await use_case(work))
                if key is not None:
                    await idempotency.store(conn, self.program_id, key, status_code, encoded, sealed_with)
            await _after(work)
        return _answer(encoded, status_code)

    async def _work(self, conn: Connection, load: Load | None) -> Work[Any]:
        program = (
            None
            if load is None
            else await self._load_program(conn, self.program_id, crediting=load == "crediting")
        )
        return Work(conn, self.program_id, program, self.now, self.actor)


async def _after(work: Work[Any]) -> None:
    for after_commit in work._after_commit:
        await after_commit()


async def committed(work: Work[Any]) -> None:
    """Run what `work` registered for after its commit: for a caller outside a request (the worker) that
    built its own `Work` and has just committed its transaction."""
    await _after(work)


# The answer is sent as the JSON already encoded (once: the same bytes are stored for replays), so its
# content is bytes, not the T the handler declares for the OpenAPI document; Response[Any] says so.
def _answer(encoded: bytes, status_code: int) -> Response[Any]:
    return Response(encoded, status_code=status_code, media_type="application/json")


def _replayed(replay: idempotency.Stored) -> Response[Any]:
    return Response(
        replay.body.encode(),
        status_code=replay.status_code,
        media_type="application/json",
        headers={idempotency.REPLAY_HEADER: "true"},
    )


Run: TypeAlias = NamedDependency[SkipValidation[Runner[P]]]
"""A handler's parameter `run: Run[Program]`: the app provides a `Runner` per request under that name."""
