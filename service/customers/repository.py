from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from service.core.db import Connection

CUSTOMER_FIELDS = """id, program_id, external_id, email, name, locale, birthday, timezone, marketing_consent,
    transactional_consent, created_at, updated_at, tier_id, tier_since, tier_source, tier_manual_until, tier_warned_at, tier_downgrade_at,
    tier_check_after"""
PROFILE_COLUMNS = (
    "email",
    "name",
    "locale",
    "birthday",
    "timezone",
    "marketing_consent",
    "transactional_consent",
)


async def upsert(
    conn: Connection,
    program_id: UUID,
    external_id: str,
    profile: dict[str, Any],
    now: datetime,
    *laterals: str,
) -> tuple[dict[str, Any], bool]:
    """Insert the customer or update the given profile fields; also make sure its balance row exists.

    Returns the row (plus the columns of LATERAL fragments on `c.id`) and whether it was created.
    """
    columns = [c for c in PROFILE_COLUMNS if c in profile]
    values = [profile[c] for c in columns]
    insert_columns = ", ".join(["program_id", "external_id", *columns, "created_at", "updated_at"])
    placeholders = ", ".join(f"${i}" for i in range(3, 3 + len(columns)))
    now_param = f"${3 + len(columns)}"
    updates = ", ".join([*(f"{c} = EXCLUDED.{c}" for c in columns), "updated_at = EXCLUDED.updated_at"])
    if not columns:
        # Nothing to change: still take the row (and a lock on it) so RETURNING gives it back.
        updates = "external_id = EXCLUDED.external_id"
    row = await conn.fetchrow(
        f"""
        WITH c AS (
            INSERT INTO customer (id, {insert_columns})
            VALUES (gen_random_uuid(), $1, $2{", " + placeholders if columns else ""}, {now_param}, {now_param})
            ON CONFLICT (program_id, external_id) DO UPDATE SET {updates}
            RETURNING {CUSTOMER_FIELDS}, (xmax = 0) AS created
        ), b AS (
            INSERT INTO customer_balance (customer_id, program_id, available, pending, debt, lifetime_earned,
                                          updated_at)
            SELECT id, program_id, 0, 0, 0, 0, {now_param} FROM c WHERE created
            ON CONFLICT (customer_id) DO NOTHING
        )
        SELECT * FROM c {" ".join(laterals)}
        """,
        program_id,
        external_id,
        *values,
        now,
    )
    assert row is not None
    data = dict(row)
    created = bool(data.pop("created"))
    return data, created


async def get(
    conn: Connection,
    program_id: UUID,
    external_id: str,
    *laterals: str,
    lock: bool = False,
    params: Sequence[Any] = (),
) -> dict[str, Any] | None:
    """The customer, plus the columns other features add through LATERAL joins on `c.id` (one round trip;
    the fragments may use `params` as $3, $4, ...); with `lock`, its row is held until commit."""
    row = await conn.fetchrow(
        f"SELECT * FROM customer c {' '.join(laterals)} WHERE c.program_id = $1 AND c.external_id = $2"
        + (" FOR UPDATE OF c" if lock else ""),
        program_id,
        external_id,
        *params,
    )
    return None if row is None else dict(row)
