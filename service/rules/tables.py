from piccolo.columns import JSONB, UUID, BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class Rule(Table, tablename="rule"):
    """An earning rule; what it awards lives in its versions (migration 2026-11-23T12:00)."""

    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict)
    status = Varchar(length=16)  # draft | active | paused | archived
    current_version = Integer()
    is_default = Boolean(default=False)
    published = Boolean(default=False)
    budget_spent = BigInt(default=0)
    exhausted_at = Timestamptz(null=True, default=None)
    problem_count = Integer(default=0)
    last_problem = Text(null=True, default=None)
    last_problem_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class RuleVersion(Table, tablename="rule_version"):
    """Immutable once its rule has been active; ledger entries name (rule_id, version)."""

    rule_id = ForeignKey(references=Rule, on_delete=OnDelete.cascade)
    version = Integer()
    definition = JSONB()
    created_at = Timestamptz(default=TimestamptzNow())


class RuleUsage(Table, tablename="rule_usage"):
    """Points a rule gave one customer in a cap period (`2026-11-23`, `2026-11`, `2026`, `lifetime`)."""

    rule_id = ForeignKey(references=Rule, on_delete=OnDelete.cascade)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.cascade)
    period = Varchar(length=16)
    points = BigInt()


class CustomerEvent(Table, tablename="customer_event"):
    """A signup, review, referral or custom event a shop reported, with what it earned."""

    id = UUID(primary_key=True)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict)
    type = Varchar(length=64)
    properties = JSONB()
    occurred_at = Timestamptz()
    points = BigInt()
    result = Varchar(length=32)
    created_at = Timestamptz(default=TimestamptzNow())
