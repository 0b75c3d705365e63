"""Earning rules' tables (schema in migration 2026-11-23T12:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class Rule(Table, tablename="rule"):
    """An earning rule; what it awards lives in its versions."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    status = Varchar(length=16, default=None)  # draft | active | paused | archived
    current_version = Integer(default=None)
    is_default = Boolean(default=False)
    published = Boolean(default=False)
    budget_spent = BigInt(default=0)
    exhausted_at = Timestamptz(null=True, default=None)
    problem_count = Integer(default=0)
    last_problem = Text(null=True, default=None)
    last_problem_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)


class RuleVersion(Table, tablename="rule_version"):
    """Immutable once its rule has been active; ledger entries name (rule_id, version)."""

    # Piccolo has no composite primary key (it would make up an `id` the table does not have).
    PRIMARY_KEY = ("rule_id", "version")

    rule_id = ForeignKey(references=Rule, on_delete=OnDelete.cascade, null=False)
    version = Integer(default=None)
    definition = JSONB(default=None)
    created_at = Timestamptz(default=None)


class RuleUsage(Table, tablename="rule_usage"):
    """Points a rule gave one customer in a cap period (`2026-11-23`, `2026-11`, `2026`, `lifetime`)."""

    # Piccolo has no composite primary key (it would make up an `id` the table does not have).
    PRIMARY_KEY = ("customer_id", "rule_id", "period")

    rule_id = ForeignKey(references=Rule, on_delete=OnDelete.cascade, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.cascade, null=False)
    period = Varchar(length=16, default=None)
    points = BigInt(default=None)


class CustomerEvent(Table, tablename="customer_event"):
    """A signup, review, referral or custom event a shop reported, with what it earned."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    type = Varchar(length=64, default=None)
    properties = JSONB(default=None)
    occurred_at = Timestamptz(default=None)
    points = BigInt(default=None)
    result = Varchar(length=32, default=None)
    created_at = Timestamptz(default=None)
