from piccolo.columns import JSONB, UUID, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from service.programs.tables import Program


class OutboxEvent(Table, tablename="outbox"):
    """Domain events written in the business transaction; the worker delivers them later."""

    id = UUID(primary_key=True)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict)
    topic = Varchar(length=64)
    payload = JSONB()
    created_at = Timestamptz(default=TimestamptzNow())
    # The event's time, the order consumers take events in. Not a due date: an event is available from
    # its commit, whatever time it carries (a sweep run at a simulated `--now` stamps that time).
    available_at = Timestamptz(default=TimestamptzNow())
    attempts = Integer(default=0)
    claimed_by = Varchar(length=128, null=True, default=None)
    claimed_until = Timestamptz(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    last_error = Text(null=True, default=None)
