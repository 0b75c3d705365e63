"""Hand-made send batches for `prepare` and `prepare_isolated`: one win-back message per program given,
and a program's own template that spends its whole render budget."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from service.messaging.schemas import MessagingSettings
from service.messaging.service import BatchFacts

# Doubles its work at every level: it runs until a render limit stops it.
EXPONENTIAL = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"


def batch(now: datetime, programs: list[UUID], slow: UUID) -> tuple[list[dict[str, Any]], BatchFacts]:
    """Message n (1, 2, ...) goes to a customer of programs[n - 1], due n seconds after `now`; the `slow`
    program has its own win-back template, EXPONENTIAL."""
    rows, recipients = [], {}
    for number, program_id in enumerate(programs, start=1):
        customer_id = uuid4()
        recipients[customer_id] = {
            "id": customer_id, "program_id": program_id, "external_id": f"c-{number}", "email": f"c{number}@example.com",
            "name": "Ada", "locale": "en", "timezone": "UTC", "marketing_consent": True,
            "transactional_consent": True, "tier_name": None, "points": 0, "pending_points": 0, "suppressed": None,
            "orders_count": 1, "first_order_at": now, "last_order_at": now, "program_name": "Shop",
            "program_timezone": "UTC",
        }  # fmt: skip
        rows.append(
            {
                "id": number,
                "program_id": program_id,
                "customer_id": customer_id,
                "message_type": "win_back",
                "category": "transactional",
                "context": {},
                "due_at": now + timedelta(seconds=number),
                "attempts": 0,
            }
        )
    saved = {"id": uuid4(), "version": 1, "message_type": "win_back", "subject": "Hi", "text_body": "Hi"}
    facts = BatchFacts(
        settings={program: MessagingSettings(quiet_hours=None) for program in programs},
        recipients=recipients,
        orders={},
        tiers={},
        recent={},
        overrides={(slow, "win_back", "en"): {**saved, "html_body": EXPONENTIAL}},
    )
    return rows, facts
