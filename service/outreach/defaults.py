"""Journeys every program starts with, all off until a marketer turns them on."""

from __future__ import annotations

from service.outreach.schemas import Delay, JourneyIn, StepIn, TriggerIn

DEFAULT_JOURNEYS: tuple[JourneyIn, ...] = (
    JourneyIn(
        key="post_purchase",
        name="Post-purchase follow-up: thank-you, how is it?, review request",
        trigger=TriggerIn(kind="order_placed"),
        steps=[
            StepIn(message_type="order_thank_you"),
            StepIn(delay=Delay(days=5), message_type="delivery_check_in"),
            StepIn(delay=Delay(days=7), message_type="review_request"),
        ],
        exit_on=["refunded", "unsubscribed"],
    ),
    JourneyIn(
        key="repeat_customer",
        name="Repeat customers: an invitation when their usual reorder moment has passed",
        trigger=TriggerIn(kind="repeat_customer", min_orders=2, default_interval_days=45),
        steps=[
            StepIn(
                message_type="repeat_invitation",
                offer="Early access to our new collection, two days before everyone else.",
            )
        ],
        exit_on=["ordered_again", "unsubscribed"],
    ),
    JourneyIn(
        key="win_back",
        name="Win-back after 90 days without an order",
        trigger=TriggerIn(kind="inactivity", days=90),
        steps=[StepIn(message_type="win_back")],
        exit_on=["ordered_again", "unsubscribed"],
    ),
    JourneyIn(
        key="expiry_reminder",
        name="Points expiring soon (30 and 7 days before)",
        trigger=TriggerIn(kind="points_expiring"),
        steps=[StepIn(message_type="points_expiring")],
        exit_on=["unsubscribed"],
    ),
    JourneyIn(
        key="tier_upgraded",
        name="Welcome to a higher tier",
        trigger=TriggerIn(kind="tier_upgraded"),
        steps=[StepIn(message_type="tier_upgraded")],
        exit_on=["unsubscribed"],
    ),
    JourneyIn(
        key="tier_downgrade_warning",
        name="Heads-up before a tier drops",
        trigger=TriggerIn(kind="tier_downgrade_warning"),
        steps=[StepIn(message_type="tier_downgrade_warning")],
        exit_on=["unsubscribed"],
    ),
    JourneyIn(
        key="birthday",
        name="Birthday greeting",
        trigger=TriggerIn(kind="birthday"),
        steps=[StepIn(message_type="birthday")],
        exit_on=["unsubscribed"],
    ),
    JourneyIn(
        key="first_order_anniversary",
        name="Anniversary of the first order",
        trigger=TriggerIn(kind="first_order_anniversary"),
        steps=[StepIn(message_type="first_order_anniversary")],
        exit_on=["unsubscribed"],
    ),
)
