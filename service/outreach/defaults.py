"""Journeys every program starts with, all off until a marketer turns them on, but `surprise`: it only
sends what a gift rule asked for (a gift announced by message), so it is on from the start."""

from __future__ import annotations

from service.messaging.schemas import MessageTypeKey
from service.outreach.schemas import Delay, JourneyIn, StepIn, TriggerIn, TriggerKind


def _one_message(
    key: str, name: str, trigger: TriggerKind, message_type: MessageTypeKey, *, enabled: bool = False
) -> JourneyIn:
    """One message as soon as the trigger fires, unless the customer has unsubscribed."""
    return JourneyIn(
        key=key,
        name=name,
        trigger=TriggerIn(kind=trigger),
        steps=[StepIn(message_type=message_type)],
        exit_on=["unsubscribed"],
        enabled=enabled,
    )


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
    _one_message(
        "expiry_reminder", "Points expiring soon (30 and 7 days before)", "points_expiring", "points_expiring"
    ),
    _one_message("tier_upgraded", "Welcome to a higher tier", "tier_upgraded", "tier_upgraded"),
    _one_message(
        "tier_downgrade_warning",
        "Heads-up before a tier drops",
        "tier_downgrade_warning",
        "tier_downgrade_warning",
    ),
    _one_message("birthday", "Birthday greeting", "birthday", "birthday"),
    _one_message(
        "first_order_anniversary",
        "Anniversary of the first order",
        "first_order_anniversary",
        "first_order_anniversary",
    ),
    _one_message(
        "reward_issued", "A reward's code, sent when it is issued", "reward_issued", "reward_issued"
    ),
    _one_message(
        "code_expiring", "An unused code expiring soon (7 days before)", "code_expiring", "code_expiring"
    ),
    _one_message(
        "surprise", "A surprise gift announced by message", "gift_granted", "surprise", enabled=True
    ),
    JourneyIn(
        key="survey",
        name="Surveys: each active survey asked after an order or its delivery (its own delay)",
        trigger=TriggerIn(kind="survey_due"),
        steps=[StepIn(message_type="survey")],
        exit_on=["refunded", "unsubscribed"],
    ),
    _one_message(
        "promoter_ask",
        "Promoters thanked and asked for a review or a referral (as their survey says)",
        "promoter",
        "promoter_ask",
    ),
)
SURPRISE = next(j for j in DEFAULT_JOURNEYS if j.key == "surprise")
