"""Feedback's tables (schema in migration 2026-12-09T09:00, written as SQL; these classes mirror it, and
tests/integration/test_schema.py holds them to the database).

`default=None` on a NOT NULL column: the table has no default, every row names the value."""

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Integer, SmallInt, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from service.customers.tables import Customer
from service.programs.tables import Program
from service.recovery.tables import ServiceCase


class Survey(Table, tablename="survey"):
    """An NPS or CSAT survey: its questions per locale, dimensions, when it is sent, its alarm threshold."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    key = Varchar(length=64, default=None)
    name = Varchar(length=200, default=None)
    kind = Varchar(length=8, default=None)  # nps | csat
    questions = JSONB(default=None)  # {locale: question}
    dimensions = JSONB(default="[]")  # [{key, labels: {locale: label}}] (CSAT: speed, accuracy, ...)
    send_after = Varchar(length=16, default=None)  # order | delivery
    delay_days = Integer(default=None)
    alarm_below = Integer(default=None)
    ask_promoters = Varchar(length=16, default=None)  # none | review | referral
    follow_up = Boolean(default=False)
    status = Varchar(length=16, default=None)  # active | archived
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)


class Feedback(Table, tablename="feedback"):
    """One answer: the score and its band, dimensions, comment, and what it set off (an alarm, a case)."""

    id = UUID(primary_key=True, default=None)
    program_id = ForeignKey(references=Program, on_delete=OnDelete.restrict, null=False)
    customer_id = ForeignKey(references=Customer, on_delete=OnDelete.restrict, null=False)
    survey_id = ForeignKey(references=Survey, on_delete=OnDelete.restrict, null=True, default=None)
    kind = Varchar(length=8, default=None)
    score = SmallInt(default=None)
    category = Varchar(length=16, default=None)  # promoter | passive | detractor
    dimensions = JSONB(default="{}")  # {dimension key: 1..5}
    comment = Text(null=True, default=None)
    order_id = UUID(null=True, default=None)
    channel = Varchar(length=16, default=None)
    source_key = Varchar(length=200, default=None)  # link:<message id>, api:<id>
    alarm = Boolean(default=None)
    case_id = ForeignKey(references=ServiceCase, on_delete=OnDelete.restrict, null=True, default=None)
    follows_up_case_id = ForeignKey(
        references=ServiceCase, on_delete=OnDelete.restrict, null=True, default=None
    )
    answered_at = Timestamptz(default=None)
    changeable_until = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=None)
    updated_at = Timestamptz(default=None)
