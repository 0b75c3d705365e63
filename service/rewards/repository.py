"""Rewards' own SQL: `reward`, `reward_version` and `redemption`. Every function runs on the caller's
connection (usually inside its transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from service.core.db import Connection, json_value
from service.tiers.published import tiers_select

REWARD_FIELDS = """r.id, r.program_id, r.version, r.status, r.definition, r.stock_left, r.used, r.created_at,
    r.updated_at"""
# How many codes a reward has issued (cancelled ones aside), for the catalogue's own answers only: the
# redemption path never counts them (the count grows with every code).
ISSUED = "(SELECT count(*) FROM redemption x WHERE x.reward_id = r.id AND x.status <> 'cancelled') AS issued"


def _reward(row: Any) -> dict[str, Any]:
    found = dict(row)
    found["definition"] = json_value(found["definition"])
    return found


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def insert_reward(
    conn: Connection,
    reward_id: UUID,
    program_id: UUID,
    status: str,
    definition: dict[str, Any],
    stock: int | None,
    now: datetime,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        WITH r AS (
            INSERT INTO reward (id, program_id, version, status, definition, stock_left, used, created_at,
                                updated_at)
            VALUES ($1, $2, 1, $3, $4::jsonb, $5, false, $6, $6)
            RETURNING *
        ), v AS (
            INSERT INTO reward_version (reward_id, version, definition, created_at)
            SELECT id, 1, definition, created_at FROM r
        )
        SELECT {REWARD_FIELDS}, 0::bigint AS issued FROM r
        """,
        reward_id,
        program_id,
        status,
        _json(definition),
        stock,
        now,
    )
    assert row is not None
    return _reward(row)


async def get_reward(
    conn: Connection, program_id: UUID, reward_id: UUID, *, lock: bool = False, issued: bool = False
) -> dict[str, Any] | None:
    """The reward (`issued`: with its count of codes, for an answer about the reward itself)."""
    columns = f"{REWARD_FIELDS}, {ISSUED}" if issued else REWARD_FIELDS
    row = await conn.fetchrow(
        f"SELECT {columns} FROM reward r WHERE r.id = $1 AND r.program_id = $2 {'FOR UPDATE' if lock else ''}",
        reward_id,
        program_id,
    )
    return None if row is None else _reward(row)


async def list_rewards(
    conn: Connection, program_id: UUID, status: str | None, *, issued: bool = False
) -> list[dict[str, Any]]:
    columns = f"{REWARD_FIELDS}, {ISSUED}" if issued else REWARD_FIELDS
    rows = await conn.fetch(
        f"""SELECT {columns} FROM reward r
        WHERE r.program_id = $1 AND ($2::text IS NULL OR r.status = $2) ORDER BY r.created_at, r.id""",
        program_id,
        status,
    )
    return [_reward(r) for r in rows]


async def save_reward(
    conn: Connection,
    reward_id: UUID,
    *,
    definition: dict[str, Any],
    status: str,
    stock: int | None,
    new_version: bool,
    now: datetime,
) -> None:
    """Write the definition as the next version (the reward has issued codes), or over the current one."""
    await conn.execute(
        """
        WITH r AS (
            UPDATE reward SET definition = $2::jsonb, status = $3, stock_left = $4, updated_at = $6,
                   version = version + CASE WHEN $5 THEN 1 ELSE 0 END
            WHERE id = $1 RETURNING id, version
        )
        INSERT INTO reward_version (reward_id, version, definition, created_at)
        SELECT r.id, r.version, $2::jsonb, $6 FROM r
        ON CONFLICT (reward_id, version) DO UPDATE SET definition = EXCLUDED.definition,
            created_at = EXCLUDED.created_at
        """,
        reward_id,
        _json(definition),
        status,
        stock,
        new_version,
        now,
    )


async def set_status_and_stock(
    conn: Connection, reward_id: UUID, status: str, stock: int | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE reward SET status = $2, stock_left = $3, updated_at = $4 WHERE id = $1",
        reward_id,
        status,
        stock,
        now,
    )


async def delete_reward(conn: Connection, reward_id: UUID) -> None:
    await conn.execute("DELETE FROM reward WHERE id = $1", reward_id)


async def versions(conn: Connection, reward_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT version, definition, created_at FROM reward_version WHERE reward_id = $1 ORDER BY version DESC",
        reward_id,
    )
    return [{**dict(r), "definition": json_value(r["definition"])} for r in rows]


async def tiers(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(tiers_select("$1"), program_id)]


async def take_stock(conn: Connection, reward_id: UUID) -> bool:
    """One code less to issue of a limited reward (its row locked until commit); False when none is left."""
    left = await conn.fetchval(
        "UPDATE reward SET stock_left = stock_left - 1 WHERE id = $1 AND stock_left > 0 RETURNING stock_left",
        reward_id,
    )
    return left is not None


async def return_stock(conn: Connection, reward_id: UUID) -> None:
    """A cancelled code of a limited reward can be issued again (unlimited rewards: nothing to do)."""
    await conn.execute(
        "UPDATE reward SET stock_left = stock_left + 1 WHERE id = $1 AND stock_left IS NOT NULL", reward_id
    )


async def mark_used(conn: Connection, reward_id: UUID) -> None:
    """The reward has issued a code: from now on a change makes a new version (only the first code writes)."""
    await conn.execute("UPDATE reward SET used = true WHERE id = $1 AND NOT used", reward_id)


async def count_since(conn: Connection, customer_id: UUID, reward_id: UUID, since: datetime | None) -> int:
    """The customer's codes of the reward since `since` (None: ever), cancelled ones aside."""
    value = await conn.fetchval(
        """SELECT count(*) FROM redemption WHERE customer_id = $1 AND reward_id = $2 AND status <> 'cancelled'
           AND ($3::timestamptz IS NULL OR created_at >= $3)""",
        customer_id,
        reward_id,
        since,
    )
    return int(value)


async def customer_redemption_times(conn: Connection, customer_id: UUID) -> list[tuple[UUID, datetime]]:
    rows = await conn.fetch(
        "SELECT reward_id, created_at FROM redemption WHERE customer_id = $1 AND status <> 'cancelled'",
        customer_id,
    )
    return [(r["reward_id"], r["created_at"]) for r in rows]


REDEMPTION_FIELDS = """d.id, d.program_id, d.customer_id, c.external_id AS customer_external_id, d.reward_id,
    d.reward_version, d.code, d.status, d.source, d.points, d.entry_id, d.discount, d.value_amount, d.currency,
    d.order_id, o.external_id AS order_external_id, d.used_at, d.cancelled_at, d.expired_at, d.return_entry_id,
    d.points_returned, d.expires_at, d.created_at"""
REDEMPTION_FROM = """redemption d JOIN customer c ON c.id = d.customer_id
    LEFT JOIN orders o ON o.id = d.order_id"""


def _redemption(row: Any) -> dict[str, Any]:
    found = dict(row)
    found["discount"] = json_value(found["discount"])
    return found


class RewardGone(Exception):
    """The reward was deleted while a code of it was being issued."""


async def insert_redemption(conn: Connection, values: dict[str, Any]) -> bool:
    """A new code; False when its code or its source key is taken already (nothing written). Raises
    RewardGone when the reward was deleted meanwhile (a delete only ever removes a reward with no codes)."""
    try:
        return await _insert_redemption(conn, values)
    except asyncpg.ForeignKeyViolationError as exc:
        raise RewardGone from exc


async def _insert_redemption(conn: Connection, values: dict[str, Any]) -> bool:
    inserted = await conn.fetchval(
        """
        INSERT INTO redemption (id, program_id, customer_id, reward_id, reward_version, code, code_key, status,
                                source, source_key, points, entry_id, discount, value_amount, currency,
                                expires_at, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'issued', $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16)
        ON CONFLICT DO NOTHING RETURNING 1
        """,
        values["id"],
        values["program_id"],
        values["customer_id"],
        values["reward_id"],
        values["reward_version"],
        values["code"],
        values["code_key"],
        values["source"],
        values["source_key"],
        values["points"],
        values["entry_id"],
        _json(values["discount"]),
        values["value_amount"],
        values["currency"],
        values["expires_at"],
        values["created_at"],
    )
    return inserted is not None


async def source_taken(conn: Connection, program_id: UUID, source_key: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM redemption WHERE program_id = $1 AND source_key = $2", program_id, source_key
    )
    return found is not None


async def get_redemption(conn: Connection, program_id: UUID, redemption_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {REDEMPTION_FIELDS} FROM {REDEMPTION_FROM} WHERE d.id = $1 AND d.program_id = $2",
        redemption_id,
        program_id,
    )
    return None if row is None else _redemption(row)


async def by_codes(conn: Connection, program_id: UUID, keys: list[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT d.code_key, {REDEMPTION_FIELDS} FROM {REDEMPTION_FROM}
        WHERE d.program_id = $1 AND d.code_key = ANY($2::text[])""",
        program_id,
        keys,
    )
    found = [dict(r) for r in rows]
    return {r.pop("code_key"): _redemption(r) for r in found}


async def mark_code_used(
    conn: Connection,
    redemption_id: UUID,
    now: datetime,
    order_id: UUID | None,
    value: tuple[int, str] | None,
) -> bool:
    """issued -> used, guarded on the state and the date: of two uses at once exactly one wins."""
    done = await conn.fetchval(
        """
        UPDATE redemption SET status = 'used', used_at = $2, order_id = $3,
               value_amount = coalesce(value_amount, $4), currency = coalesce(currency, $5)
        WHERE id = $1 AND status = 'issued' AND (expires_at IS NULL OR expires_at > $2)
        RETURNING 1
        """,
        redemption_id,
        now,
        order_id,
        None if value is None else value[0],
        None if value is None else value[1],
    )
    return done is not None


async def close(
    conn: Connection, redemption_id: UUID, *, to: str, from_: tuple[str, ...], now: datetime
) -> dict[str, Any] | None:
    """Move a code from one of `from_` to `cancelled` or `expired` (guarded on its state); the row as it
    was, or None when it was in none of those states."""
    stamp = "cancelled_at" if to == "cancelled" else "expired_at"
    row = await conn.fetchrow(
        f"""
        UPDATE redemption d SET status = $2, {stamp} = $3
        WHERE d.id = $1 AND d.status = ANY($4::text[])
        RETURNING d.id, d.reward_id, d.entry_id, d.points
        """,
        redemption_id,
        to,
        now,
        list(from_),
    )
    return None if row is None else dict(row)


async def set_returned(conn: Connection, redemption_id: UUID, entry_id: int, points: int) -> None:
    await conn.execute(
        "UPDATE redemption SET return_entry_id = $2, points_returned = $3 WHERE id = $1",
        redemption_id,
        entry_id,
        points,
    )


async def used_by_order(conn: Connection, order_id: UUID) -> list[UUID]:
    rows = await conn.fetch(
        "SELECT id FROM redemption WHERE order_id = $1 AND status = 'used' ORDER BY created_at, id", order_id
    )
    return [r["id"] for r in rows]


async def list_redemptions(
    conn: Connection,
    program_id: UUID,
    customer_external_id: str | None,
    status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {REDEMPTION_FIELDS} FROM {REDEMPTION_FROM}
        WHERE d.program_id = $1 AND ($2::text IS NULL OR c.external_id = $2)
          AND ($3::text IS NULL OR d.status = $3)
          AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))
        ORDER BY d.created_at DESC, d.id DESC LIMIT $6
        """,
        program_id,
        customer_external_id,
        status,
        None if after is None else after[0],
        None if after is None else after[1],
        limit,
    )
    return [_redemption(r) for r in rows]


async def due_to_expire(conn: Connection, now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
    """(program, redemption) of issued codes past their date, soonest first."""
    rows = await conn.fetch(
        """SELECT program_id, id FROM redemption WHERE status = 'issued' AND expires_at IS NOT NULL
           AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2""",
        now,
        limit,
    )
    return [(r["program_id"], r["id"]) for r in rows]


def open_codes_select(customer_id: str, now: str) -> str:
    """A query (JSON array) of the customer's codes that can still be used at `now` (SQL expressions), for
    the customer status: code, reward name, what it gives, expiry, soonest expiry first."""
    return f"""
        SELECT coalesce(json_agg(json_build_object(
                   'redemption_id', d.id, 'code', d.code, 'reward_id', d.reward_id, 'name', d.discount -> 'name',
                   'kind', d.discount ->> 'kind', 'expires_at', d.expires_at)
                 ORDER BY d.expires_at NULLS LAST, d.created_at), '[]')
        FROM redemption d
        WHERE d.customer_id = {customer_id} AND d.status = 'issued'
          AND (d.expires_at IS NULL OR d.expires_at > {now})
    """


async def codes_shown(conn: Connection, redemption_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """The codes messages send: each code, its state and date, and its reward's name and description per
    locale as of the version it was issued from (every version has its row in reward_version)."""
    if not redemption_ids:
        return {}
    rows = await conn.fetch(
        """
        SELECT d.id, d.code, d.status, d.expires_at,
               coalesce(v.definition -> 'name', d.discount -> 'name') AS name, v.definition -> 'description' AS description
        FROM redemption d
        LEFT JOIN reward_version v ON v.reward_id = d.reward_id AND v.version = d.reward_version
        WHERE d.id = ANY($1::uuid[])
        """,
        redemption_ids,
    )
    return {
        r["id"]: {**dict(r), "name": json_value(r["name"]), "description": json_value(r["description"])}
        for r in rows
    }
