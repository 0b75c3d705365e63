from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

from service.core.fields import Email, matching

# The shape only; profile_changes keeps locales CLDR knows, in their canonical BCP 47 form.
Locale = Annotated[
    str,
    Meta(
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
        description="A locale CLDR knows (en, en-GB, pt_BR, zh-Hant-TW), stored in BCP 47 form (pt-BR). "
        "Messages use the shipped templates of its language (en, tr, cy, lv, ms, ru: en-GB gets en, with "
        "British dates), else the program's default locale (the message's locale_note says so).",
    ),
]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64)]
# Unique in the program: a Stripe checkout of this Stripe customer earns for this customer.
StripeCustomerId = Annotated[
    str, matching(r"^cus_[A-Za-z0-9]{1,250}$", "a Stripe customer id such as cus_NffrFeUfNV2Hib")
]


class CustomerProfile(Struct, kw_only=True, forbid_unknown_fields=True):
    """Profile fields: an omitted field is left as it is; null clears it."""

    email: Email | UnsetType | None = UNSET
    name: Annotated[str, Meta(max_length=200)] | UnsetType | None = UNSET
    locale: Locale | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    timezone: TimeZone | UnsetType | None = UNSET
    marketing_consent: bool | UnsetType = UNSET
    transactional_consent: bool | UnsetType = UNSET  # false: unsubscribed from every email
    stripe_customer_id: StripeCustomerId | UnsetType | None = UNSET


class CustomerOut(Struct, kw_only=True):
    external_id: str
    email: str | None
    name: str | None
    locale: str | None
    birthday: date | None
    timezone: str | None
    marketing_consent: bool
    transactional_consent: bool
    stripe_customer_id: str | None
    created_at: datetime
    updated_at: datetime
