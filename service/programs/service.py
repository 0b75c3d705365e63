"""Programs (tenants) and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from service.core import auth
from service.core.db import Connection
from service.core.errors import InvalidInput, NotFound
from service.core.money import is_currency
from service.outbox.service import Event, emit
from service.programs import repository
from service.programs.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    CodeSettings,
    ExpiryChangeOut,
    PointValue,
    ProgramOut,
    ProgramPatch,
    ProgramUpdated,
)

MAX_EARN_RATE = Decimal(1000)
MAX_EARN_RATE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class Program:
    """The settings the other features read."""

    id: UUID
    base_currency: str
    earn_rates: dict[str, Decimal]
    pending_days: int
    points_expire_after_days: int | None
    timezone: str
    rules_revision: int = 0
    event_types: tuple[str, ...] = ()
    point_value_amount: int = 1
    point_value_points: int = 1
    tiers_revision: int = 0
    code_prefix: str | None = None
    cancel_redemption_on_full_refund: bool = True
    code_expiry_returns_points: bool = False
    name: str = ""
    gift_key: str = ""  # the surprise gifts' dice key (shown to admins; see gifts.domain)
    gift_cooldown_days: int = 90
    gifts_revision: int = 0
    alert_email: str | None = None  # where alarms go (a low score): staff, not customers

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches its instances: cheap to ask again

    def earn_rate(self, currency: str) -> Decimal | None:
        return self.earn_rates.get(currency)


def _program(row: dict[str, Any]) -> Program:
    return Program(
        row["id"],
        row["base_currency"],
        {code: Decimal(rate) for code, rate in row["earn_rates"].items()},
        row["pending_days"],
        row["points_expire_after_days"],
        row["timezone"],
        row["rules_revision"],
        tuple(row["event_types"]),
        row["point_value_amount"],
        row["point_value_points"],
        row["tiers_revision"],
        row["code_prefix"],
        row["cancel_redemption_on_full_refund"],
        row["code_expiry_returns_points"],
        row["name"],
        row["gift_key"],
        row["gift_cooldown_days"],
        row["gifts_revision"],
        row["alert_email"],
    )


def _out(row: dict[str, Any]) -> ProgramOut:
    return ProgramOut(
        id=row["id"],
        name=row["name"],
        base_currency=row["base_currency"],
        earn_rates={code: Decimal(rate) for code, rate in row["earn_rates"].items()},
        pending_days=row["pending_days"],
        points_expire_after_days=row["points_expire_after_days"],
        point_value=PointValue(
            amount=row["point_value_amount"], points=row["point_value_points"], currency=row["base_currency"]
        ),
        timezone=row["timezone"],
        event_types=list(row["event_types"]),
        codes=CodeSettings(
            prefix=row["code_prefix"],
            cancel_on_full_refund=row["cancel_redemption_on_full_refund"],
            expiry_returns_points=row["code_expiry_returns_points"],
        ),
        gift_cooldown_days=row["gift_cooldown_days"],
        alert_email=row["alert_email"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _check_timezone(name: str, field: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"{name!r} is not an IANA time zone", field=field) from exc


async def create_program(
    conn: Connection, name: str, currency: str, now: datetime, timezone: str = "UTC"
) -> tuple[ProgramOut, str]:
    """A new program with its first admin key; returns the key's plaintext (shown once)."""
    if not name.strip():
        raise InvalidInput("a program needs a name", field="name")
    if not is_currency(currency):
        raise InvalidInput(f"{currency!r} is not an ISO 4217 currency", field="currency")
    _check_timezone(timezone, "timezone")
    row = await repository.insert_program(conn, uuid4(), name.strip(), currency, timezone, now)
    plaintext, prefix, key_hash = auth.new_key()
    await repository.insert_key(conn, row["id"], "initial admin key", prefix, key_hash, "admin", now)
    await emit(
        conn, row["id"], [Event("program.created", {"program": str(row["id"]), "name": row["name"]})], now
    )
    return _out(row), plaintext


async def load(conn: Connection, program_id: UUID, *, crediting: bool = False) -> Program:
    """The program's settings. `crediting`: the transaction credits points by them (an order, an event, an
    adjustment), so a change of the expiry period waits for it, and it for the change: no lot is credited
    by the old period after the change has given the held lots their new dates."""
    if crediting:
        await repository.share_settings(conn, program_id)
    row = await repository.get_program(conn, program_id)
    if row is None:
        raise NotFound("program not found")
    return _program(row)


async def get(conn: Connection, program_id: UUID) -> ProgramOut:
    row = await repository.get_program(conn, program_id)
    if row is None:
        raise NotFound("program not found")
    return _out(row)


class RescheduleExpiry(Protocol):
    """What the owner of the points lots (the ledger, which depends on programs, so it is handed in by
    the caller) does when the expiry period changes from `before` to `after` days: None if nothing."""

    async def __call__(
        self,
        conn: Connection,
        program_id: UUID,
        before: int | None,
        after: int | None,
        now: datetime,
        actor: str,
    ) -> ExpiryChangeOut | None: ...


async def update(
    conn: Connection,
    program_id: UUID,
    patch: ProgramPatch,
    now: datetime,
    *,
    reschedule_expiry: RescheduleExpiry,
    actor: str,
) -> ProgramUpdated:
    """Change the settings; a new expiry period also applies to the points customers hold (the answer's
    `expiry_change`), in this transaction."""
    await repository.own_settings(conn, program_id)  # orders in flight finish first (see load)
    row = await repository.get_program(conn, program_id, lock=True)
    if row is None:
        raise NotFound("program not found")
    values = dict(row)
    changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
    if "name" in changes:
        values["name"] = changes["name"].strip()
        if not values["name"]:
            raise InvalidInput("a program needs a name", field="name")
    if "earn_rates" in changes:
        for code in changes["earn_rates"]:
            if not is_currency(code):
                raise InvalidInput(f"{code!r} is not an ISO 4217 currency", field=f"earn_rates.{code}")
            rate = changes["earn_rates"][code]
            if not rate.is_finite() or not Decimal(0) <= rate <= MAX_EARN_RATE:
                raise InvalidInput(
                    f"an earn rate is 0 to {MAX_EARN_RATE} points per major unit", field=f"earn_rates.{code}"
                )
            if -rate.as_tuple().exponent > MAX_EARN_RATE_DECIMALS:  # type: ignore[operator]
                raise InvalidInput(
                    f"an earn rate has at most {MAX_EARN_RATE_DECIMALS} decimal places",
                    field=f"earn_rates.{code}",
                )
        values["earn_rates"] = {code: str(rate) for code, rate in changes["earn_rates"].items()}
    if "event_types" in changes:
        values["event_types"] = sorted(set(changes["event_types"]))
    for key in ("pending_days", "points_expire_after_days", "gift_cooldown_days", "alert_email"):
        if key in changes:
            values[key] = changes[key]
    if "point_value" in changes:
        point_value: PointValue = patch.point_value  # type: ignore[assignment]
        if point_value.currency is not msgspec.UNSET and point_value.currency != row["base_currency"]:
            raise InvalidInput(
                f"the point value is in the base currency {row['base_currency']}",
                field="point_value.currency",
            )
        values["point_value_amount"] = point_value.amount
        values["point_value_points"] = point_value.points
    if "codes" in changes:
        codes: CodeSettings = patch.codes  # type: ignore[assignment]
        values["code_prefix"] = codes.prefix
        values["cancel_redemption_on_full_refund"] = codes.cancel_on_full_refund
        values["code_expiry_returns_points"] = codes.expiry_returns_points
    if "timezone" in changes:
        _check_timezone(changes["timezone"], "timezone")
        values["timezone"] = changes["timezone"]
    updated = await repository.update_program(conn, program_id, values, now)
    expiry_change = await reschedule_expiry(
        conn, program_id, row["points_expire_after_days"], values["points_expire_after_days"], now, actor
    )
    settings = _out(updated)
    event: dict[str, Any] = {"changed": sorted(changes), "program": msgspec.to_builtins(settings)}
    if expiry_change is not None:
        event["expiry_change"] = msgspec.to_builtins(expiry_change)
    await emit(conn, program_id, [Event("program.updated", event)], now)
    return ProgramUpdated(**msgspec.structs.asdict(settings), expiry_change=expiry_change)


async def bump_rules_revision(conn: Connection, program_id: UUID, *, only_from: int | None = None) -> None:
    await repository.bump_rules_revision(conn, program_id, only_from=only_from)


async def bump_tiers_revision(conn: Connection, program_id: UUID) -> None:
    await repository.bump_tiers_revision(conn, program_id)


async def bump_gifts_revision(conn: Connection, program_id: UUID) -> None:
    await repository.bump_gifts_revision(conn, program_id)


async def create_key(
    conn: Connection, program_id: UUID, name: str, scope: auth.Scope, now: datetime
) -> ApiKeyCreated:
    plaintext, prefix, key_hash = auth.new_key()
    row = await repository.insert_key(conn, program_id, name, prefix, key_hash, scope, now)
    await emit(conn, program_id, [Event("api_key.created", {"key_id": str(row["id"]), "scope": scope})], now)
    return ApiKeyCreated(**row, api_key=plaintext)


async def list_keys(conn: Connection, program_id: UUID) -> list[ApiKeyOut]:
    return [ApiKeyOut(**row) for row in await repository.list_keys(conn, program_id)]


async def revoke_key(conn: Connection, program_id: UUID, key_id: UUID, now: datetime) -> ApiKeyOut:
    row = await repository.revoke_key(conn, program_id, key_id, now)
    if row is None:
        raise NotFound("API key not found", field="path:key_id")
    await emit(conn, program_id, [Event("api_key.revoked", {"key_id": str(key_id)})], now)
    return ApiKeyOut(**row)


async def is_empty(conn: Connection) -> bool:
    return await repository.count_programs(conn) == 0
