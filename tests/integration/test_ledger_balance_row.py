"""`customer_balance` is the ledger's: the row comes with the customer's first change of points, not with
the customer. Without one, every reader sees zeros, a debit has nothing to spend, and `encore ledger
verify` still finds lots or entries that have no balance to match."""

from __future__ import annotations

from service.ledger import jobs
from tests.conftest import Api, fetch, idempotency, in_app, table_counts, verify_ledger


def balance_rows(api: Api) -> int:
    return int(fetch(api.client, "SELECT count(*) AS n FROM customer_balance")[0]["n"])


async def test_a_customer_has_no_balance_row_until_points_change(api: Api) -> None:
    created = await api.client.put("/v1/customers/c-1", json={"name": "Ann"}, headers=api.headers())
    assert created.status_code in (200, 201), created.text
    assert balance_rows(api) == 0
    status = await api.status()
    assert status["points"] == {"available": 0, "pending": 0, "debt": 0, "lifetime_earned": 0}
    assert status["pending"] == [] and status["recent_entries"] == []
    # A debit takes the balance lock (made for it) and finds nothing to spend: refused, nothing left behind.
    before = table_counts(api.client)
    debit = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": -5, "reason": "correction", "actor": "agent-7"},
        headers=api.headers(**idempotency()),
    )
    assert debit.status_code == 409, debit.text
    assert debit.json()["available"] == 0
    assert table_counts(api.client) == before
    verify_ledger(api.client)
    # The first points make the row, in the ledger's own statements.
    await api.order("o-1")
    [row] = fetch(api.client, "SELECT available, pending, lifetime_earned FROM customer_balance")
    assert row["available"] + row["pending"] == row["lifetime_earned"] == 90
    verify_ledger(api.client)


async def test_verify_finds_points_without_a_balance_row(api: Api) -> None:
    await api.order("o-1")
    fetch(api.client, "DELETE FROM customer_balance RETURNING customer_id")
    report = in_app(api.client, jobs.verify)
    assert not report.ok
    assert "cached points held differ from the sum of the entries" in report.problems
    [problem] = report.problems["cached points held differ from the sum of the entries"]
    assert (problem["cached"], problem["derived"]) == (0, 90)
