from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection

PROGRAM_FIELDS = """id, name, base_currency, earn_rates, pending_days, points_expire_after_days,
    point_value_amount, point_value_points, timezone, rules_revision, tiers_revision, event_types,
    code_prefix, cancel_redemption_on_full_refund, code_expiry_returns_points, gift_key, gift_cooldown_days,
    gifts_revision, alert_email, created_at, updated_at"""


def _program(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["earn_rates"] = msgspec.json.decode(data["earn_rates"])
    return data


async def insert_program(
    conn: Connection, program_id: UUID, name: str, currency: str, timezone: str, now: datetime
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO program (id, name, base_currency, earn_rates, pending_days, points_expire_after_days,
                             point_value_amount, point_value_points, timezone, created_at, updated_at)
        VALUES ($1, $2, $3, $4::jsonb, 14, NULL, 1, 1, $5, $6, $6)
        RETURNING {PROGRAM_FIELDS}
        """,
        program_id,
        name,
        currency,
        msgspec.json.encode({currency: "1"}).decode(),
        timezone,
        now,
    )
    return _program(row)


# Transaction-scoped advisory locks on a program's crediting settings (two-key form: this namespace, a
# 32-bit digest of the program id; two programs sharing a digest only wait for each other now and then).
# Shared by the transactions that credit points, exclusive for a change of the settings: in memory,
# no row is locked or written, so concurrent orders do not contend.
_SETTINGS_LOCKS = 0x45_4E_43_53  # "ENCS"


def _settings_key(program_id: UUID) -> int:
    return int.from_bytes(program_id.bytes[:4], "big", signed=True)


async def share_settings(conn: Connection, program_id: UUID) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared($1, $2)", _SETTINGS_LOCKS, _settings_key(program_id)
    )


async def own_settings(conn: Connection, program_id: UUID) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _SETTINGS_LOCKS, _settings_key(program_id))


async def get_program(conn: Connection, program_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {PROGRAM_FIELDS} FROM program WHERE id = $1 {'FOR UPDATE' if lock else ''}", program_id
    )
    return None if row is None else _program(row)


async def update_program(
    conn: Connection, program_id: UUID, values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        UPDATE program SET name = $2, earn_rates = $3::jsonb, pending_days = $4, points_expire_after_days = $5,
               point_value_amount = $6, point_value_points = $7, timezone = $8, updated_at = $9,
               event_types = $10, code_prefix = $11, cancel_redemption_on_full_refund = $12,
               code_expiry_returns_points = $13, gift_cooldown_days = $14, alert_email = $15
        WHERE id = $1 RETURNING {PROGRAM_FIELDS}
        """,
        program_id,
        values["name"],
        msgspec.json.encode(values["earn_rates"]).decode(),
        values["pending_days"],
        values["points_expire_after_days"],
        values["point_value_amount"],
        values["point_value_points"],
        values["timezone"],
        now,
        values["event_types"],
        values["code_prefix"],
        values["cancel_redemption_on_full_refund"],
        values["code_expiry_returns_points"],
        values["gift_cooldown_days"],
        values["alert_email"],
    )
    assert row is not None
    return _program(row)


async def bump_rules_revision(conn: Connection, program_id: UUID, *, only_from: int | None = None) -> None:
    """Tell every API process its cached rule set is stale (`only_from`: only if still at that revision)."""
    await conn.execute(
        "UPDATE program SET rules_revision = rules_revision + 1 "
        "WHERE id = $1 AND ($2::bigint IS NULL OR rules_revision = $2)",
        program_id,
        only_from,
    )


async def bump_tiers_revision(conn: Connection, program_id: UUID) -> None:
    """Tell every API process its cached tier set (and the rules built on it) is stale."""
    await conn.execute("UPDATE program SET tiers_revision = tiers_revision + 1 WHERE id = $1", program_id)


async def bump_gifts_revision(conn: Connection, program_id: UUID) -> None:
    """Tell every API process its cached gift rules are stale."""
    await conn.execute("UPDATE program SET gifts_revision = gifts_revision + 1 WHERE id = $1", program_id)


async def count_programs(conn: Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM program")
    return count


KEY_FIELDS = "id, name, prefix, scope, created_at, revoked_at"


async def insert_key(
    conn: Connection, program_id: UUID, name: str, prefix: str, key_hash: str, scope: str, now: datetime
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO api_key (id, program_id, name, prefix, key_hash, scope, created_at)
        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6) RETURNING {KEY_FIELDS}
        """,
        program_id,
        name,
        prefix,
        key_hash,
        scope,
        now,
    )
    assert row is not None
    return dict(row)


async def list_keys(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {KEY_FIELDS} FROM api_key WHERE program_id = $1 ORDER BY created_at, id", program_id
    )
    return [dict(r) for r in rows]


async def revoke_key(
    conn: Connection, program_id: UUID, key_id: UUID, now: datetime
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""
        UPDATE api_key SET revoked_at = coalesce(revoked_at, $3)
        WHERE id = $1 AND program_id = $2 RETURNING {KEY_FIELDS}
        """,
        key_id,
        program_id,
        now,
    )
    return None if row is None else dict(row)
