"""Job runs of the worker (schema in migration 2026-11-23T09:00)."""

from piccolo.columns import BigInt, Integer, Text, Timestamptz
from piccolo.table import Table


class JobRun(Table, tablename="job_run"):
    id = BigInt(primary_key=True)
    job = Text()
    worker = Text()
    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    rows = Integer(null=True, default=None)
    error = Text(null=True, default=None)
