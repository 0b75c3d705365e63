"""`prepare` (the send sweep's pure step) over hand-made batch facts: what an order's points mean today,
a message about an order that is gone, and the locale recorded in BCP 47 form."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from service.messaging.schemas import MessagingSettings
from service.messaging.service import BatchFacts, Prepared, prepare
from tests.support.messages import batch

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _prepare(message_type: str, *, with_order: bool, matured: bool = False, **customer: Any) -> Prepared:
    program_id, customer_id, order_id = uuid4(), uuid4(), uuid4()
    row = {
        "id": 1,
        "program_id": program_id,
        "customer_id": customer_id,
        "message_type": message_type,
        "category": "transactional",
        "context": {"order_id": str(order_id), "event": {"order": "o-1"}},
        "due_at": NOW,
        "attempts": 0,
    }
    recipient = {
        "id": customer_id,
        "program_id": program_id,
        "external_id": "c-1",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "locale": "en-GB",
        "timezone": "Pacific/Auckland",  # UTC+13 in March
        "marketing_consent": True,
        "transactional_consent": True,
        "tier_name": None,
        "points": 0,
        "pending_points": 90,
        "suppressed": None,
        "orders_count": 1,
        "first_order_at": NOW,
        "last_order_at": NOW,
        "program_name": "Demo Shop",
        "program_timezone": "UTC",
        **customer,
    }
    order = {
        "id": order_id,
        "external_id": "o-1",
        "currency": "EUR",
        "total_amount": 9000,
        "placed_at": NOW,
        "points_earned": 90,
        # 14 days later at 12:00 UTC: already 17 March (01:00) in Auckland.
        "points_available_at": None if matured else NOW + timedelta(days=14),
        "lines": [{"order_id": order_id, "name": "Trail shoe", "sku": "SHOE-1", "quantity": 1}],
    }
    facts = BatchFacts(
        settings={program_id: MessagingSettings(quiet_hours=None)},
        recipients={customer_id: recipient},
        orders={order_id: order} if with_order else {},
        tiers={},
        recent={},
        overrides={},
    )
    [prepared] = prepare([row], facts, NOW, b"k" * 32, "https://encore.example")
    return prepared


def test_the_thank_you_counts_pending_points_and_dates_them_in_the_customers_zone() -> None:
    prepared = _prepare("order_thank_you", with_order=True)
    assert prepared.envelope is not None, prepared.outcome
    text = " ".join(prepared.envelope.text.split())
    assert (
        "This order earns you 90 points, which you can spend from 17 March 2026, once the return period is "
        "over. You have no points to spend yet, and 90 points are pending." in text
    )
    assert prepared.outcome["locale"] == "en-GB" and prepared.outcome["locale_note"] is None


def test_points_already_matured_are_ready_to_spend() -> None:
    prepared = _prepare("order_thank_you", with_order=True, matured=True, points=90, pending_points=0)
    assert prepared.envelope is not None
    assert "This order earns you 90 points, ready to spend now. You can spend 90 points today." in " ".join(
        prepared.envelope.text.split()
    )


def test_a_message_about_an_order_that_is_gone_fails_and_says_why() -> None:
    for message_type in ("order_thank_you", "delivery_check_in"):
        prepared = _prepare(message_type, with_order=False)
        assert prepared.envelope is None
        assert prepared.outcome["status"] == "failed"
        assert prepared.outcome["last_error"] == "LookupError: the message's order is gone"


def test_one_programs_slow_template_fails_its_message_and_defers_its_others_not_anyone_elses(
    monkeypatch: Any,
) -> None:
    import service.messaging.service as messaging

    monkeypatch.setattr(messaging, "PROGRAM_RENDER_SECONDS_PER_BATCH", 0.5)
    slow, fine = uuid4(), uuid4()
    rows, facts = batch(NOW, [slow, slow, slow, fine], slow)
    outcomes = {
        p.row["id"]: p.outcome for p in prepare(rows, facts, NOW, b"k" * 32, "https://encore.example")
    }
    assert outcomes[1]["status"] == "failed"
    assert outcomes[1]["reason"] == "could not render: over the render limit: more than 1 s of CPU time"
    for deferred in (2, 3):  # the program's render time for this batch is spent: a minute later
        assert outcomes[deferred]["status"] == "deferred" and outcomes[deferred]["due_at"] == NOW + timedelta(
            minutes=1
        )
    assert "status" not in outcomes[4] and outcomes[4]["subject"], outcomes[4]  # rendered, ready to send
