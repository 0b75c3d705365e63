"""Customers: upsert by the shop's own id, look-up, and what the ledger needs to know of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from service.core.db import Connection
from service.core.errors import InvalidInput, NotFound
from service.customers import repository
from service.customers.schemas import CustomerOut, CustomerProfile
from service.ledger.service import Customer
from service.outbox.service import Event


def profile_changes(profile: CustomerProfile | None, field_prefix: str = "") -> dict[str, Any]:
    if profile is None:
        return {}
    changes = {k: v for k, v in msgspec.structs.asdict(profile).items() if v is not msgspec.UNSET}
    zone = changes.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"{zone!r} is not an IANA time zone", field=f"{field_prefix}timezone") from exc
    if "locale" in changes and changes["locale"] is not None:
        changes["locale"] = changes["locale"].replace("_", "-")
    return changes


def to_out(row: dict[str, Any]) -> CustomerOut:
    return CustomerOut(**{k: row[k] for k in CustomerOut.__struct_fields__})


async def upsert(
    conn: Connection,
    program_id: UUID,
    external_id: str,
    changes: dict[str, Any],
    now: datetime,
    *laterals: str,
) -> tuple[dict[str, Any], bool, list[Event]]:
    row, created = await repository.upsert(conn, program_id, external_id, changes, now, *laterals)
    events: list[Event] = []
    if created or changes:
        topic = "customer.created" if created else "customer.updated"
        events.append(Event(topic, {"customer": external_id, "changed": sorted(changes)}))
    return row, created, events


async def get(
    conn: Connection, program_id: UUID, external_id: str, *laterals: str, lock: bool = False
) -> dict[str, Any]:
    """The customer (404 naming the id if unknown), with the columns any LATERAL fragments add; with
    `lock`, its row is held until commit."""
    row = await repository.get(conn, program_id, external_id, *laterals, lock=lock)
    if row is None:
        raise NotFound(f"no customer {external_id!r} in this program", field="external_id")
    return row


async def find(conn: Connection, program_id: UUID, external_id: str, *laterals: str) -> dict[str, Any] | None:
    """The customer, or None if the program has no such customer yet."""
    return await repository.get(conn, program_id, external_id, *laterals)


def ledger_customer(row: dict[str, Any]) -> Customer:
    return Customer(row["program_id"], row["id"], row["external_id"])
