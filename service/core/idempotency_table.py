from piccolo.columns import ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table


class IdempotencyKey(Table, tablename="idempotency_key"):
    """(program, key) is unique: the first request stores its response, replays get it back."""

    id = Serial(primary_key=True)
    # Core imports no feature: Piccolo resolves the reference by its path only when asked. (The random
    # default is the first migration's, never used: every row names its program.)
    program_id: ForeignKey[Table] = ForeignKey(
        references="service.programs.tables.Program", on_delete=OnDelete.cascade, null=False, default=UUID4()
    )
    key = Varchar(length=255)
    request_hash = Varchar(length=64)
    status_code = Integer(null=True, default=None)
    response_body = Text(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
