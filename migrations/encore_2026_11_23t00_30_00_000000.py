"""Sweep indexes keyed by (time, id): the sweeps walk them as a keyset, each chunk starting where the
last one ended, instead of rescanning the dead index entries that earlier chunks left behind."""

from sql_migration import sql_migration

ID = "2026-11-23T00:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "keyset indexes for the ledger sweeps"

FORWARDS = (
    "DROP INDEX IF EXISTS points_lot_maturing",
    "CREATE INDEX points_lot_maturing ON points_lot (available_at, id) WHERE state = 'pending'",
    "DROP INDEX IF EXISTS points_lot_expiring",
    "CREATE INDEX points_lot_expiring ON points_lot (expires_at, id) WHERE remaining > 0 AND expires_at IS NOT NULL",
)
BACKWARDS = (
    "DROP INDEX IF EXISTS points_lot_maturing",
    "CREATE INDEX points_lot_maturing ON points_lot (available_at) WHERE state = 'pending'",
    "DROP INDEX IF EXISTS points_lot_expiring",
    "CREATE INDEX points_lot_expiring ON points_lot (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL",
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
