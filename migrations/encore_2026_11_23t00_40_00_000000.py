"""Entries by order: a refund looks up how much of its order's points expired (and was forgiven)."""

from sql_migration import sql_migration

ID = "2026-11-23T00:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "points_entry by order"

FORWARDS = ("CREATE INDEX IF NOT EXISTS points_entry_order ON points_entry (order_id) WHERE order_id IS NOT NULL",)
BACKWARDS = ("DROP INDEX IF EXISTS points_entry_order",)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
