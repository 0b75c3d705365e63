"""The single Piccolo app: every feature's tables (tests/integration/test_schema.py checks that this lists them
all), migrations in the top-level migrations/ folder."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from service.core.idempotency_table import IdempotencyKey
from service.customers.tables import Customer
from service.feedback.tables import Feedback, Survey
from service.gifts.tables import Gift, GiftBudget, GiftRule, GiftRuleVersion
from service.ledger.tables import CustomerBalance, PointsAllocation, PointsEntry, PointsLot
from service.messaging.tables import (
    Message,
    MessageTemplate,
    MessageTemplateVersion,
    MessagingSettings,
    Suppression,
)
from service.orders.tables import Order, OrderLine, Refund
from service.outbox.tables import OutboxConsumer, OutboxEvent
from service.outreach.tables import Journey, JourneyEnrollment
from service.programs.tables import ApiKey, Program
from service.recovery.tables import CaseEntry, Recovery, RecoverySettings, ServiceCase
from service.rewards.tables import Redemption, Reward, RewardVersion
from service.rules.tables import CustomerEvent, Rule, RuleUsage, RuleVersion
from service.scheduler.tables import JobRun
from service.stripe.tables import StripeCode, StripeConnection, StripeEvent, StripePayment, StripeRefund
from service.tiers.tables import CustomerTier, Tier, TierChange
from service.webhooks.tables import WebhookDelivery, WebhookEndpoint

APP_CONFIG = AppConfig(
    app_name="encore",
    migrations_folder_path=str(Path(__file__).resolve().parent.parent / "migrations"),
    table_classes=[
        Program,
        ApiKey,
        Customer,
        CustomerBalance,
        Order,
        OrderLine,
        Refund,
        PointsLot,
        PointsEntry,
        PointsAllocation,
        IdempotencyKey,
        OutboxEvent,
        OutboxConsumer,
        WebhookEndpoint,
        WebhookDelivery,
        JobRun,
        Rule,
        RuleVersion,
        RuleUsage,
        CustomerEvent,
        Tier,
        TierChange,
        CustomerTier,
        MessagingSettings,
        MessageTemplate,
        MessageTemplateVersion,
        Journey,
        JourneyEnrollment,
        Message,
        Suppression,
        Reward,
        RewardVersion,
        Redemption,
        StripeConnection,
        StripeEvent,
        StripePayment,
        StripeRefund,
        StripeCode,
        GiftRule,
        GiftRuleVersion,
        GiftBudget,
        Gift,
        RecoverySettings,
        ServiceCase,
        CaseEntry,
        Recovery,
        Survey,
        Feedback,
    ],
    migration_dependencies=[],
    commands=[],
)
