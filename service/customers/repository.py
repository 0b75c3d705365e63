from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.core.db import Connection

# The customer's own columns; what other features know of a customer (points, tier, order stats) they
# add as LATERAL fragments on `c.id`.
CUSTOMER_FIELDS = """id, program_id, external_id, email, name, locale, birthday, timezone, marketing_consent,
    transactional_consent, stripe_customer_id, created_at, updated_at"""
PROFILE_COLUMNS = (
    "email",
    "name",
    "locale",
    "birthday",
    "timezone",
    "marketing_consent",
    "transactional_consent",
    "stripe_customer_id",
)


class StripeCustomerTaken(Exception):
    """Another customer of the program holds this Stripe customer id."""


async def upsert(
    conn: Connection,
    program_id: UUID,
    external_id: str,
    profile: dict[str, Any],
    now: datetime,
    *laterals: str,
) -> tuple[dict[str, Any], bool]:
    """Insert the customer or update the given profile fields (the row locked until commit).

    Returns the row (plus the columns of LATERAL fragments on `c.id`) and whether it was created. The
    customer's balance is the ledger's: it makes the row with the first change of points.
    """
    columns = [c for c in PROFILE_COLUMNS if c in profile]
    values = [profile[c] for c in columns]
    insert_columns = ", ".join(["program_id", "external_id", *columns, "created_at", "updated_at"])
    placeholders = ", ".join(f"${i}" for i in range(3, 3 + len(columns)))
    now_param = f"${3 + len(columns)}"
    updates = ", ".join([*(f"{c} = EXCLUDED.{c}" for c in columns), "updated_at = EXCLUDED.updated_at"])
    if not columns:
        # Nothing to change: still take the row (and a lock on it) so RETURNING gives it back. A column
        # outside every unique key: setting one (external_id) would lock the row FOR UPDATE, which blocks
        # the KEY SHARE a ledger insert's foreign key check takes — an order waiting for the ledger lock
        # while an adjustment holding it waits for the customer row is a deadlock.
        updates = "updated_at = customer.updated_at"
    try:
        row = await conn.fetchrow(
            f"""
            WITH c AS (
                INSERT INTO customer (id, {insert_columns})
                VALUES (gen_random_uuid(), $1, $2{", " + placeholders if columns else ""}, {now_param}, {now_param})
                ON CONFLICT (program_id, external_id) DO UPDATE SET {updates}
                RETURNING {CUSTOMER_FIELDS}, (xmax = 0) AS created
            )
            SELECT * FROM c {" ".join(laterals)}
            """,
            program_id,
            external_id,
            *values,
            now,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "customer_stripe":
            raise StripeCustomerTaken from exc
        raise
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


async def withdraw_consent(conn: Connection, customer_id: UUID, scope: str, now: datetime) -> None:
    """Marketing consent off; with scope `all`, transactional consent too (the time of it kept)."""
    await conn.execute(
        """
        UPDATE customer SET marketing_consent = false,
               transactional_consent = transactional_consent AND $2 <> 'all',
               unsubscribed_at = CASE WHEN $2 = 'all' THEN $3 ELSE unsubscribed_at END, updated_at = $3
        WHERE id = $1
        """,
        customer_id,
        scope,
        now,
    )


async def find_by_stripe_customer(
    conn: Connection, program_id: UUID, stripe_customer_id: str
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {CUSTOMER_FIELDS} FROM customer WHERE program_id = $1 AND stripe_customer_id = $2",
        program_id,
        stripe_customer_id,
    )
    return None if row is None else dict(row)


async def find_by_email(conn: Connection, program_id: UUID, email: str) -> dict[str, Any] | None:
    """The customer with this e-mail address, whatever its case (the oldest, should several share it)."""
    row = await conn.fetchrow(
        f"""SELECT {CUSTOMER_FIELDS} FROM customer WHERE program_id = $1 AND lower(email) = lower($2)
            ORDER BY created_at, id LIMIT 1""",
        program_id,
        email,
    )
    return None if row is None else dict(row)


async def with_birthdays(conn: Connection, program_id: UUID) -> list[Any]:
    """The program's customers who gave a birthday: id, birthday, created_at (for the gift simulation)."""
    return await conn.fetch(
        "SELECT id, birthday, created_at FROM customer WHERE program_id = $1 AND birthday IS NOT NULL",
        program_id,
    )
