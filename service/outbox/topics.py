"""Every domain event topic Encore writes to the outbox (webhook subscriptions are checked against it)."""

from __future__ import annotations

TOPICS: frozenset[str] = frozenset(
    {
        "api_key.created",
        "api_key.revoked",
        "case.closed",
        "case.opened",
        "case.reopened",
        "customer.created",
        "customer.unsubscribed",
        "customer.updated",
        "feedback.alarm",
        "feedback.received",
        "event.recorded",
        "gift.granted",
        "order.created",
        "order.refunded",
        "points.adjusted",
        "points.debt_settled",
        "points.earned",
        "points.expired",
        "points.expiring_soon",
        "points.matured",
        "points.redeemed",
        "points.returned",
        "points.reversed",
        "program.created",
        "program.updated",
        "recovery.given",
        "redemption.cancelled",
        "redemption.created",
        "redemption.expired",
        "redemption.expiring_soon",
        "redemption.stripe_failed",
        "redemption.synced",
        "redemption.used",
        "rule.budget_exhausted",
        "tier.downgrade_warning",
        "tier.downgraded",
        "tier.upgraded",
        "webhook.test",
        "webhook_endpoint.created",
        "webhook_endpoint.deleted",
        "webhook_endpoint.disabled",
        "webhook_endpoint.updated",
    }
)
GROUPS: frozenset[str] = frozenset(topic.split(".", 1)[0] for topic in TOPICS)


def is_known(pattern: str) -> bool:
    """An exact topic, or `group.*` for a group that exists."""
    if pattern.endswith(".*"):
        return pattern[:-2] in GROUPS
    return pattern in TOPICS
