"""The rewards' tables (schema in migration 2026-12-05T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class Reward(Table, tablename="reward"):
    """A catalogue reward; `definition` is its current version's (kind, cost, discount, limits, names)."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    version = Integer(default=None)
    status = Varchar(length=16, default=None)  # active | paused | archived
    definition = JSONB(default=None)
    stock_left = Integer(null=True, default=None)  # NULL: unlimited
    used = Boolean(default=False)  # a code was issued: a change makes a new version
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)


class RewardVersion(Table, tablename="reward_version"):
    """Every version of a reward; redemptions name (reward_id, version)."""

    # Piccolo has no composite primary key (it would make up an `id` the table does not have).
    PRIMARY_KEY = ("reward_id", "version")

    reward_id = ForeignKey(references=Reward, on_delete=OnDelete.cascade, null=False)
    version = Integer(default=None)
    definition = JSONB(default=None)
    created_at = Timestamptz(default=None)


class Redemption(Table, tablename="redemption"):
    """One code Encore issued: bought with points or given at no cost; issued -> used | cancelled | expired."""

    id = UUID(primary_key=True, default=None)
    program_id = UUID(default=None)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    reward_id = ForeignKey(references=Reward, on_delete=OnDelete.restrict, null=False)
    reward_version = Integer(default=None)
    code = Varchar(length=64, default=None)  # as shown: PREFIX-XXXX-XXXX-XXXX-XXXX
    code_key = Varchar(length=64, default=None)  # upper case, no dashes: what a look-up matches
    status = Varchar(length=16, default=None)  # issued | used | cancelled | expired
    source = Varchar(length=16, default=None)  # points | journey | gift | recovery | referral
    source_key = Text(null=True, default=None)
    points = BigInt(default=None)
    entry_id = BigInt(null=True, default=None)
    discount = JSONB(default=None)
    value_amount = BigInt(null=True, default=None)
    currency = Varchar(length=3, null=True, default=None)
    order_id = UUID(null=True, default=None)
    used_at = Timestamptz(null=True, default=None)
    cancelled_at = Timestamptz(null=True, default=None)
    expired_at = Timestamptz(null=True, default=None)
    return_entry_id = BigInt(null=True, default=None)
    points_returned = BigInt(default=0)
    expires_at = Timestamptz(null=True, default=None)
    expiry_notice = SmallInt(default=0)
    created_at = Timestamptz(default=None)
