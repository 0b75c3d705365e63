"""Settings: one frozen dataclass read from ENCORE_* environment variables."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path


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


@dataclass(frozen=True, slots=True)
class Settings:
    # None: an embedded PostgreSQL under data_dir/pg is started by the CLI.
    database_url: str | None = None
    data_dir: Path = Path(".data")
    log_format: str = "console"  # console | json
    log_level: str = "INFO"
    max_body_bytes: int = 1_048_576
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

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("ENCORE_DATABASE_URL") or None,
            data_dir=Path(os.environ.get("ENCORE_DATA_DIR", ".data")),
            log_format=os.environ.get("ENCORE_LOG_FORMAT", "console"),
            log_level=os.environ.get("ENCORE_LOG_LEVEL", "INFO"),
            max_body_bytes=_int("ENCORE_MAX_BODY_BYTES", 1_048_576),
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
        )

    def signing_key(self) -> bytes:
        """The key that signs unsubscribe links: ENCORE_SECRET_KEY, or one made once under data_dir."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            with (
                contextlib.suppress(FileExistsError),
                open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file,
            ):
                file.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)
