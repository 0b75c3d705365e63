"""The outbox and its consumers' positions (raw-SQL migration 2026-12-02T12:00; these classes mirror it).

No import of another feature: the outbox sits below every feature that emits (programs among them)."""

from typing import Any

from piccolo.columns import JSONB, UUID, BigInt, BigSerial, Column, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.querystring import QueryString
from piccolo.table import Table


class Xid8(Column):
    """PostgreSQL's 64-bit transaction id (Piccolo has no such type). The default is SQL (the writing
    transaction's id) or a literal."""

    value_type = int

    def __init__(
        self, default: QueryString | str = QueryString("pg_current_xact_id()"), **kwargs: Any
    ) -> None:
        self.default = default
        kwargs.update({"default": default})
        super().__init__(**kwargs)

    @property
    def column_type(self) -> str:
        return "XID8"


class OutboxEvent(Table, tablename="outbox"):
    """Domain events written in the business transaction; the worker's consumers read them later."""

    id = UUID(primary_key=True)
    # The tenant. No foreign key in the database (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    topic = Varchar(length=64)
    payload = JSONB()
    # The event's time (a sweep run at a simulated `--now` stamps that time). Not the order consumers
    # take events in, nor a due date: an event is available from its commit.
    created_at = Timestamptz(default=TimestamptzNow())
    # The event's position, the order consumers take events in (service/outbox/consumers.py): the
    # transaction that wrote it, then a sequence number.
    tx = Xid8()
    seq = BigSerial()


class OutboxConsumer(Table, tablename="outbox_consumer"):
    """Each consumer's position: the last event (tx, seq) it has handled. Moved in the transaction that
    handles the events, with the row locked."""

    name = Varchar(length=64, primary_key=True, default=None)
    tx = Xid8(default="0")  # before every event
    seq = BigInt(default=0)
