"""Queries of the messaging feature: settings, template overrides, messages and their batch facts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection, json_value
from service.ledger import service as ledger
from service.messaging.schemas import MessagingSettings
from service.tiers.published import TIER_NAME_LATERAL


async def settings_of(conn: Connection, program_ids: Iterable[UUID]) -> dict[UUID, MessagingSettings]:
    ids = list(set(program_ids))
    rows = await conn.fetch(
        "SELECT program_id, settings FROM messaging_settings WHERE program_id = ANY($1::uuid[])", ids
    )
    found = {r["program_id"]: msgspec.convert(json_value(r["settings"]), MessagingSettings) for r in rows}
    return {pid: found.get(pid) or MessagingSettings() for pid in ids}


async def save_settings(
    conn: Connection, program_id: UUID, settings: MessagingSettings, now: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO messaging_settings (program_id, settings, updated_at) VALUES ($1, $2::jsonb, $3)
        ON CONFLICT (program_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at
        """,
        program_id,
        msgspec.json.encode(settings).decode(),
        now,
    )


# --- templates ---

TEMPLATE_COLUMNS = (
    "id, program_id, message_type, locale, version, subject, text_body, html_body, created_at, updated_at"
)


async def template(
    conn: Connection, program_id: UUID, template_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {TEMPLATE_COLUMNS} FROM message_template WHERE id = $1 AND program_id = $2 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        template_id,
        program_id,
    )
    return dict(row) if row else None


async def templates(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {TEMPLATE_COLUMNS} FROM message_template WHERE program_id = $1 AND deleted_at IS NULL "
        "ORDER BY message_type, locale",
        program_id,
    )
    return [dict(r) for r in rows]


async def overrides(
    conn: Connection, program_ids: Iterable[UUID]
) -> dict[tuple[UUID, str, str], dict[str, Any]]:
    """The programs' current templates by (program, type, locale)."""
    rows = await conn.fetch(
        f"SELECT {TEMPLATE_COLUMNS} FROM message_template WHERE program_id = ANY($1::uuid[]) AND deleted_at IS NULL",
        list(set(program_ids)),
    )
    return {(r["program_id"], r["message_type"], r["locale"]): dict(r) for r in rows}


async def insert_template_version(conn: Connection, row: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO message_template_version (template_id, version, subject, text_body, html_body, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        row["id"],
        row["version"],
        row["subject"],
        row["text_body"],
        row["html_body"],
        row["updated_at"],
    )


async def template_versions(conn: Connection, template_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT version, subject, text_body, html_body, created_at FROM message_template_version "
        "WHERE template_id = $1 ORDER BY version DESC",
        template_id,
    )
    return [dict(r) for r in rows]


# --- facts for a batch of messages ---


async def recipients(conn: Connection, customer_ids: list[UUID], now: datetime) -> dict[UUID, dict[str, Any]]:
    """The customers with what a message says about them at `now` (points past their date no longer
    count), and whether their address is suppressed."""
    rows = await conn.fetch(
        f"""
        SELECT c.id, c.program_id, c.external_id, c.email, c.name, c.locale, c.timezone,
               c.marketing_consent, c.transactional_consent, tier_name,
               coalesce(b.available, 0) AS points, coalesce(b.pending, 0) AS pending_points, s.reason AS suppressed,
               o.orders_count, o.first_order_at, o.last_order_at, p.name AS program_name, p.timezone AS program_timezone
        FROM customer c
        JOIN program p ON p.id = c.program_id
        {TIER_NAME_LATERAL}
        LEFT JOIN LATERAL ({ledger.points_select("c.id", "$2::timestamptz")}) b ON true
        LEFT JOIN suppression s ON s.program_id = c.program_id AND s.email = lower(c.email)
        CROSS JOIN LATERAL (
            SELECT count(*) AS orders_count, min(placed_at) AS first_order_at, max(placed_at) AS last_order_at
            FROM orders WHERE customer_id = c.id
        ) o
        WHERE c.id = ANY($1::uuid[])
        """,
        customer_ids,
        now,
    )
    return {r["id"]: dict(r) for r in rows}


async def orders(conn: Connection, order_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    if not order_ids:
        return {}
    # points_available_at: when the order's points still pending become available (null: none pending).
    rows = await conn.fetch(
        f"""
        SELECT o.id, o.external_id, o.currency, o.total_amount, o.placed_at, o.points_earned,
               ({ledger.order_pending_until_select("o.id")}) AS points_available_at
        FROM orders o WHERE o.id = ANY($1::uuid[])
        """,
        order_ids,
    )
    found: dict[UUID, dict[str, Any]] = {r["id"]: {**dict(r), "lines": []} for r in rows}
    # The lines as plain rows (building JSON per order in SQL cost more than the rest of the batch's facts).
    lines = await conn.fetch(
        "SELECT order_id, name, sku, quantity FROM order_line WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, position",
        order_ids,
    )
    for line in lines:
        found[line["order_id"]]["lines"].append(dict(line))
    return found


async def tier_definitions(
    conn: Connection, program_ids: list[UUID]
) -> dict[UUID, dict[str, dict[str, Any]]]:
    rows = await conn.fetch(
        "SELECT program_id, key, definition FROM tier WHERE program_id = ANY($1::uuid[]) AND deleted_at IS NULL",
        program_ids,
    )
    found: dict[UUID, dict[str, dict[str, Any]]] = {pid: {} for pid in program_ids}
    for r in rows:
        found[r["program_id"]][r["key"]] = json_value(r["definition"])
    return found


async def recent_marketing(
    conn: Connection, customer_ids: list[UUID], since: datetime
) -> dict[UUID, list[datetime]]:
    rows = await conn.fetch(
        """
        SELECT customer_id, array_agg(sent_at) AS sent FROM message
        WHERE customer_id = ANY($1::uuid[]) AND category = 'marketing' AND status = 'sent' AND sent_at > $2
        GROUP BY customer_id
        """,
        customer_ids,
        since,
    )
    return {r["customer_id"]: list(r["sent"]) for r in rows}


async def recent_staff(
    conn: Connection, program_ids: list[UUID], since: datetime
) -> dict[UUID, list[datetime]]:
    """When each program's messages to staff went out since `since` (their cap counts them)."""
    rows = await conn.fetch(
        """
        SELECT program_id, array_agg(sent_at) AS sent FROM message
        WHERE program_id = ANY($1::uuid[]) AND category = 'staff' AND status = 'sent' AND sent_at > $2
        GROUP BY program_id
        """,
        program_ids,
        since,
    )
    return {r["program_id"]: list(r["sent"]) for r in rows}


MESSAGE_COLUMNS = """m.id, m.program_id, m.customer_id, m.message_type, m.category, m.journey_id, m.step,
    m.context, m.status, m.reason, m.due_at, m.attempts, m.locale, m.locale_note, m.template_ref, m.to_email,
    m.subject, m.message_id, m.last_error, m.created_at, m.sent_at"""


async def message_of(conn: Connection, message_id: int) -> dict[str, Any] | None:
    """One message with its customer's external id (a signed link names only the message)."""
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS}, c.external_id FROM message m JOIN customer c ON c.id = m.customer_id WHERE m.id = $1",
        message_id,
    )
    if row is None:
        return None
    found = dict(row)
    found["context"] = json_value(found["context"])
    return found


async def claim(
    conn: Connection, now: datetime, limit: int, worker: str, lease_until: datetime
) -> list[dict[str, Any]]:
    """Due messages leased to this worker (a killed worker's lease runs out and they are due again), with
    what sending needs of them."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM message
            WHERE status IN ('queued', 'deferred') AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)
            ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
        )
        UPDATE message m SET claimed_by = $3, claimed_until = $4
        FROM due WHERE m.id = due.id
        RETURNING m.id, m.program_id, m.customer_id, m.message_type, m.category, m.context, m.due_at, m.attempts
        """,
        now,
        limit,
        worker,
        lease_until,
    )
    return [{**dict(r), "context": json_value(r["context"])} for r in rows]


async def release(conn: Connection, message_ids: list[int], worker: str) -> None:
    """Give claimed messages back (due again at once), where the lease is still ours."""
    await conn.execute(
        "UPDATE message SET claimed_by = NULL, claimed_until = NULL WHERE id = ANY($1::bigint[]) AND claimed_by = $2",
        message_ids,
        worker,
    )


async def record(conn: Connection, outcomes: list[dict[str, Any]], worker: str, now: datetime) -> int:
    """Write what became of claimed messages, only where the lease is still ours."""
    if not outcomes:
        return 0
    result = await conn.execute(
        """
        UPDATE message m SET status = o.status, reason = o.reason, due_at = coalesce(o.due_at, m.due_at),
               locale = coalesce(o.locale, m.locale), locale_note = coalesce(o.locale_note, m.locale_note),
               template_ref = coalesce(o.template_ref, m.template_ref), to_email = coalesce(o.to_email, m.to_email),
               subject = coalesce(o.subject, m.subject), message_id = coalesce(o.message_id, m.message_id),
               last_error = o.last_error, sent_at = o.sent_at, attempts = coalesce(o.attempts, m.attempts),
               claimed_by = NULL, claimed_until = NULL,
               updated_at = $3
        FROM jsonb_to_recordset($1::jsonb) AS o(id bigint, status text, reason text, due_at timestamptz,
             locale text, locale_note text, template_ref text, to_email text, subject text, message_id text,
             last_error text, sent_at timestamptz, attempts int)
        WHERE m.id = o.id AND m.claimed_by = $2
        """,
        msgspec.json.encode(outcomes).decode(),
        worker,
        now,
    )
    return int(result.split()[-1])


async def suppress_addresses(
    conn: Connection, entries: list[tuple[UUID, str, str, str | None]], now: datetime
) -> None:
    if entries:
        await conn.executemany(
            "INSERT INTO suppression (program_id, email, reason, detail, created_at) VALUES ($1, lower($2), $3, $4, $5) "
            "ON CONFLICT (program_id, email) DO NOTHING",
            [(*entry, now) for entry in entries],
        )


async def messages(
    conn: Connection,
    program_id: UUID,
    customer_id: UUID | None,
    status: str | None,
    before_id: int | None,
    limit: int,
    message_id: int | None = None,
) -> list[dict[str, Any]]:
    # Only the filters given, so each shape gets its own plan (a generic "$2 IS NULL OR ..." plan would
    # walk the program's messages by id instead of the customer's index).
    filters, args = ["m.program_id = $1"], [program_id, limit]
    for condition, value in (
        ("m.customer_id = ${}", customer_id),
        ("m.status = ${}", status),
        ("m.id < ${}", before_id),
        ("m.id = ${}", message_id),
    ):
        if value is not None:
            args.append(value)
            filters.append(condition.format(len(args)))
    rows = await conn.fetch(
        f"""
        SELECT {MESSAGE_COLUMNS}, c.external_id AS customer, j.key AS journey
        FROM message m JOIN customer c ON c.id = m.customer_id LEFT JOIN journey j ON j.id = m.journey_id
        WHERE {" AND ".join(filters)}
        ORDER BY m.id DESC LIMIT $2
        """,
        *args,
    )
    return [dict(r) for r in rows]


async def queue(conn: Connection, messages: list[dict[str, Any]], now: datetime) -> list[str]:
    """Queue messages due now (each: program_id, customer_id, message_type, category, journey_id, step,
    trigger_key, dedupe_key, context); one already queued under its dedupe key is not queued again.
    Returns the dedupe keys queued by this call."""
    rows = await conn.fetch(
        """
        INSERT INTO message (program_id, customer_id, message_type, category, journey_id, step, trigger_key, dedupe_key,
                             context, status, due_at, created_at, updated_at)
        SELECT m.program_id, m.customer_id, m.message_type, m.category, m.journey_id, m.step, m.trigger_key, m.dedupe_key,
               m.context, 'queued', $2, $2, $2
        FROM jsonb_to_recordset($1::jsonb) AS m(program_id uuid, customer_id uuid, message_type text, category text,
             journey_id uuid, step int, trigger_key text, dedupe_key text, context jsonb)
        ON CONFLICT (program_id, dedupe_key) DO NOTHING
        RETURNING dedupe_key
        """,
        msgspec.json.encode(messages).decode(),
        now,
    )
    return [row["dedupe_key"] for row in rows]
