"""Feedback's pure decisions: each kind's scale, the band a score falls in, when a score is an alarm, and
the figures a report gives (NPS, mean CSAT)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["nps", "csat"]
Category = Literal["promoter", "passive", "detractor"]


@dataclass(frozen=True, slots=True)
class Scale:
    low: int
    high: int
    promoter_from: int  # this score and above: promoter
    passive_from: int  # this score and above (below promoter_from): passive; below: detractor
    default_alarm_below: int  # the articles: an NPS under 5 is an alarm; a CSAT under 2

    def holds(self, score: int) -> bool:
        return self.low <= score <= self.high


SCALES: dict[Kind, Scale] = {
    "nps": Scale(low=0, high=10, promoter_from=9, passive_from=7, default_alarm_below=5),
    "csat": Scale(low=1, high=5, promoter_from=4, passive_from=3, default_alarm_below=2),
}
DIMENSION_SCALE = Scale(low=1, high=5, promoter_from=4, passive_from=3, default_alarm_below=2)


def category(kind: Kind, score: int) -> Category:
    """Promoter 9-10, passive 7-8, detractor 0-6 on NPS; 4-5, 3, 1-2 on CSAT."""
    scale = SCALES[kind]
    if score >= scale.promoter_from:
        return "promoter"
    if score >= scale.passive_from:
        return "passive"
    return "detractor"


def is_alarm(score: int, alarm_below: int) -> bool:
    """A score under the threshold raises an alarm (the threshold itself does not)."""
    return score < alarm_below


def threshold_holds(kind: Kind, alarm_below: int) -> bool:
    """A threshold inside the scale, one above its top at most (every score an alarm is allowed, none below
    the lowest: a threshold at the bottom raises none)."""
    scale = SCALES[kind]
    return scale.low <= alarm_below <= scale.high + 1


def nps(categories: Iterable[Category]) -> int | None:
    """The net promoter score: % promoters − % detractors, rounded half away from zero; None without answers."""
    counted = list(categories)
    if not counted:
        return None
    net = 100 * (counted.count("promoter") - counted.count("detractor"))
    whole, rest = divmod(abs(net), len(counted))
    rounded = whole + (1 if 2 * rest >= len(counted) else 0)
    return rounded if net >= 0 else -rounded


# A survey link answers within this many days of its message; its answer can be changed for a week.
LINK_ANSWER_DAYS = 30
CHANGEABLE_DAYS = 7
LinkState = Literal["open", "changeable", "closed", "expired"]


def link_state(
    sent_at: datetime, changeable_until: datetime | None, answered: bool, now: datetime
) -> LinkState:
    """What a survey link's page may do now: take a first answer (`open`), change the one given
    (`changeable`), or neither — answered and past its week (`closed`), or never answered and past the
    link's 30 days (`expired`)."""
    if answered:
        return "changeable" if changeable_until is not None and now < changeable_until else "closed"
    return "open" if now < sent_at + timedelta(days=LINK_ANSWER_DAYS) else "expired"
