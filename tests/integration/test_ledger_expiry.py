"""Expiry as customers see it: points past their date are gone before the sweep runs, and changing the
programme's expiry period (PATCH /v1/program) gives the points customers hold new dates by one rule."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from service.core import db
from service.core.clock import FrozenClock
from service.customers import service as customers
from service.ledger import domain, jobs
from service.ledger import service as ledger
from tests.conftest import START, Api, fetch, idempotency, in_app, iso, order_body, verify_ledger
from tests.support.server import encore_serve

DAY = timedelta(days=1)


async def configure(api: Api, **settings: Any) -> dict[str, Any]:
    response = await api.client.patch("/v1/program", json=settings, headers=api.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def place(api: Api, external_id: str, clock: FrozenClock, euros: int, customer: str = "c-1") -> None:
    response = await api.order(
        external_id,
        customer,
        lines=[{"sku": "A", "quantity": 1, "unit_amount": euros * 100}],
        placed_at=iso(clock.now()),
    )
    assert response.status_code == 201, response.text


async def adjust(api: Api, points: int, customer: str = "c-1") -> dict[str, Any]:
    response = await api.client.post(
        f"/v1/customers/{customer}/adjustments",
        json={"points": points, "reason": "goodwill", "actor": "agent-7"},
        headers=api.headers(**idempotency()),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ledger_status(api: Api, now: datetime, customer: str = "c-1") -> dict[str, Any]:
    """The ledger's columns of the customer status at `now`, read by the query the status view runs."""

    async def run() -> dict[str, Any]:
        async with db.connection() as conn:
            row = await customers.get(
                conn, api.program_id, customer, ledger.status_lateral("c.id", 5, "$3"), params=(now,)
            )
        return {
            "available": row["available"],
            "pending": row["pending"],
            "pending_lots": json.loads(row["pending_lots"]),
            "next_expiry": None if row["next_expiry"] is None else json.loads(row["next_expiry"]),
        }

    result: dict[str, Any] = in_app(api.client, run)
    return result


def lots(api: Api) -> list[domain.Lot]:
    rows = fetch(
        api.client,
        "SELECT id, points, remaining, state, available_at, expires_at, created_at, order_id FROM points_lot",
    )
    return [domain.Lot(**row) for row in rows]


def expiry_by_order(api: Api) -> dict[str, tuple[datetime | None, int]]:
    rows = fetch(
        api.client,
        "SELECT o.external_id, l.expires_at, l.expiry_notice FROM points_lot l JOIN orders o ON o.id = l.order_id",
    )
    return {r["external_id"]: (r["expires_at"], r["expiry_notice"]) for r in rows}


async def change_expiry(api: Api, before: int | None, after: int | None, at: datetime) -> dict[str, Any]:
    """PATCH the period and check every lot got the date domain.ExpiryChange gives it (the SQL that writes
    them and the pure rule agree), and the ledger still adds up."""
    held = lots(api)
    body = await configure(api, points_expire_after_days=after)
    assert body["points_expire_after_days"] == after
    change = domain.ExpiryChange(before, after, at)
    expected = {lot.id: change.new_expiry(lot) if change.applies_to(lot) else lot.expires_at for lot in held}
    assert {lot.id: lot.expires_at for lot in lots(api)} == expected
    verify_ledger(api.client)
    return body


# --- points past their date are gone at once ----------------------------------------------------------


async def test_points_past_their_date_are_not_available_before_the_sweep(
    api: Api, clock: FrozenClock
) -> None:
    await configure(api, pending_days=0, points_expire_after_days=30)
    await place(api, "o-1", clock, 50)  # expires START + 30 days
    clock.advance(10 * DAY)
    await place(api, "o-2", clock, 20)  # expires START + 40 days
    clock.set(START + 31 * DAY)  # o-1 is past its date; the expire sweep has not run
    answer = await adjust(api, 5)
    assert answer["available"] == 25  # the goodwill and o-2, not o-1's lapsed 50
    status = ledger_status(api, clock.now())
    assert status["available"] == 25
    next_expiry = status["next_expiry"]
    assert next_expiry["points"] == 20  # not o-1's, at a past date
    assert datetime.fromisoformat(next_expiry["expires_at"]) == START + 40 * DAY
    # The sweep then writes what the customer already saw.
    assert in_app(api.client, jobs.expire, clock.now()).points == 50
    assert ledger_status(api, clock.now())["available"] == 25
    assert (await api.status())["points"]["available"] == 25
    verify_ledger(api.client)


async def test_pending_points_past_their_date_are_not_pending_either(api: Api, clock: FrozenClock) -> None:
    await configure(api, pending_days=14, points_expire_after_days=1)
    await place(api, "o-1", clock, 30)  # pending until START + 14, expires a day after that
    clock.set(START + 16 * DAY)  # neither the mature nor the expire sweep has run
    status = ledger_status(api, clock.now())
    assert (status["available"], status["pending"]) == (0, 0)
    assert status["pending_lots"] == [] and status["next_expiry"] is None
    assert ledger_status(api, START + DAY)["pending"] == 30  # before its date it was pending


async def test_the_status_leaves_out_points_past_their_date(api: Api, clock: FrozenClock) -> None:
    await configure(api, pending_days=0, points_expire_after_days=30)
    await place(api, "o-1", clock, 50)
    clock.set(START + 31 * DAY)
    status = await api.status()
    assert status["points"]["available"] == 0 and status["next_expiring"] is None


# --- changing the expiry period -----------------------------------------------------------------------


async def test_switching_expiry_on_gives_held_points_a_full_period_from_the_switch(
    api: Api, clock: FrozenClock
) -> None:
    await configure(api, pending_days=0)
    await place(api, "o-spent", clock, 10)
    await adjust(api, -10)  # o-spent's lot holds nothing any more: nothing to expire
    await place(api, "o-1", clock, 90)  # available, no expiry
    await place(api, "o-other", clock, 40, customer="c-2")
    await configure(api, pending_days=14)
    await place(api, "o-2", clock, 20)  # pending until START + 14
    switch = clock.advance(10 * DAY)
    body = await change_expiry(api, None, 30, switch)
    change = body["expiry_change"]
    assert change == {
        "kind": "switched_on",
        "from_days": None,
        "to_days": 30,
        "rule": domain.ExpiryChange(None, 30, switch).rule(),
        "customers": 2,
        "lots": 3,
        "points": 90 + 40 + 20,
        "earliest_expires_at": iso(switch + 30 * DAY),  # held points: 30 days after the switch
        "latest_expires_at": iso(START + 14 * DAY + 30 * DAY),  # pending: 30 days after they mature
    }
    dates = expiry_by_order(api)
    assert dates["o-1"] == (switch + 30 * DAY, 0) and dates["o-2"] == (START + 44 * DAY, 0)
    entry = (await api.client.get("/v1/customers/c-1/ledger", headers=api.headers())).json()["items"][0]
    assert entry["kind"] == "expiry_changed" and entry["points"] == 0
    assert entry["explanation"] == (
        "Points expiry switched on (30 days after points become available): 110 points now expire "
        "between 2026-04-11 and 2026-04-15"
    )
    assert entry["actor"].startswith("api key ")
    assert [lot["points"] for lot in entry["details"]["lots"]] == [90, 20]  # soonest date first
    assert entry["details"]["points_expire_after_days"] == {"from": None, "to": 30}
    event = json.loads(
        fetch(api.client, "SELECT payload FROM outbox WHERE topic = 'program.updated' ORDER BY created_at")[
            -1
        ]["payload"]
    )
    assert event["expiry_change"]["lots"] == 3
    # Nobody loses points at once; the 30-day notice comes as usual (at once here: 30 days ahead).
    assert in_app(api.client, jobs.expire, switch).lots == 0
    assert in_app(api.client, jobs.expiry_notices, switch).points == 90 + 40
    assert in_app(api.client, jobs.expire, switch + 30 * DAY).points == 90 + 40
    verify_ledger(api.client)


async def test_switching_expiry_off_keeps_every_held_point_and_lapsed_ones_still_expire(
    api: Api, clock: FrozenClock
) -> None:
    await configure(api, pending_days=0, points_expire_after_days=30)
    await place(api, "o-1", clock, 50)  # expires START + 30
    clock.set(START + 31 * DAY)  # o-1 lapsed, not swept
    await place(api, "o-2", clock, 90)  # expires START + 61
    assert in_app(api.client, jobs.expiry_notices, clock.now()).points == 90  # the 30-day notice
    body = await change_expiry(api, 30, None, clock.now())
    assert body["expiry_change"] == {
        "kind": "switched_off",
        "from_days": 30,
        "to_days": None,
        "rule": "Points no longer expire, including the points held at the change.",
        "customers": 1,
        "lots": 1,
        "points": 90,
        "earliest_expires_at": None,
        "latest_expires_at": None,
    }
    assert expiry_by_order(api)["o-2"] == (None, 0)
    entry = (await api.client.get("/v1/customers/c-1/ledger", headers=api.headers())).json()["items"][0]
    assert entry["explanation"] == "Points expiry switched off: 90 points no longer expire"
    assert in_app(api.client, jobs.expire, clock.now()).points == 50  # o-1 had expired before the change
    assert in_app(api.client, jobs.expire, START + 1000 * DAY).points == 0
    assert ledger_status(api, START + 1000 * DAY)["available"] == 90
    assert (await configure(api, points_expire_after_days=None))["expiry_change"] is None  # no change
    verify_ledger(api.client)


async def test_lengthening_moves_every_held_date_and_notices_warn_again(api: Api, clock: FrozenClock) -> None:
    await configure(api, pending_days=0, points_expire_after_days=30)
    await place(api, "o-1", clock, 50)  # expires START + 30
    clock.set(START + 10 * DAY)
    await place(api, "o-2", clock, 90)  # expires START + 40
    clock.set(START + 33 * DAY)  # o-1 lapsed (not swept); o-2 had its 7-day notice
    in_app(api.client, jobs.expiry_notices, clock.now())
    assert expiry_by_order(api)["o-2"] == (START + 40 * DAY, 7)
    body = await change_expiry(api, 30, 45, clock.now())
    change = body["expiry_change"]
    assert (change["kind"], change["lots"], change["points"]) == ("lengthened", 1, 90)
    assert change["earliest_expires_at"] == change["latest_expires_at"] == iso(START + 55 * DAY)
    assert "moves 15 days later" in change["rule"]
    assert expiry_by_order(api) == {"o-1": (START + 30 * DAY, 0), "o-2": (START + 55 * DAY, 0)}
    assert in_app(api.client, jobs.expire, clock.now()).points == 50  # a lapsed lot is not revived
    notice = in_app(api.client, jobs.expiry_notices, START + 25 * DAY + DAY)  # 30 days before the new date
    assert notice.points == 90
    verify_ledger(api.client)


async def test_shortening_brings_dates_no_nearer_than_the_new_period_after_the_change(
    api: Api, clock: FrozenClock
) -> None:
    await configure(api, pending_days=0, points_expire_after_days=365)
    await place(api, "o-1", clock, 50)  # expires START + 365
    clock.set(START + 100 * DAY)
    await place(api, "o-2", clock, 90)  # expires START + 465
    at = clock.now()
    body = await change_expiry(api, 365, 300, at)
    change = body["expiry_change"]
    # o-1's date is sooner than 300 days after the change: it stays. o-2's comes to 300 days after.
    assert (change["kind"], change["lots"], change["points"]) == ("shortened", 1, 90)
    assert change["earliest_expires_at"] == iso(START + 400 * DAY)
    body = await change_expiry(api, 300, 30, at)
    change = body["expiry_change"]
    assert (change["lots"], change["points"]) == (2, 140)
    assert change["earliest_expires_at"] == change["latest_expires_at"] == iso(at + 30 * DAY)
    assert in_app(api.client, jobs.expire, at + 30 * DAY - timedelta(microseconds=1)).lots == 0
    verify_ledger(api.client)


async def test_an_order_in_flight_when_expiry_is_switched_on_gets_the_new_date(
    api: Api, database_url: str
) -> None:
    """Against a real `encore serve`: the order has read the settings and waits (here on a customer row
    another transaction holds); the change waits for it, then gives its lot the new date too."""
    await api.client.put("/v1/customers/race-1", json={"name": "Ada"}, headers=api.headers())
    body = order_body("o-race", "race-1", placed_at=iso(datetime.now(UTC)))
    with encore_serve(database_url) as base:
        holder = await asyncpg.connect(database_url)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                tx = holder.transaction()
                await tx.start()
                await holder.execute("SELECT 1 FROM customer WHERE external_id = 'race-1' FOR UPDATE")
                order = asyncio.ensure_future(http.post("/v1/orders", json=body, headers=api.headers()))
                await asyncio.sleep(0.5)  # the order has taken the settings as they were, and waits
                change = asyncio.ensure_future(
                    http.patch("/v1/program", json={"points_expire_after_days": 30}, headers=api.headers())
                )
                await asyncio.sleep(0.5)
                assert not change.done(), "the change waits for the order in flight"
                await tx.rollback()
                placed, changed = await order, await change
        finally:
            await holder.close()
    assert placed.status_code == 201 and changed.status_code == 200, (placed.text, changed.text)
    assert changed.json()["expiry_change"]["lots"] == 1
    lot = fetch(api.client, "SELECT available_at, expires_at FROM points_lot")[0]
    assert lot["expires_at"] == lot["available_at"] + 30 * DAY
    verify_ledger(api.client)
