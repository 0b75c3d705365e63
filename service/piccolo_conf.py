"""Piccolo configuration: one engine, one app. The DSN is set at start-up by service.core.db.configure."""

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine


class EncoreEngine(PostgresEngine):
    """Piccolo's engine connects on construction to check the server version; importing this module
    must not, because the database (often the embedded one) is only chosen at start-up."""

    async def check_version(self) -> None:
        return None


DB = EncoreEngine(config={"dsn": os.environ.get("ENCORE_DATABASE_URL", "postgresql:///encore")})

APP_REGISTRY = AppRegistry(apps=["service.piccolo_app"])
