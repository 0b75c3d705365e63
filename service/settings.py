"""Settings: one frozen dataclass read from ENCORE_* environment variables."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from service.core.secrets import SecretBox

log = structlog.get_logger("encore.settings")
_warned_development_key: set[Path] = set()  # one warning per process, however often the box is made


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def _bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _optional_int(name: str) -> int | None:
    raw = os.environ.get(name)
    return None if raw in (None, "") else int(raw)


def _keys(name: str) -> tuple[str, ...]:
    """A list of keys as people write one: separated by commas and/or whitespace."""
    return tuple(key for key in re.split(r"[\s,]+", os.environ.get(name, "")) if key)


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
    tier_reevaluation_interval_seconds: float = (
        86400.0  # daily; idempotent, so a restart's early run is harmless
    )
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
    idempotency_retention_days: int = 7
    outbox_retention_days: int = 30
    job_run_retention_hours: int = 48
    # Secrets at rest (webhook signing secrets): ENCORE_ENCRYPTION_KEYS, Fernet keys separated by commas or
    # spaces; the first encrypts, all decrypt (`encore secrets rotate`). Unset: a development key made once
    # in data_dir/encryption.key, shared by the API and the worker, with a warning.
    encryption_keys: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("ENCORE_DATABASE_URL") or None,
            data_dir=Path(os.environ.get("ENCORE_DATA_DIR", ".data")),
            log_format=os.environ.get("ENCORE_LOG_FORMAT", "console"),
            log_level=os.environ.get("ENCORE_LOG_LEVEL", "INFO"),
            max_body_bytes=_int("ENCORE_MAX_BODY_BYTES", 1_048_576),
            max_header_bytes=_int("ENCORE_MAX_HEADER_BYTES", 16_384),
            max_header_field_bytes=_int("ENCORE_MAX_HEADER_FIELD_BYTES", 8_192),
            rate_limit_per_key=_int("ENCORE_RATE_LIMIT_PER_KEY", 120_000),
            rate_limit_per_address=_int("ENCORE_RATE_LIMIT_PER_ADDRESS", 120),
            db_pool_min=_int("ENCORE_DB_POOL_MIN", 2),
            db_pool_max=_int("ENCORE_DB_POOL_MAX", 20),
            webhooks_allow_local_http=_bool("ENCORE_WEBHOOKS_ALLOW_LOCAL_HTTP"),
            webhook_timeout_seconds=_float("ENCORE_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_concurrency=_int("ENCORE_WEBHOOK_CONCURRENCY", 64),
            webhook_endpoint_concurrency=_int("ENCORE_WEBHOOK_ENDPOINT_CONCURRENCY", 16),
            worker_lease_seconds=_float("ENCORE_WORKER_LEASE_SECONDS", 60.0),
            worker_metrics_port=_optional_int("ENCORE_WORKER_METRICS_PORT"),
            worker_run_budget_seconds=_float("ENCORE_WORKER_RUN_BUDGET_SECONDS", 10.0),
            dispatch_interval_seconds=_float("ENCORE_DISPATCH_INTERVAL_SECONDS", 1.0),
            deliver_interval_seconds=_float("ENCORE_DELIVER_INTERVAL_SECONDS", 1.0),
            mature_interval_seconds=_float("ENCORE_MATURE_INTERVAL_SECONDS", 60.0),
            expire_interval_seconds=_float("ENCORE_EXPIRE_INTERVAL_SECONDS", 300.0),
            expiry_notice_interval_seconds=_float("ENCORE_EXPIRY_NOTICE_INTERVAL_SECONDS", 900.0),
            housekeeping_interval_seconds=_float("ENCORE_HOUSEKEEPING_INTERVAL_SECONDS", 3600.0),
            tier_reevaluation_interval_seconds=_float("ENCORE_TIER_REEVALUATION_INTERVAL_SECONDS", 86400.0),
            smtp_url=os.environ.get("ENCORE_SMTP_URL") or None,
            smtp_timeout_seconds=_float("ENCORE_SMTP_TIMEOUT_SECONDS", 30.0),
            smtp_connections=_int("ENCORE_SMTP_CONNECTIONS", 4),
            smtp_validate_certs=os.environ.get("ENCORE_SMTP_VALIDATE_CERTS", "1").strip().lower()
            not in ("0", "false", "no", "off"),
            public_url=(os.environ.get("ENCORE_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            secret_key=os.environ.get("ENCORE_SECRET_KEY") or None,
            message_send_interval_seconds=_float("ENCORE_MESSAGE_SEND_INTERVAL_SECONDS", 5.0),
            message_batch_size=_int("ENCORE_MESSAGE_BATCH_SIZE", 500),
            journeys_interval_seconds=_float("ENCORE_JOURNEYS_INTERVAL_SECONDS", 30.0),
            outreach_interval_seconds=_float("ENCORE_OUTREACH_INTERVAL_SECONDS", 3600.0),
            idempotency_retention_days=_int("ENCORE_IDEMPOTENCY_RETENTION_DAYS", 7),
            outbox_retention_days=_int("ENCORE_OUTBOX_RETENTION_DAYS", 30),
            job_run_retention_hours=_int("ENCORE_JOB_RUN_RETENTION_HOURS", 48),
            encryption_keys=_keys("ENCORE_ENCRYPTION_KEYS"),
        )

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
