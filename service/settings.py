"""Settings: one frozen dataclass read from ENCORE_* environment variables (ENCORE_<FIELD NAME>); each
default is written once, on its field."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

import structlog

if TYPE_CHECKING:
    from service.core.secrets import SecretBox

log = structlog.get_logger("encore.settings")
_warned_development_key: set[Path] = set()  # one warning per process, however often the box is made


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_text(kind: Any, raw: str, default: Any) -> Any:
    """An environment variable's text as a value of its field's type (`default` for an unclear switch)."""
    if kind is bool:
        word = raw.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else default
    if kind in (int, float, str, Path):
        return kind(raw)
    if kind == int | None:
        return int(raw)
    if kind == str | None:
        return raw
    if kind == tuple[str, ...]:
        return _keys(raw)
    raise TypeError(f"no reader for settings of type {kind}")


def _keys(raw: str) -> tuple[str, ...]:
    """A list of keys as people write one: separated by commas and/or whitespace."""
    return tuple(key for key in re.split(r"[\s,]+", raw) if key)


def _made_once(path: Path, make: Callable[[], str]) -> str:
    """A development key kept in `path` (0600), written by the first process that needs it: the API and
    the worker started together read the same one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with (
            contextlib.suppress(FileExistsError),
            open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file,
        ):
            file.write(make())
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class Settings:
    # None: an embedded PostgreSQL under data_dir/pg is started by the CLI.
    database_url: str | None = None
    data_dir: Path = Path(".data")
    log_format: str = "console"  # console | json
    log_level: str = "INFO"
    max_body_bytes: int = 1_048_576
    # Request limits (service.core.limits): headers in all and in one header, 431 beyond; requests a
    # minute per API key and, on the pages without a key, per client address and page; 0 turns one off.
    max_header_bytes: int = 16_384
    max_header_field_bytes: int = 8_192
    rate_limit_per_key: int = 120_000  # 2,000/s: above what one process serves one key (see README)
    rate_limit_per_address: int = 120
    db_pool_min: int = 2
    db_pool_max: int = 20
    # Webhooks: https to public addresses only, unless local http (127.0.0.1, localhost) is allowed.
    webhooks_allow_local_http: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 64  # requests in flight per worker
    webhook_endpoint_concurrency: int = 16  # per endpoint per worker: a slow one can't take every slot
    # Worker: a claimed row is someone else's again when its lease ends (a killed worker's rows).
    worker_lease_seconds: float = 60.0
    worker_metrics_port: int | None = None  # Prometheus metrics of the worker process
    worker_run_budget_seconds: float = 10.0  # a delivery run stops claiming after this (then runs again)
    dispatch_interval_seconds: float = 1.0
    deliver_interval_seconds: float = 1.0
    mature_interval_seconds: float = 60.0
    expire_interval_seconds: float = 300.0
    expiry_notice_interval_seconds: float = 900.0
    housekeeping_interval_seconds: float = 3600.0
    # Daily; idempotent, so a restart's early run is harmless.
    tier_reevaluation_interval_seconds: float = 86400.0
    # Messaging: SMTP (smtp:// STARTTLS when offered, smtps:// TLS, user:password@ for AUTH); unset: .eml
    # files under data_dir/mail. Links in messages start with public_url; secret_key signs them (unset:
    # a random key kept in data_dir/secret.key, shared by the API and the worker).
    smtp_url: str | None = None
    smtp_timeout_seconds: float = 30.0
    smtp_connections: int = 4  # SMTP sessions per worker
    smtp_validate_certs: bool = True
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    message_send_interval_seconds: float = 5.0
    message_batch_size: int = 500
    journeys_interval_seconds: float = 30.0  # events into journeys, due steps into messages
    outreach_interval_seconds: float = 3600.0  # inactivity, birthdays, anniversaries, repeat customers
    gifts_interval_seconds: float = 3600.0  # surprise gifts of birthdays and first-order anniversaries
    idempotency_retention_days: int = 7
    outbox_retention_days: int = 30
    job_run_retention_hours: int = 48
    # Secrets at rest (webhook signing secrets): ENCORE_ENCRYPTION_KEYS, Fernet keys separated by commas or
    # spaces; the first encrypts, all decrypt (`encore secrets rotate`). Unset: a development key made once
    # in data_dir/encryption.key, shared by the API and the worker, with a warning.
    encryption_keys: tuple[str, ...] = ()
    # Stripe: the API's base address (unset: Stripe's own; tests and the README's walk-through point it
    # at a local stand-in), and how often the worker processes received events and syncs codes.
    stripe_api_base: str | None = None
    stripe_interval_seconds: float = 1.0
    stripe_batch_size: int = 100
    stripe_concurrency: int = 16  # events (or codes) a worker has at Stripe at once, outside transactions
    # A claimed event or code is another worker's again after this: longer than the worker's other leases,
    # as a run may wait on Stripe (20 s a call, the SDK's own retries) for several rounds of its batch.
    stripe_lease_seconds: float = 300.0
    # Stripe's webhooks per program a minute (its own limit: Stripe sends bursts from a few addresses).
    rate_limit_per_stripe_program: int = 60_000

    @classmethod
    def from_env(cls) -> Settings:
        """Each field from ENCORE_<FIELD NAME>; unset or empty, the field's default above (the only place
        defaults are written)."""
        types = get_type_hints(cls)
        values: dict[str, Any] = {}
        for each in fields(cls):
            raw = os.environ.get(f"ENCORE_{each.name.upper()}", "")
            if raw != "":
                values[each.name] = _from_text(types[each.name], raw, each.default)
        if "public_url" in values:
            values["public_url"] = values["public_url"].rstrip("/")  # links are made by appending "/..."
        return cls(**values)

    def signing_key(self) -> bytes:
        """The key that signs unsubscribe links: ENCORE_SECRET_KEY, or one made once under data_dir."""
        if self.secret_key:
            return self.secret_key.encode()
        import secrets

        return _made_once(self.data_dir / "secret.key", lambda: secrets.token_urlsafe(32)).encode()

    def secret_box(self) -> SecretBox:
        """What seals secrets at rest: ENCORE_ENCRYPTION_KEYS, or a development key made once under
        data_dir (a warning says so; the key itself is never logged). EncryptionKeyError: a bad key."""
        from service.core.secrets import SecretBox, new_key

        if self.encryption_keys:
            return SecretBox(self.encryption_keys)
        path = self.data_dir / "encryption.key"
        box = SecretBox((_made_once(path, new_key),), source=str(path))
        if path not in _warned_development_key:
            _warned_development_key.add(path)
            log.warning(
                "development_encryption_key",
                path=str(path),
                detail="ENCORE_ENCRYPTION_KEYS is unset: secrets are encrypted with a key kept in this file; "
                "without it they cannot be read (`encore secrets new-key` makes a key for production)",
            )
        return box

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)
