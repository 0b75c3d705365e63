from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import ExternalId, Happened
from service.customers.schemas import CustomerProfile

Amount = Annotated[int, Meta(ge=0, le=1_000_000_000_000, description="minor units of the order's currency")]
Quantity = Annotated[int, Meta(gt=0, le=1_000_000)]
Sku = Annotated[str, Meta(min_length=1, max_length=128)]
Attributes = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=64)], str | int | float | bool | None],
    Meta(max_length=50),
]


class OrderLineIn(Struct, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity
    unit_amount: Amount
    name: Annotated[str, Meta(max_length=500)] | None = None
    category: Annotated[str, Meta(max_length=200)] | None = None


class OrderCustomerIn(CustomerProfile, kw_only=True, forbid_unknown_fields=True):
    external_id: ExternalId


class QuoteIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """An order as it would be placed (a cart), or exactly the body about to be posted to /v1/orders:
    nothing is written. `external_id` is accepted and not used; `placed_at` defaults to now."""

    external_id: ExternalId | None = None
    customer: OrderCustomerIn
    currency: Annotated[str, Meta(min_length=3, max_length=3, description="ISO 4217 code")]
    placed_at: Happened | None = None
    lines: Annotated[list[OrderLineIn], Meta(min_length=1, max_length=500)]
    total_amount: Amount
    discount_amount: Amount = 0
    shipping_amount: Amount = 0
    # The shop's own facts about the order (channel, store, ...), for rule conditions: order.attributes.<name>.
    attributes: Attributes = {}


class OrderIn(QuoteIn, kw_only=True, forbid_unknown_fields=True):
    """An order: a quote's body with its id and time required (so every order body can be quoted as it is;
    the fields keep their order, which the idempotency hash of a request depends on)."""

    external_id: ExternalId
    placed_at: Happened
    # Reward codes used on the order: each is applied (marked used with the order) or refused with its
    # reason in the answer; the order is recorded either way.
    codes: Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=20)] = []


class OrderLineOut(Struct, kw_only=True):
    sku: str
    name: str | None
    category: str | None
    quantity: int
    unit_amount: int
    line_amount: int
    discount_amount: int
    eligible_amount: int
    points: int
    refunded_quantity: int
    refunded_amount: int
    refunded_points: int


class OrderOut(Struct, kw_only=True):
    external_id: str
    customer_external_id: str
    currency: str
    placed_at: datetime
    status: str
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    total_amount: int
    eligible_amount: int
    points_earned: int
    earn_explanation: str
    attributes: dict[str, Any]
    refunded_amount: int
    points_reversed: int
    lines: list[OrderLineOut]
    created_at: datetime


class RefundLineIn(Struct, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity


class RefundIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """Either `lines` (sku and quantity) or `amount` (minor units), not both."""

    external_id: ExternalId
    lines: Annotated[list[RefundLineIn], Meta(min_length=1, max_length=500)] | UnsetType = UNSET
    amount: Annotated[int, Meta(gt=0, le=1_000_000_000_000)] | UnsetType = UNSET
