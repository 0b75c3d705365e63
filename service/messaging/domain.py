"""Guardrails, decided without I/O: may this message go now, later (why, until when), or not at all (why).

Order of the checks: no usable address, unsubscribed from everything, no marketing consent, on the
suppression list (hard bounce, complaint), the marketing frequency cap (suppressed: it would be spam),
the marketing minimum gap and quiet hours in the customer's time zone (deferred: never dropped)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from service.core.fields import EMAIL_PATTERN
from service.messaging.catalogue import Category

_EMAIL = re.compile(EMAIL_PATTERN)


def is_email(value: str) -> bool:
    return len(value) <= 320 and bool(_EMAIL.match(value))


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time  # local; may wrap midnight (21:00-08:00)
    end: time

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class Guardrails:
    quiet_hours: QuietHours | None
    marketing_cap: int  # at most this many marketing messages ...
    marketing_cap_days: int  # ... in this many days
    marketing_min_gap: timedelta  # and none within this of another


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str | None
    transactional_consent: bool  # False: unsubscribed from everything
    marketing_consent: bool
    suppressed: str | None  # the suppression list's reason for this address, if it is there
    timezone: ZoneInfo


Outcome = Literal["send", "defer", "suppress"]


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str | None = None
    until: datetime | None = None  # defer: not before


def next_allowed(moment: datetime, quiet: QuietHours | None, zone: ZoneInfo) -> datetime:
    """The first moment at or after `moment` outside quiet hours in `zone` (UTC in, UTC out)."""
    if quiet is None:
        return moment
    local = moment.astimezone(zone)
    if not quiet.contains(local.time()):
        return moment
    end_day = local.date() if local.time() < quiet.end else local.date() + timedelta(days=1)
    # Wall-clock end of the quiet hours; fold/gap of a DST change resolved by zoneinfo's default.
    end = datetime.combine(end_day, quiet.end, tzinfo=zone)
    return max(end.astimezone(moment.tzinfo), moment)


def decide(
    category: Category,
    recipient: Recipient,
    rails: Guardrails,
    recent_marketing: Sequence[datetime],
    now: datetime,
    *,
    respect_quiet_hours: bool = True,
) -> Decision:
    """`recent_marketing`: when this customer's marketing messages went (or are going) out."""
    if not recipient.email:
        return Decision("suppress", "no email address")
    if not is_email(recipient.email):
        return Decision("suppress", f"not an email address: {recipient.email!r}")
    if not recipient.transactional_consent:
        return Decision("suppress", "unsubscribed from all emails")
    if category == "marketing" and not recipient.marketing_consent:
        return Decision("suppress", "no marketing consent")
    if recipient.suppressed:
        return Decision("suppress", f"address on the suppression list ({recipient.suppressed})")
    moment, reasons = now, []
    if category == "marketing":
        window_start = now - timedelta(days=rails.marketing_cap_days)
        in_window = [sent for sent in recent_marketing if sent > window_start]
        if len(in_window) >= rails.marketing_cap:
            return Decision(
                "suppress",
                f"frequency cap: {len(in_window)} marketing messages in the last {rails.marketing_cap_days} days "
                f"(at most {rails.marketing_cap})",
            )
        if recent_marketing and max(recent_marketing) + rails.marketing_min_gap > now:
            moment = max(recent_marketing) + rails.marketing_min_gap
            reasons.append(f"less than {rails.marketing_min_gap} after the last marketing message")
    if respect_quiet_hours:
        allowed = next_allowed(moment, rails.quiet_hours, recipient.timezone)
        if allowed > moment:
            moment = allowed
            reasons.append(f"quiet hours in {recipient.timezone.key}")
    if moment > now:
        return Decision("defer", "; ".join(reasons), moment)
    return Decision("send")


def retry_delay(attempts: int) -> timedelta:
    """After the `attempts`-th failed try: 1 min doubling, at most 6 h."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 6 * 3600))


MAX_ATTEMPTS = 8


STAFF_CAP_WINDOW = timedelta(hours=1)


def decide_staff(
    to_email: str | None, recent_staff: Sequence[datetime], cap_per_hour: int, now: datetime
) -> Decision:
    """A message to staff (an alarm): no customer consent, quiet hours or marketing caps, but at most
    `cap_per_hour` of the program's in an hour (`recent_staff`: when its staff messages went out); one
    over the cap waits until the oldest of the hour is an hour old, so a storm of alarms is slowed, not
    lost."""
    if not to_email:
        return Decision("suppress", "the program has no alert address (alert_email)")
    if not is_email(to_email):
        return Decision("suppress", f"not an email address: {to_email!r}")
    in_window = sorted(sent for sent in recent_staff if sent > now - STAFF_CAP_WINDOW)
    if len(in_window) >= cap_per_hour:
        until = in_window[len(in_window) - cap_per_hour] + STAFF_CAP_WINDOW
        return Decision(
            "defer",
            f"staff cap: {len(in_window)} staff messages in the last hour (at most {cap_per_hour})",
            until,
        )
    return Decision("send")
