"""Field types several features' schemas share."""

from typing import Annotated

from msgspec import Meta

ExternalId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]
# Pragmatic address check (RFC 5322 is far wider, but shops store ordinary addresses): a dot-atom local
# part of at most 64 characters, a dotted domain of LDH labels. What a mail server would refuse
# outright does not pass.
EMAIL_PATTERN = (
    r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
Email = Annotated[str, Meta(max_length=320, pattern=EMAIL_PATTERN)]
