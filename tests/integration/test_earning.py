"""The earning pipeline's two fixes of the reshaping: the order's answer shows the tier change it
caused, and a rule simulation sees each past order with the tier its customer held when it was placed
(not the tier they hold today)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.core.clock import FrozenClock
from tests.conftest import START, Api, iso, table_counts

SILVER = {
    "key": "silver",
    "name": "Silver",
    "rank": 1,
    "qualification": {"metric": "spend", "threshold": {"amount": 15000, "currency": "EUR"}},
}
SILVER_BONUS = {
    "name": "Silver bonus",
    "priority": 5,
    "stacking": "stack",
    "conditions": {"field": "customer.tier", "op": "eq", "value": "silver"},
    "effect": {"kind": "fixed", "points": 10},
    "status": "draft",
}


async def _create(api: Api, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    response = await api.client.post(path, json=body, headers=api.headers(**{"Idempotency-Key": key}))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_the_order_that_lifts_the_tier_says_so_and_a_replay_says_the_same(api: Api) -> None:
    await _create(api, "/v1/tiers", SILVER, "tier-silver")
    first = await api.order("o-1", key="k-1")  # EUR 90.00: below Silver
    assert first.status_code == 201, first.text
    assert first.json()["tier_change"] is None
    second = await api.order("o-2", key="k-2")  # EUR 180.00 in all: Silver, in this order's transaction
    assert second.status_code == 201, second.text
    assert second.json()["tier_change"] == {
        "change": "upgrade",
        "from_tier": None,
        "to_tier": {"key": "silver", "name": "Silver", "rank": 1},
        "reason": "order o-2: spend over 12 months EUR 180.00 (Silver needs EUR 150.00)",
    }
    replay = await api.order("o-2", key="k-2")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == second.json()
    third = await api.order("o-3", key="k-3")  # already Silver: nothing changes
    assert third.json()["tier_change"] is None


async def test_a_simulation_applies_the_tier_held_when_each_order_was_placed(
    api: Api, clock: FrozenClock
) -> None:
    await _create(api, "/v1/tiers", SILVER, "tier-silver")
    # Three orders a day apart, each recorded as it is placed: the second lifts the customer to Silver.
    for day in range(3):
        clock.set(START + timedelta(days=day))
        response = await api.order(f"o-{day}", placed_at=iso(clock.now()))
        assert response.status_code == 201, response.text
    assert (await api.status())["tier"]["tier"]["key"] == "silver"
    draft = await _create(api, "/v1/rules", SILVER_BONUS, "rule-silver-bonus")
    before = table_counts(api.client)
    response = await api.client.post(
        f"/v1/rules/{draft['id']}/simulate",
        json={"from": iso(START), "to": iso(START + timedelta(days=3))},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["orders_replayed"] == 3
    # Only the third order was placed by a Silver customer: the first came before the tier, and the
    # second earned at the tier held before it (the upgrade it caused came after its points).
    assert (result["orders_affected"], result["extra_points"]) == (1, 10)
    assert table_counts(api.client) == before
