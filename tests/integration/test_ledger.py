"""Adjustments, the ledger listing, and the set-based sweeps (mature, expire, verify) with a moving clock."""

from __future__ import annotations

from datetime import timedelta

from service.core.clock import FrozenClock
from service.ledger import jobs
from tests.conftest import START, Api, fetch, idempotency, in_app, iso, table_counts, verify_ledger


async def adjust(
    api: Api, points: int, reason: str = "goodwill", customer: str = "c-1", **headers: str
) -> object:
    return await api.client.post(
        f"/v1/customers/{customer}/adjustments",
        json={"points": points, "reason": reason, "actor": "agent-7"},
        headers=api.headers(**{**idempotency(), **headers}),
    )


async def test_goodwill_credit_and_correction_debit(api: Api) -> None:
    await api.client.put("/v1/customers/c-1", json={"name": "Ann"}, headers=api.headers())
    credit = await adjust(api, 25, "late delivery")
    assert credit.status_code == 201, credit.text
    body = credit.json()
    assert body["available"] == 25
    assert body["entries"][0]["explanation"] == "Manual adjustment by agent-7: late delivery"
    assert body["entries"][0]["actor"] == "agent-7"
    debit = await adjust(api, -10, "double-counted gesture")
    assert debit.json()["available"] == 15
    overdraw = await adjust(api, -16, "too much")
    assert overdraw.status_code == 409
    assert overdraw.json()["available"] == 15
    topics = {r["topic"] for r in fetch(api.client, "SELECT topic FROM outbox")}
    assert "points.adjusted" in topics
    verify_ledger(api.client)


async def test_adjustment_needs_a_reason_and_a_known_customer(api: Api) -> None:
    await api.client.put("/v1/customers/c-1", json={}, headers=api.headers())
    before = table_counts(api.client)
    no_reason = await api.client.post(
        "/v1/customers/c-1/adjustments", json={"points": 5}, headers=api.headers(**idempotency())
    )
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    blank = await adjust(api, 5, "   ")
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    zero = await adjust(api, 0)
    assert zero.status_code == 422 and zero.json()["field"] == "points"
    unknown = await adjust(api, 5, customer="ghost")
    assert unknown.status_code == 404
    assert table_counts(api.client) == before


async def test_adjustment_replay_with_idempotency_key(api: Api) -> None:
    await api.client.put("/v1/customers/c-1", json={}, headers=api.headers())
    first = await adjust(api, 10, **{"Idempotency-Key": "adj-1"})
    again = await adjust(api, 10, **{"Idempotency-Key": "adj-1"})
    assert again.json() == first.json()
    assert (await api.status())["points"]["available"] == 10


async def test_ledger_is_newest_first_with_cursor_pagination(api: Api) -> None:
    await api.client.put("/v1/customers/c-1", json={}, headers=api.headers())
    for points in range(1, 8):
        await adjust(api, points, f"gesture {points}")
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/v1/customers/c-1/ledger", params=params, headers=api.headers())).json()
        seen.extend(entry["points"] for entry in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    bad = await api.client.get("/v1/customers/c-1/ledger", params={"cursor": "!!"}, headers=api.headers())
    assert bad.status_code == 422 and bad.json()["field"] == "query:cursor"
    too_many = await api.client.get(
        "/v1/customers/c-1/ledger", params={"limit": "1000"}, headers=api.headers()
    )
    assert too_many.status_code in (400, 422)


async def test_points_mature_after_the_return_window_and_expire_per_lot(api: Api, clock: FrozenClock) -> None:
    await api.client.patch("/v1/program", json={"points_expire_after_days": 365}, headers=api.headers())
    await api.order("o-1")  # 90 points, available after 14 days, expire a year after that
    clock.advance(timedelta(days=10))
    await api.order(
        "o-2", lines=[{"sku": "A", "quantity": 1, "unit_amount": 2000}], placed_at=iso(clock.now())
    )
    assert in_app(api.client, jobs.mature, START + timedelta(days=13)).lots == 0
    result = in_app(api.client, jobs.mature, START + timedelta(days=14))
    assert (result.lots, result.points) == (1, 90)
    status = await api.status()
    assert status["points"]["available"] == 90 and status["points"]["pending"] == 20
    assert status["next_expiring"] == {"points": 90, "expires_at": iso(START + timedelta(days=14 + 365))}
    assert in_app(api.client, jobs.mature, START + timedelta(days=14)).lots == 0  # idempotent

    in_app(api.client, jobs.mature, START + timedelta(days=24))
    expired = in_app(api.client, jobs.expire, START + timedelta(days=14 + 365))
    assert (expired.lots, expired.points) == (1, 90)
    status = await api.status()
    assert status["points"]["available"] == 20
    assert status["recent_entries"][0]["kind"] == "expire"
    assert status["recent_entries"][0]["explanation"] == "90 points from order o-1 expired on 2027-03-16"
    assert in_app(api.client, jobs.expire, START + timedelta(days=14 + 365)).lots == 0
    topics = {r["topic"] for r in fetch(api.client, "SELECT topic FROM outbox")}
    assert {"points.matured", "points.expired"} <= topics
    verify_ledger(api.client)


async def test_spending_is_fifo_by_expiry(api: Api, clock: FrozenClock) -> None:
    await api.client.patch(
        "/v1/program", json={"pending_days": 0, "points_expire_after_days": 100}, headers=api.headers()
    )
    await api.order("o-1", lines=[{"sku": "A", "quantity": 1, "unit_amount": 3000}])
    clock.advance(timedelta(days=5))
    await api.order(
        "o-2", lines=[{"sku": "A", "quantity": 1, "unit_amount": 3000}], placed_at=iso(clock.now())
    )
    await adjust(api, -40, "voucher")
    lots = fetch(
        api.client, "SELECT o.external_id, l.remaining FROM points_lot l JOIN orders o ON o.id = l.order_id"
    )
    assert {r["external_id"]: r["remaining"] for r in lots} == {"o-1": 0, "o-2": 20}


async def test_verify_reports_a_tampered_balance(api: Api) -> None:
    await api.order("o-1")
    verify_ledger(api.client)
    fetch(api.client, "UPDATE customer_balance SET pending = pending + 1 RETURNING customer_id")
    report = in_app(api.client, jobs.verify)
    assert not report.ok
    assert "cached pending differs from its pending lots" in report.problems


async def test_status_of_unknown_customer_is_404(api: Api) -> None:
    response = await api.client.get("/v1/customers/ghost", headers=api.headers())
    assert response.status_code == 404
    assert response.json()["field"] == "path:external_id"


async def test_one_sweep_maturing_and_expiring_many_lots_gives_each_event_its_own_id(api: Api) -> None:
    # Regression: a LATERAL gen_random_uuid() ran once per statement and gave every event the same id.
    await api.client.patch("/v1/program", json={"points_expire_after_days": 10}, headers=api.headers())
    for n in range(3):
        await api.order(f"o-{n}", customer=f"c-{n % 2}")
    assert in_app(api.client, jobs.mature, START + timedelta(days=14)).lots == 3
    assert in_app(api.client, jobs.expire, START + timedelta(days=24)).lots == 3
    events = fetch(
        api.client, "SELECT id, topic FROM outbox WHERE topic IN ('points.matured', 'points.expired')"
    )
    # One event per customer per sweep, each with its own id.
    assert len(events) == 4 and len({e["id"] for e in events}) == 4
    verify_ledger(api.client)


async def test_sweeps_in_tiny_chunks_walk_every_lot_once(api: Api) -> None:
    # Lots sharing one timestamp straddle chunk boundaries: the (time, id) keyset must neither skip nor repeat.
    await api.client.patch("/v1/program", json={"points_expire_after_days": 10}, headers=api.headers())
    for n in range(5):
        await api.order(f"o-{n}", customer=f"c-{n % 3}")
    matured = in_app(api.client, jobs.mature, START + timedelta(days=14), 1)
    # A chunk takes all due lots of its customers: three customers, three chunks of one lot's customer.
    assert (matured.lots, matured.points, matured.chunks) == (5, 450, 3)
    expired = in_app(api.client, jobs.expire, START + timedelta(days=24), 2)
    assert (expired.lots, expired.points) == (5, 450) and expired.chunks <= 3
    for topic in ("points.matured", "points.expired"):  # one event per customer, not one per chunk
        rows = fetch(api.client, "SELECT payload FROM outbox WHERE topic = $1", topic)
        assert len(rows) == 3, topic
    verify_ledger(api.client)
