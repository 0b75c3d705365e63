"""Surprise gifts' tables (schema in migration 2026-12-07T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program


class GiftRule(Table, tablename="gift_rule"):
    """A surprise-gift rule; what it decides and gives lives in its versions."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    status = Varchar(length=16, default=None)  # draft | active | paused | archived
    current_version = Integer(default=None)
    published = Boolean(default=False)
    problem_count = Integer(default=0)
    last_problem = Text(null=True, default=None)
    last_problem_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)


class GiftRuleVersion(Table, tablename="gift_rule_version"):
    """Immutable once its rule has been active; gifts and hold-outs name (rule_id, version)."""

    # Piccolo has no composite primary key (it would make up an `id` the table does not have).
    PRIMARY_KEY = ("rule_id", "version")

    rule_id = ForeignKey(references=GiftRule, on_delete=OnDelete.cascade, null=False)
    version = Integer(default=None)
    definition = JSONB(default=None)
    cost_amount = BigInt(default=None)  # one gift's cost, base minor units, fixed when saved
    created_at = Timestamptz(default=None)


class GiftBudget(Table, tablename="gift_budget"):
    """Money a rule's gifts cost in one budget period (`2026-12`, `2026-W49`, `total`), in base minor units."""

    PRIMARY_KEY = ("rule_id", "period")

    rule_id = ForeignKey(references=GiftRule, on_delete=OnDelete.cascade, null=False)
    period = Varchar(length=16, default=None)
    used_amount = BigInt(default=None)


class Gift(Table, tablename="gift"):
    """A decision that gave a surprise (`granted`) or kept an eligible customer in the hold-out."""

    id = UUID(primary_key=True, default=None)
    program_id = UUID(default=None)
    rule_id = ForeignKey(references=GiftRule, on_delete=OnDelete.restrict, null=False)
    rule_version = Integer(default=None)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    occasion = Text(default=None)
    trigger = Varchar(length=32, default=None)
    outcome = Varchar(length=16, default=None)  # granted | held_out
    order_id = UUID(null=True, default=None)
    cost_amount = BigInt(default=None)
    currency = Varchar(length=3, default=None)
    budget_period = Varchar(length=16, null=True, default=None)
    given = JSONB(default=None)
    item_status = Varchar(length=16, null=True, default=None)  # in_parcel | waiting | picked
    picked_order_id = UUID(null=True, default=None)
    decided_at = Timestamptz(default=None)
    created_at = Timestamptz(default=None)
