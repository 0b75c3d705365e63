from piccolo.columns import UUID, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class IdempotencyKey(Table, tablename="idempotency_key"):
    """(program, key) is unique: the first request stores its response, replays get it back."""

    id = Serial(primary_key=True)
    program_id = UUID()  # core knows no feature tables; the foreign key is in the migration
    key = Varchar(length=255)
    request_hash = Varchar(length=64)
    status_code = Integer(null=True, default=None)
    response_body = Text(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
