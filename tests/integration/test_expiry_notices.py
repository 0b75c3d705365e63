"""`points.expiring_soon`: 30 and 7 days before points expire, once each per lot, one event per customer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from service.core.clock import FrozenClock
from service.ledger import jobs
from tests.conftest import START, Api, fetch, idempotency, in_app, iso, verify_ledger

DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
EXPIRE_DAYS = 60
EXPIRES = START + EXPIRE_DAYS * DAY  # when an order placed at START expires (no return window)


async def configure(api: Api, expire_days: int = EXPIRE_DAYS, pending_days: int = 0) -> None:
    response = await api.client.patch(
        "/v1/program",
        json={"points_expire_after_days": expire_days, "pending_days": pending_days},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["points_expire_after_days"] == expire_days
    assert response.json()["pending_days"] == pending_days


async def place(api: Api, external_id: str, customer: str, clock: FrozenClock, euros: int = 90) -> None:
    """An order placed now (by the frozen clock) earning `euros` points."""
    response = await api.order(
        external_id,
        customer,
        lines=[{"sku": "A", "name": "Thing", "quantity": 1, "unit_amount": euros * 100}],
        placed_at=iso(clock.now()),
    )
    assert response.status_code == 201, response.text


async def adjust(api: Api, points: int, customer: str = "c-1") -> None:
    response = await api.client.post(
        f"/v1/customers/{customer}/adjustments",
        json={"points": points, "reason": "correction", "actor": "agent-7"},
        headers=api.headers(**idempotency()),
    )
    assert response.status_code == 201, response.text


def sweep(api: Api, when: datetime, chunk_size: int = 50_000) -> jobs.SweepResult:
    result: jobs.SweepResult = in_app(api.client, jobs.expiry_notices, when, chunk_size)
    return result


def notices(api: Api) -> list[dict[str, Any]]:
    """Every `points.expiring_soon` event so far, oldest first (customer order within one sweep)."""
    rows = fetch(
        api.client,
        "SELECT payload FROM outbox WHERE topic = 'points.expiring_soon'"
        " ORDER BY created_at, payload->>'customer', payload->>'notice_days'",
    )
    events: list[dict[str, Any]] = []
    for row in rows:
        payload = json.loads(row["payload"])
        payload["expires_at"] = datetime.fromisoformat(payload["expires_at"])
        events.append(payload)
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, int, int, int, datetime]]:
    """(customer, notice_days, points, lots, expires_at) per event."""
    return [(e["customer"], e["notice_days"], e["points"], e["lots"], e["expires_at"]) for e in events]


def lot_notice_levels(api: Api) -> list[int]:
    return [r["expiry_notice"] for r in fetch(api.client, "SELECT expiry_notice FROM points_lot ORDER BY id")]


async def test_30_day_then_7_day_notice_then_nothing(api: Api, clock: FrozenClock) -> None:
    """One 30-day notice at 30 days before expiry (not a microsecond earlier), one 7-day notice at 7 days,
    and nothing more on repeated or later sweeps, before or after the points expire."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    for when in (START, EXPIRES - 31 * DAY, EXPIRES - 30 * DAY - TICK):
        assert sweep(api, when).lots == 0
    assert notices(api) == []

    first = sweep(api, EXPIRES - 30 * DAY)
    assert (first.lots, first.points) == (1, 90)
    (event,) = notices(api)
    assert event["type"] == "points.expiring_soon"
    assert summary([event]) == [("c-1", 30, 90, 1, EXPIRES)]
    assert event["id"]

    for when in (EXPIRES - 30 * DAY, EXPIRES - 30 * DAY + TICK, EXPIRES - 20 * DAY, EXPIRES - 7 * DAY - TICK):
        assert sweep(api, when).lots == 0
    assert len(notices(api)) == 1

    second = sweep(api, EXPIRES - 7 * DAY)
    assert (second.lots, second.points) == (1, 90)
    assert summary(notices(api)) == [("c-1", 30, 90, 1, EXPIRES), ("c-1", 7, 90, 1, EXPIRES)]

    for when in (EXPIRES - 7 * DAY, EXPIRES - DAY, EXPIRES - TICK, EXPIRES, EXPIRES + DAY):
        assert sweep(api, when).lots == 0
    expired = in_app(api.client, jobs.expire, EXPIRES)
    assert (expired.lots, expired.points) == (1, 90)
    for when in (EXPIRES, EXPIRES + 400 * DAY):
        assert sweep(api, when).lots == 0
    assert len(notices(api)) == 2
    verify_ledger(api.client)


async def test_a_late_first_sweep_sends_only_the_7_day_notice(api: Api, clock: FrozenClock) -> None:
    """A lot first seen within 7 days of its expiry gets the 7-day notice and never a 30-day one."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    result = sweep(api, EXPIRES - 5 * DAY)
    assert (result.lots, result.points) == (1, 90)
    for when in (EXPIRES - 5 * DAY, EXPIRES - 4 * DAY, EXPIRES - TICK):
        assert sweep(api, when).lots == 0
    assert summary(notices(api)) == [("c-1", 7, 90, 1, EXPIRES)]
    assert lot_notice_levels(api) == [7]


async def test_points_first_swept_at_or_after_expiry_are_not_announced(api: Api, clock: FrozenClock) -> None:
    """A lot that has reached its expiry (even before the expire sweep zeroed it) is past notice."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    for when in (EXPIRES, EXPIRES + TICK, EXPIRES + 30 * DAY):
        assert sweep(api, when).lots == 0
    assert notices(api) == []
    assert lot_notice_levels(api) == [0]


async def test_points_that_expire_within_a_week_of_earning_get_only_the_7_day_notice(
    api: Api, clock: FrozenClock
) -> None:
    """With a 5-day expiry the very first sweep is inside 7 days: one 7-day notice, no 30-day one."""
    await configure(api, expire_days=5)
    await place(api, "o-1", "c-1", clock)
    assert sweep(api, START).lots == 1
    assert sweep(api, START + DAY).lots == 0
    assert summary(notices(api)) == [("c-1", 7, 90, 1, START + 5 * DAY)]


async def test_one_event_per_customer_with_the_lots_summed(api: Api, clock: FrozenClock) -> None:
    """Two lots of one customer due in the same sweep give one event with their summed points and the
    earliest expiry; another customer gets an event of their own; later lots get their own notices."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    await place(api, "o-2", "c-2", clock, euros=50)
    clock.advance(2 * DAY)
    await place(api, "o-3", "c-1", clock, euros=40)
    # Within 30 days of both of c-1's lots (START+60d and START+62d) and of c-2's.
    when = START + 32 * DAY
    result = sweep(api, when)
    assert (result.lots, result.points) == (3, 180)
    assert summary(notices(api)) == [
        ("c-1", 30, 130, 2, EXPIRES),
        ("c-2", 30, 50, 1, EXPIRES),
    ]
    assert sweep(api, when).lots == 0
    # 7 days before the first expiry: only the lots expiring by then.
    week = sweep(api, EXPIRES - 7 * DAY)
    assert (week.lots, week.points) == (2, 140)
    assert summary(notices(api)[2:]) == [("c-1", 7, 90, 1, EXPIRES), ("c-2", 7, 50, 1, EXPIRES)]
    late = sweep(api, EXPIRES + 2 * DAY - 7 * DAY)
    assert (late.lots, late.points) == (1, 40)
    assert summary(notices(api)[4:]) == [("c-1", 7, 40, 1, EXPIRES + 2 * DAY)]
    assert len(notices(api)) == 5
    verify_ledger(api.client)


async def test_a_lot_entering_the_window_later_gets_its_own_30_day_notice(
    api: Api, clock: FrozenClock
) -> None:
    """Notices are per lot: a second lot reaching 30 days after the first was noticed is noticed then,
    with only its own points."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    clock.advance(10 * DAY)
    await place(api, "o-2", "c-1", clock, euros=30)
    sweep(api, EXPIRES - 30 * DAY)
    sweep(api, EXPIRES - 25 * DAY)
    sweep(api, EXPIRES + 10 * DAY - 30 * DAY)
    assert summary(notices(api)) == [
        ("c-1", 30, 90, 1, EXPIRES),
        ("c-1", 30, 30, 1, EXPIRES + 10 * DAY),
    ]


async def test_pending_points_get_no_notice_until_they_are_available(api: Api, clock: FrozenClock) -> None:
    """Points still in the return window are not announced; once matured they get the notice they are
    due then (here already the 7-day one)."""
    await configure(api, expire_days=20, pending_days=14)
    await place(api, "o-1", "c-1", clock)
    available_at, expires_at = START + 14 * DAY, START + 34 * DAY
    for when in (START, expires_at - 30 * DAY, START + 10 * DAY, available_at):
        assert sweep(api, when).lots == 0  # still pending (the mature sweep has not run)
    assert notices(api) == []
    assert in_app(api.client, jobs.mature, START + 28 * DAY).lots == 1
    result = sweep(api, START + 28 * DAY)  # 6 days before expiry
    assert (result.lots, result.points) == (1, 90)
    assert summary(notices(api)) == [("c-1", 7, 90, 1, expires_at)]
    verify_ledger(api.client)


async def test_pending_points_matured_in_time_get_both_notices(api: Api, clock: FrozenClock) -> None:
    """Matured more than 30 days before expiry, a lot gets the usual 30- and 7-day notices."""
    await configure(api, expire_days=40, pending_days=14)
    await place(api, "o-1", "c-1", clock)
    expires_at = START + 54 * DAY
    assert sweep(api, expires_at - 30 * DAY).lots == 0
    in_app(api.client, jobs.mature, START + 14 * DAY)
    assert sweep(api, expires_at - 30 * DAY).lots == 1
    assert sweep(api, expires_at - 7 * DAY).lots == 1
    assert [e["notice_days"] for e in notices(api)] == [30, 7]


async def test_spent_points_are_not_announced(api: Api, clock: FrozenClock) -> None:
    """A lot fully spent by a correction debit gets no notice; a partly spent one announces only what it
    still holds; the ledger stays consistent."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    await place(api, "o-2", "c-2", clock)
    await adjust(api, -90, "c-1")
    await adjust(api, -40, "c-2")
    for when in (EXPIRES - 30 * DAY, EXPIRES - 7 * DAY, EXPIRES - DAY):
        sweep(api, when)
    assert summary(notices(api)) == [("c-2", 30, 50, 1, EXPIRES), ("c-2", 7, 50, 1, EXPIRES)]
    verify_ledger(api.client)


async def test_points_spent_after_the_30_day_notice_get_no_7_day_notice(api: Api, clock: FrozenClock) -> None:
    """Spending the rest of a lot after its 30-day notice leaves nothing to announce at 7 days."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    assert sweep(api, EXPIRES - 30 * DAY).lots == 1
    clock.set(EXPIRES - 20 * DAY)
    await adjust(api, -90)
    assert sweep(api, EXPIRES - 7 * DAY).lots == 0
    assert [e["notice_days"] for e in notices(api)] == [30]
    verify_ledger(api.client)


async def test_goodwill_credits_are_announced_too(api: Api, clock: FrozenClock) -> None:
    """A goodwill credit is a lot with the program's expiry like any other and is announced with the
    customer's other points due in the same sweep."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    await adjust(api, 25)
    assert sweep(api, EXPIRES - 30 * DAY).points == 115
    assert summary(notices(api)) == [("c-1", 30, 115, 2, EXPIRES)]
    verify_ledger(api.client)


async def test_points_without_expiry_are_never_announced(api: Api, clock: FrozenClock) -> None:
    """With no expiry configured nothing is ever due."""
    response = await api.client.patch(
        "/v1/program", json={"points_expire_after_days": None, "pending_days": 0}, headers=api.headers()
    )
    assert response.status_code == 200, response.text
    await place(api, "o-1", "c-1", clock)
    for days in (0, 30, 365, 3650):
        assert sweep(api, START + days * DAY).lots == 0
    assert notices(api) == []


async def test_small_chunks_notice_every_lot_exactly_once(api: Api, clock: FrozenClock) -> None:
    """Sweeping in chunks of one lot still notices each lot once per level (no lot skipped or repeated)."""
    await configure(api)
    for n in range(5):
        await place(api, f"o-{n}", f"c-{n % 3}", clock, euros=10 + n)
    first = sweep(api, EXPIRES - 30 * DAY, chunk_size=1)
    assert (first.lots, first.points) == (5, sum(10 + n for n in range(5)))
    assert sweep(api, EXPIRES - 30 * DAY, chunk_size=1).lots == 0
    week = sweep(api, EXPIRES - 7 * DAY, chunk_size=2)
    assert (week.lots, week.points) == (5, sum(10 + n for n in range(5)))
    assert lot_notice_levels(api) == [7] * 5
    by_level: dict[int, int] = {}
    for event in notices(api):
        by_level[event["notice_days"]] = by_level.get(event["notice_days"], 0) + event["points"]
    assert by_level == {30: 60, 7: 60}
    verify_ledger(api.client)


async def test_a_customer_gets_one_event_per_sweep_even_across_chunks(api: Api, clock: FrozenClock) -> None:
    """A chunk takes every due lot of its customers, so lots that straddle a chunk boundary still make
    one notice (and one `points.matured`) per customer, not one per chunk."""
    await configure(api)
    await place(api, "o-1", "c-1", clock)
    await place(api, "o-2", "c-1", clock)
    sweep(api, EXPIRES - 30 * DAY, chunk_size=1)
    assert [(e["customer"], e["notice_days"], e["points"], e["lots"]) for e in notices(api)] == [
        ("c-1", 30, 180, 2)
    ]
