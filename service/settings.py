"""Settings: one frozen dataclass read from ENCORE_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


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
        )

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)
