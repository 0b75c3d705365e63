"""Opaque cursors for newest-first lists: keyed by a growing integer id, or by (time, uuid)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID

from service.core.errors import InvalidInput
from service.core.strict_input import INT64_MAX, TIME_MAX, TIME_MIN


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id" or not value.isascii() or not value.isdigit() or not 1 <= int(value) <= INT64_MAX:
            raise ValueError(raw)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the cursor is not one this API gave out", field="query:cursor") from exc


def encode_position(at: datetime, row_id: UUID) -> str:
    """A cursor for lists ordered by (time, uuid), newest first."""
    return base64.urlsafe_b64encode(f"at:{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_position(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        at, _, row_id = value.partition("|")
        parsed = datetime.fromisoformat(at)
        if kind != "at" or parsed.tzinfo is None:
            raise ValueError(raw)
        parsed = parsed.astimezone(UTC)  # year 1 with +14:00 overflows here, not in PostgreSQL
        if not TIME_MIN <= parsed <= TIME_MAX:
            raise ValueError(raw)
        return parsed, UUID(row_id)
    except (ValueError, OverflowError, UnicodeDecodeError) as exc:
        raise InvalidInput("the cursor is not one this API gave out", field="query:cursor") from exc
