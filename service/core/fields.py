"""Field types several features' schemas share."""

from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar.params import Parameter
from msgspec import Meta

from service.core.errors import PATTERN_MEANINGS
from service.core.strict_input import INT64_MAX

# When something happened, as the shop says (an order placed, an event): clocks differ a little, the
# future no more than this.
MAX_FUTURE = timedelta(days=1)
Happened = Annotated[datetime, Meta(tz=True, description="with an offset; at most a day in the future")]

# A row id in a path (`/v1/messages/{message_id}`): routes declare such parameters as `:str` and the
# handler's annotation converts them, so a malformed one is a 422 naming it, not a bare 404 of the router.
RowId = Annotated[int, Parameter(ge=1, le=INT64_MAX, description="a positive 64-bit id")]


def matching(pattern: str, means: str, **constraints: Any) -> Meta:
    """A string constraint by regex, with what it means in words: the words go into the OpenAPI
    description and into the problem a client gets, instead of the regex."""
    PATTERN_MEANINGS[pattern] = means
    constraints.setdefault("description", means)
    return Meta(pattern=pattern, **constraints)


ExternalId = Annotated[
    str,
    matching(r"^\S(.*\S)?$", "1 to 128 characters, no spaces at either end", min_length=1, max_length=128),
]


def words(max_length: int, **constraints: Any) -> Meta:
    """Free text a person writes (a reason, a note, a summary): at least one character that is not a
    space, so whitespace alone never stands in for a reason that is required."""
    return matching(r"\S", "some words, not only spaces", min_length=1, max_length=max_length, **constraints)


# Pragmatic address check (RFC 5322 is far wider, but shops store ordinary addresses): a dot-atom local
# part of at most 64 characters, a dotted domain of LDH labels. What a mail server would refuse
# outright does not pass.
EMAIL_PATTERN = (
    r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
Email = Annotated[str, matching(EMAIL_PATTERN, "an e-mail address such as ada@example.com", max_length=320)]
Currency = Annotated[
    str, matching(r"^[A-Z]{3}$", "an ISO 4217 currency code such as EUR", min_length=3, max_length=3)
]
# Keys people choose for tiers and journeys (`gold`, `post_purchase`): stable ids in URLs and rules.
Key = Annotated[
    str,
    matching(
        r"^[a-z0-9][a-z0-9_\-]*$",
        "lower-case letters, digits, _ and -, starting with a letter or digit",
        min_length=1,
        max_length=64,
    ),
]
EventType = Annotated[
    str,
    matching(
        r"^[a-z][a-z0-9_.\-]*$",
        "lower-case letters, digits, _, . and -, starting with a letter (e.g. review_written)",
        min_length=1,
        max_length=64,
    ),
]
