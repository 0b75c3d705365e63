"""What the earning pipeline takes: plain values, whoever the caller is (the API converts its request
bodies; a Stripe checkout or an import row builds these directly). Amounts in minor units of `currency`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """The customer by the shop's id, with the profile fields to set on the way (only those given)."""

    external_id: str
    profile: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    unit_amount: int
    name: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Cart:
    """An order as it would be placed: what a quote prices (placed_at None: now)."""

    customer: CustomerRef
    currency: str
    lines: tuple[Line, ...]
    total_amount: int
    discount_amount: int = 0
    shipping_amount: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    placed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """An order placed: a cart with its id and time."""

    external_id: str
    placed_at: datetime
    customer: CustomerRef
    currency: str
    lines: tuple[Line, ...]
    total_amount: int
    discount_amount: int = 0
    shipping_amount: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    codes: tuple[str, ...] = ()  # reward codes the customer used on it


@dataclass(frozen=True, slots=True)
class RefundLine:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Refund:
    """Either `lines` or `amount` (minor units of the order's currency), not both."""

    external_id: str
    lines: tuple[RefundLine, ...] | None = None
    amount: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A customer event (signup, review_written, or a type the program declares); occurred_at None: now."""

    type: str
    customer: CustomerRef
    properties: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
