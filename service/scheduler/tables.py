"""Job runs of the worker (schema in migration 2026-11-23T09:00, written as SQL; this class mirrors it, and
tests/integration/test_schema.py holds it to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import BigSerial, Integer, Text, Timestamptz
from piccolo.table import Table


class JobRun(Table, tablename="job_run"):
    id = BigSerial(primary_key=True)  # an identity column: Piccolo's nearest is a serial
    job = Text(default=None)
    worker = Text(default=None)
    started_at = Timestamptz(default=None)
    finished_at = Timestamptz(null=True, default=None)
    rows = Integer(null=True, default=None)
    error = Text(null=True, default=None)
