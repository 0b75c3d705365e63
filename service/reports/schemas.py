"""The reports' answers (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from service.feedback.domain import Kind
from service.reports.domain import Period, Segment

Rate = Annotated[
    str,
    Meta(
        description='answers / survey messages sent, a decimal string with 4 places ("0.4167"); null: none sent'
    ),
]
PeriodName = Annotated[str, Meta(description="`2026-03`, or the ISO week `2026-W10`; null in `totals`")]
SegmentValue = Annotated[
    str,
    Meta(description="the customer's current tier key or locale (`none`: without one); null: not segmented"),
]
Nps = Annotated[
    int, Meta(description="kind nps: % promoters − % detractors, -100 to 100; null without answers")
]
CsatMean = Annotated[
    str, Meta(description='kind csat: the mean score, 2 places ("4.25"); null without answers')
]
Seconds = Annotated[
    int, Meta(description="the median time from opening to closing the alarms' cases; null: none")
]


class NpsRow(Struct, kw_only=True):
    """One period and segment (or, as `totals`, the whole range)."""

    period: PeriodName | None = None
    segment: SegmentValue | None = None
    responses: int
    nps: Nps | UnsetType | None = UNSET  # only for kind nps
    csat_mean: CsatMean | UnsetType | None = UNSET  # only for kind csat
    promoters: int
    passives: int
    detractors: int
    surveys_sent: int
    response_rate: Rate | None  # responses / surveys sent; null when none was sent
    alarms: Annotated[
        int, Meta(description="answers that raised an alarm (a score under the survey's threshold)")
    ]
    alarms_open: Annotated[int, Meta(description="alarms whose case is not closed (or that opened none)")]
    alarms_resolved: Annotated[int, Meta(description="alarms whose case is closed")]
    median_time_to_resolve_seconds: Seconds | None


class NpsReport(Struct, kw_only=True):
    kind: Kind
    period: Period
    segment: Segment | None
    survey: str | None
    from_: datetime = msgspec.field(name="from")
    to: datetime
    timezone: str
    rows: list[NpsRow]
    totals: NpsRow
