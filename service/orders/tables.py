from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class Order(Table, tablename="orders"):
    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    external_id = Varchar(length=128)
    currency = Varchar(length=3)
    placed_at = Timestamptz()
    subtotal_amount = BigInt()
    discount_amount = BigInt()
    shipping_amount = BigInt()
    total_amount = BigInt()
    eligible_amount = BigInt()
    points_earned = BigInt()
    refunded_amount = BigInt(default=0)
    refunded_shipping_amount = BigInt(default=0)
    points_reversed = BigInt(default=0)
    status = Varchar(length=24, default="placed")  # placed | partially_refunded | refunded
    earn_explanation = Text()
    attributes = JSONB(default="{}")  # the shop's own facts (channel, store...), for rule conditions
    created_at = Timestamptz(default=TimestamptzNow())


class OrderLine(Table, tablename="order_line"):
    id = UUID(primary_key=True)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    order_id = ForeignKey(references=Order, on_delete=OnDelete.cascade, null=False)
    position = Integer()
    sku = Varchar(length=128)
    name = Varchar(length=500, null=True, default=None)
    category = Varchar(length=200, null=True, default=None)
    quantity = Integer()
    unit_amount = BigInt()
    line_amount = BigInt()
    discount_amount = BigInt()
    eligible_amount = BigInt()
    points = BigInt()
    refunded_quantity = Integer(default=0)
    refunded_amount = BigInt(default=0)
    refunded_points = BigInt(default=0)


class Refund(Table, tablename="refund"):
    id = UUID(primary_key=True)
    # The tenant; the database has no foreign key here (migration 2026-11-23T00:20): parents pin it.
    program_id = UUID(default=None)
    order_id = ForeignKey(references=Order, on_delete=OnDelete.restrict, null=False)
    external_id = Varchar(length=128)
    request_hash = Varchar(length=64)
    amount = BigInt()
    shipping_amount = BigInt(default=0)
    points_reversed = BigInt()
    debt_recorded = BigInt(default=0)
    lines = JSONB()
    created_at = Timestamptz(default=TimestamptzNow())
