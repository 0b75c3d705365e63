"""Webhook endpoints subscribed to every event say so: `{*}` instead of the empty list, which an
endpoint can no longer be given (it would subscribe to nothing)."""

from sql_migration import sql_migration

ID = "2026-12-01T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Every event is '*'"

FORWARDS = ("UPDATE webhook_endpoint SET event_types = '{*}' WHERE cardinality(event_types) = 0",)
BACKWARDS = ("UPDATE webhook_endpoint SET event_types = '{}' WHERE event_types = '{*}'",)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
