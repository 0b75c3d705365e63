"""Customers: upsert by the shop's own id, look-up, and what the ledger needs to know of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.locales import canonical as canonical_locale
from service.customers import repository
from service.customers.schemas import CustomerOut, CustomerProfile
from service.outbox.service import Event

EARLIEST_BIRTHDAY = date(1900, 1, 1)
# UTC+14 (Kiribati) starts each date first: a birthday after its date has begun nowhere yet.
_FIRST_ZONE = timezone(timedelta(hours=14))


def profile_changes(profile: CustomerProfile | None, now: datetime, field_prefix: str = "") -> dict[str, Any]:
    """The fields given, checked: an IANA time zone, a locale CLDR knows (kept in BCP 47 form, `pt_BR`
    -> `pt-BR`), a birthday from 1900-01-01 to today (by `now`, the request's clock). 422 naming the
    field, with `field_prefix` where the profile is embedded (`customer.`)."""
    if profile is None:
        return {}
    return checked_profile(given_fields(profile), now, field_prefix)


def given_fields(profile: CustomerProfile) -> dict[str, Any]:
    """The profile fields a request body gave (null included: it clears the field)."""
    return {k: v for k, v in msgspec.structs.asdict(profile).items() if v is not msgspec.UNSET}


def checked_profile(given: Mapping[str, Any], now: datetime, field_prefix: str = "") -> dict[str, Any]:
    """`profile_changes` for fields given as plain values (an import row, a Stripe customer)."""
    changes = dict(given)
    unknown = sorted(set(changes) - set(CustomerProfile.__struct_fields__))
    if unknown:
        raise InvalidInput(
            f"{unknown[0]!r} is not a customer profile field", field=f"{field_prefix}{unknown[0]}"
        )
    zone = changes.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"{zone!r} is not an IANA time zone", field=f"{field_prefix}timezone") from exc
    locale = changes.get("locale")
    if locale is not None:
        tag = canonical_locale(locale)
        if tag is None:
            raise InvalidInput(
                f"{locale!r} is not a locale CLDR knows (e.g. en, en-GB, pt-BR, zh-Hant-TW)",
                field=f"{field_prefix}locale",
            )
        changes["locale"] = tag
    birthday = changes.get("birthday")
    if birthday is not None:
        if birthday < EARLIEST_BIRTHDAY:
            raise InvalidInput(
                f"birthday {birthday} is before {EARLIEST_BIRTHDAY}", field=f"{field_prefix}birthday"
            )
        if birthday > now.astimezone(_FIRST_ZONE).date():
            raise InvalidInput(f"birthday {birthday} is in the future", field=f"{field_prefix}birthday")
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
    try:
        row, created = await repository.upsert(conn, program_id, external_id, changes, now, *laterals)
    except repository.StripeCustomerTaken:
        raise Conflict(
            f"another customer of this program has stripe_customer_id {changes.get('stripe_customer_id')!r}",
            field="stripe_customer_id",
        ) from None
    events: list[Event] = []
    if created or changes:
        topic = "customer.created" if created else "customer.updated"
        events.append(Event(topic, {"customer": external_id, "changed": sorted(changes)}))
    return row, created, events


async def get(
    conn: Connection,
    program_id: UUID,
    external_id: str,
    *laterals: str,
    lock: bool = False,
    params: Sequence[Any] = (),
    field: str = "path:external_id",
) -> dict[str, Any]:
    """The customer (404 naming `field`, where the id came from, if unknown), with the columns any
    LATERAL fragments add (they may use `params` as $3, $4, ...); with `lock`, its row is held until
    commit."""
    row = await repository.get(conn, program_id, external_id, *laterals, lock=lock, params=params)
    if row is None:
        raise NotFound(f"no customer {external_id!r} in this program", field=field)
    return row


async def find(conn: Connection, program_id: UUID, external_id: str, *laterals: str) -> dict[str, Any] | None:
    """The customer, or None if the program has no such customer yet."""
    return await repository.get(conn, program_id, external_id, *laterals)


def check_external_id(external_id: str) -> None:
    if not 1 <= len(external_id) <= 128 or external_id != external_id.strip():
        raise InvalidInput(
            "a customer id has 1 to 128 characters, no surrounding spaces", field="path:external_id"
        )


async def withdraw_consent(conn: Connection, customer_id: UUID, scope: str, now: datetime) -> None:
    """An unsubscribe: `marketing` stops marketing messages, `all` every message."""
    await repository.withdraw_consent(conn, customer_id, scope, now)


async def find_for_payment(
    conn: Connection, program_id: UUID, *, stripe_customer_id: str | None, email: str | None
) -> dict[str, Any] | None:
    """The customer a payment belongs to when the shop did not say: the one holding this Stripe customer
    id, else the one with this e-mail address (case-insensitive); None if neither."""
    if stripe_customer_id:
        found = await repository.find_by_stripe_customer(conn, program_id, stripe_customer_id)
        if found is not None:
            return found
    if email:
        return await repository.find_by_email(conn, program_id, email)
    return None


def birthdays_on(program_id: str, local_today: str) -> str:
    """SELECT of the program's customers whose birthday is `local_today` (SQL expressions; a date in the
    program's zone), as `customer_id`: a 29 February birthday is kept on the 28th in a year without one."""
    return f"""
        SELECT c.id AS customer_id FROM customer c
        WHERE c.program_id = {program_id} AND c.birthday IS NOT NULL
          AND (to_char(c.birthday, 'MM-DD') = to_char({local_today}, 'MM-DD')
               OR (to_char(c.birthday, 'MM-DD') = '02-29' AND to_char({local_today}, 'MM-DD') = '02-28'
                   AND extract(month FROM {local_today} + 1) = 3))
    """


async def with_birthdays(conn: Connection, program_id: UUID) -> list[Any]:
    """The program's customers who gave a birthday: id, birthday, created_at."""
    return await repository.with_birthdays(conn, program_id)
