"""Idempotency keys: the same key and body replay the stored response; the same key with another body is 409.

The key row is inserted first, in the business transaction: a concurrent request with the same key
waits on the unique index until the first commits, then finds the stored response. A failed request
rolls its key back, so the client can retry it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar.params import HeaderParameter

from service.core import db
from service.core.db import Connection
from service.core.errors import IdempotencyMismatch, InvalidInput
from service.core.secrets import PREFIX, Row, SealedStore, SecretBox

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=False,
        description="Replaying a request with the same key and body returns the first response; nothing is written twice.",
    ),
]
# Where a retry could do harm that nothing else in the body would catch (an event has no id of its own),
# the key is required: 400 without it.
RequiredIdempotencyKeyHeader = Annotated[
    str,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=True,
        description="Required. Replaying a request with the same key and body returns the first response; "
        "nothing is written twice.",
    ),
]


def fingerprint(method: str, path: str, body: Any) -> str:
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(msgspec.json.encode(body))
    return digest.hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= 255:
        raise InvalidInput("Idempotency-Key must have 1 to 255 characters", field="header:Idempotency-Key")
    return key


@dataclass(frozen=True, slots=True)
class Stored:
    """The answer stored for a key: what a replay sends again."""

    status_code: int
    body: str  # the JSON, opened if it was stored sealed


async def claim(
    conn: Connection,
    program_id: UUID,
    key: str,
    request_hash: str,
    now: datetime,
    sealed_with: SecretBox | None = None,
) -> Stored | None:
    """Claim `key` in this transaction (None: the request runs now), or the answer stored for it (a
    replay); 409 when the key was used for another request. A concurrent claim of the same key waits on
    the unique index until the first transaction ends."""
    inserted = await conn.fetchval(
        """
        INSERT INTO idempotency_key (program_id, key, request_hash, created_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (program_id, key) DO NOTHING RETURNING id
        """,
        program_id,
        key,
        request_hash,
        now,
    )
    if inserted is not None:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response_body FROM idempotency_key WHERE program_id = $1 AND key = $2",
        program_id,
        key,
    )
    assert row is not None
    if row["request_hash"] != request_hash:
        raise IdempotencyMismatch(
            "this Idempotency-Key was used for a different request; use a new key for a new request",
            field="header:Idempotency-Key",
        )
    body: str = row["response_body"]
    if sealed_with is not None and sealed_with.is_sealed(body):  # (not: stored before sealing)
        body = sealed_with.open(body)
    return Stored(row["status_code"], body)


async def store(
    conn: Connection,
    program_id: UUID,
    key: str,
    status_code: int,
    body: bytes,
    sealed_with: SecretBox | None = None,
) -> None:
    """Keep the answer of a claimed key for its replays (sealed with `sealed_with` when it holds a secret)."""
    await conn.execute(
        "UPDATE idempotency_key SET status_code = $3, response_body = $4 WHERE program_id = $1 AND key = $2",
        program_id,
        key,
        status_code,
        body.decode() if sealed_with is None else sealed_with.seal(body.decode()),
    )


async def forget_older_than(cutoff: datetime) -> int:
    """Delete keys created before `cutoff` (the retention promise: a replay within it is safe)."""
    return await db.delete_in_chunks(
        """
        WITH old AS (SELECT id FROM idempotency_key WHERE created_at < $1 LIMIT $2),
        gone AS (DELETE FROM idempotency_key k USING old WHERE k.id = old.id RETURNING 1)
        SELECT count(*) FROM gone
        """,
        cutoff,
    )


# Answers that held a webhook signing secret were stored in plain text before secrets were sealed.
_PLAINTEXT_SECRET = '"secret":"whsec_'  # (strpos: a quarter of LIKE's time on a million answers)


async def _lock_sealed(conn: Connection, after: int | None, limit: int, plaintext_only: bool) -> list[Row]:
    """Stored answers that are sealed (or, `plaintext_only`, that hold a secret not sealed yet), by id."""
    rows = await conn.fetch(
        """
        SELECT id, response_body FROM idempotency_key
        WHERE ($1::bigint IS NULL OR id > $1)
          AND CASE WHEN $3 THEN NOT starts_with(response_body, $4) AND strpos(response_body, $5) > 0
                   ELSE starts_with(response_body, $4) END
        ORDER BY id LIMIT $2
        FOR UPDATE
        """,
        after,
        limit,
        plaintext_only,
        PREFIX,
        _PLAINTEXT_SECRET,
    )
    return [(r["id"], (r["response_body"],)) for r in rows]


async def _write_sealed(conn: Connection, rows: list[Row]) -> None:
    await conn.execute(
        "UPDATE idempotency_key k SET response_body = r.body FROM unnest($1::bigint[], $2::text[]) AS r(id, body)"
        " WHERE k.id = r.id",
        [key for key, _ in rows],
        [values[0] for _, values in rows],
    )


SEALED_RESPONSES = SealedStore("stored idempotent answer", ("response_body",), _lock_sealed, _write_sealed)
