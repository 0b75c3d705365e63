from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    BigSerial,
    ForeignKey,
    Integer,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.table import Table

from service.customers.tables import Customer
from service.orders.tables import Order, Refund


class CustomerBalance(Table, tablename="customer_balance"):
    """Cached balances, updated in the same transaction as the lots; `encore ledger verify` checks them."""

    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, primary_key=True, null=False)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    available = BigInt(default=0)
    pending = BigInt(default=0)
    # Points reversed by a refund after they had been spent: settled first by the next earnings.
    debt = BigInt(default=0)
    lifetime_earned = BigInt(default=0)
    updated_at = Timestamptz(default=TimestamptzNow())


class PointsLot(Table, tablename="points_lot"):
    """One per credit: points arrive pending, become available, are spent FIFO by expiry, or expire."""

    id = UUID(primary_key=True)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    order_id = ForeignKey(references=Order, on_delete=OnDelete.restrict, null=True, default=None)
    points = BigInt()
    remaining = BigInt()
    state = Varchar(length=16)  # pending | available | expired
    available_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
    # The last expiry notice sent for this lot: 0 none, 30 the 30-day one, 7 the 7-day one.
    expiry_notice = SmallInt(default=0)
    created_at = Timestamptz(default=TimestamptzNow())


class PointsEntry(Table, tablename="points_entry"):
    """Immutable: one per ledger change, with its reason and a human explanation."""

    id = BigSerial(primary_key=True)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    kind = Varchar(length=24)
    # Change of the points held (available + pending); `debt_change` the change of the debt.
    points = BigInt()
    debt_change = BigInt(default=0)
    order_id = ForeignKey(references=Order, on_delete=OnDelete.restrict, null=True, default=None)
    refund_id = ForeignKey(references=Refund, on_delete=OnDelete.restrict, null=True, default=None)
    # Set when the entry touches exactly one lot (earn, expire, credit adjustments).
    lot_id = UUID(null=True, default=None)
    # The rule version that awarded an earn entry.
    rule_id = UUID(null=True, default=None)
    rule_version = Integer(null=True, default=None)
    reason = Text()
    explanation = Text()
    actor = Varchar(length=200, null=True, default=None)
    details = JSONB(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class PointsAllocation(Table, tablename="points_allocation"):
    """How an entry moved points into or out of lots: per lot, sum == remaining; per entry, sum == points."""

    id = BigSerial(primary_key=True)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    # The defaults are the first migration's (Piccolo's own for a plain column); every row names both.
    entry_id = ForeignKey(references=PointsEntry, on_delete=OnDelete.restrict, null=False, default=0)
    lot_id = ForeignKey(references=PointsLot, on_delete=OnDelete.restrict, null=False, default=UUID4())
    points = BigInt()
