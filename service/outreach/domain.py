"""Journeys without I/O: when each step falls due, whether a due step still goes or the customer leaves
the journey (and why), and that journeys chained by completion never loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.messaging.catalogue import MESSAGE_TYPES
from service.outreach.schemas import JourneyIn, StepIn


def step_offsets(steps: list[StepIn]) -> list[int]:
    """Seconds from the trigger to each step (the delays add up)."""
    total, offsets = 0, []
    for step in steps:
        total += ((step.delay.days * 24 + step.delay.hours) * 60 + step.delay.minutes) * 60
        offsets.append(total)
    return offsets


def find_cycle(journeys: Mapping[str, str | None]) -> list[str] | None:
    """`journeys`: key -> the key whose completion triggers it (or None). A loop, if there is one."""
    for start in journeys:
        path, seen, key = [start], {start}, journeys.get(start)
        while key is not None and key in journeys:
            path.append(key)
            if key in seen:
                return path[path.index(key) :]
            seen.add(key)
            key = journeys.get(key)
    return None


# Message types that show a code, and the triggers that give their message one (a step's own reward
# gives a code to every type that shows one).
CODE_MESSAGE_TYPES = tuple(key for key, kind in MESSAGE_TYPES.items() if "code" in kind.variables)
_CODE_TRIGGERS = {"reward_issued": ("reward_issued", "code_expiring"), "code_expiring": ("code_expiring",)}


def problems(journey: JourneyIn) -> list[tuple[str, str]]:
    """(field, problem) pairs the schema cannot express."""
    found: list[tuple[str, str]] = []
    trigger = journey.trigger
    if trigger.kind == "event" and not trigger.event_type:
        found.append(("trigger.event_type", "an event trigger names the event type"))
    if trigger.kind == "inactivity" and not trigger.days:
        found.append(("trigger.days", "an inactivity trigger says after how many days without an order"))
    if trigger.kind == "journey_completed" and not trigger.journey:
        found.append(("trigger.journey", "a journey_completed trigger names the journey"))
    if trigger.kind == "journey_completed" and trigger.journey == journey.key:
        found.append(("trigger.journey", f"journey {journey.key!r} cannot follow itself (a cycle)"))
    if len(set(journey.exit_on)) != len(journey.exit_on):
        found.append(("exit_on", "an exit condition is listed twice"))
    for index, step in enumerate(journey.steps):
        kind = MESSAGE_TYPES[step.message_type]
        if kind.category == "staff":
            found.append(
                (
                    f"steps[{index}].message_type",
                    f"a {step.message_type} message goes to staff, not to customers",
                )
            )
        elif step.message_type == "survey" and trigger.kind != "survey_due":
            found.append(
                (
                    f"steps[{index}].message_type",
                    "a survey message asks the survey that is due: the journey's trigger is survey_due",
                )
            )
        elif step.message_type == "promoter_ask" and trigger.kind != "promoter":
            found.append(
                (
                    f"steps[{index}].message_type",
                    "a promoter_ask message answers a promoter's score: the journey's trigger is promoter",
                )
            )
        elif step.reward is not None and "code" not in kind.variables:
            found.append(
                (
                    f"steps[{index}].reward",
                    f"a {step.message_type} message does not show a code: "
                    f"send the reward with one that does ({', '.join(CODE_MESSAGE_TYPES)})",
                )
            )
        elif (
            kind.needs_code and step.reward is None and trigger.kind not in _CODE_TRIGGERS[step.message_type]
        ):
            found.append(
                (
                    f"steps[{index}].message_type",
                    f"a {step.message_type} message sends a code: "
                    + (
                        "attach a reward to the step (reward) or trigger the journey on reward_issued"
                        if step.message_type == "reward_issued"
                        else "the journey's trigger is code_expiring"
                    ),
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class DueStep:
    """An enrollment whose next step is due, with the facts the exits look at."""

    exit_on: frozenset[str]
    journey_live: bool  # enabled and not deleted
    unsubscribed_all: bool
    marketing_consent: bool
    ordered_since_entry: bool
    trigger_order_refunded: bool


def exit_reason(due: DueStep, step: StepIn) -> str | None:
    """Why the customer leaves instead of getting the step, or None."""
    if not due.journey_live:
        return "the journey was turned off"
    if "ordered_again" in due.exit_on and due.ordered_since_entry:
        return "ordered again"
    if "refunded" in due.exit_on and due.trigger_order_refunded:
        return "the order was refunded"
    if "unsubscribed" in due.exit_on:
        if due.unsubscribed_all:
            return "unsubscribed"
        if MESSAGE_TYPES[step.message_type].category == "marketing" and not due.marketing_consent:
            return "no marketing consent"
    return None


def next_due(anchor: datetime, offsets: list[int], step: int) -> datetime | None:
    """When step `step` falls due; None past the last step."""
    return anchor + timedelta(seconds=offsets[step]) if step < len(offsets) else None
