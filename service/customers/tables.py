from piccolo.columns import UUID, Boolean, Date, ForeignKey, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from service.programs.tables import Program


class Customer(Table, tablename="customer"):
    """A shop's customer; `external_id` (the shop's own id) is unique per program (see migrations)."""

    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    external_id = Varchar(length=128)
    email = Varchar(length=320, null=True, default=None)
    name = Varchar(length=200, null=True, default=None)
    locale = Varchar(length=35, null=True, default=None)
    birthday = Date(null=True, default=None)
    timezone = Varchar(length=64, null=True, default=None)
    marketing_consent = Boolean(default=False)
    # Unsubscribed from everything (service messages too): messaging sends this customer nothing but what
    # the law requires (migration 2026-11-25T09:00).
    transactional_consent = Boolean(default=True)
    unsubscribed_at = Timestamptz(null=True, default=None)
    stripe_customer_id = Varchar(length=255, null=True, default=None)  # unique per program
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
