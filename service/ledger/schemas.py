from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import Meta, Struct


class LedgerEntryOut(Struct, kw_only=True):
    id: int
    kind: str
    points: int
    debt_change: int
    reason: str
    explanation: str
    created_at: datetime
    actor: str | None = None
    order_external_id: str | None = None
    refund_external_id: str | None = None
    details: Any = None
    rule_id: UUID | None = None  # the rule version that awarded an earn entry
    rule_version: int | None = None


def entry_out(row: dict[str, Any]) -> LedgerEntryOut:
    """From a database row or its JSON form (details may come as JSON text)."""
    details = row.get("details")
    if isinstance(details, str):
        row = {**row, "details": msgspec.json.decode(details)}
    return msgspec.convert(row, LedgerEntryOut, strict=False)


class LedgerPage(Struct, kw_only=True):
    items: list[LedgerEntryOut]
    next_cursor: str | None = None


class AdjustmentIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """A signed manual change: positive = goodwill credit, negative = correction debit."""

    points: Annotated[int, Meta(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    actor: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class AdjustmentOut(Struct, kw_only=True):
    entries: list[LedgerEntryOut]
    available: int
    pending: int
    debt: int
