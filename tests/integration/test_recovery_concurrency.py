"""Service recovery under concurrency, through a real `encore serve` process (uvicorn, its own pool) on the
tests' database: two agents spending the program's monthly budget at once never exceed it, nor their caps
per agent, whatever the action; recoveries racing on one case each leave one entry on its timeline; the
same Idempotency-Key sent many times at once is one recovery (and a refused one is none).

Set-up (agent keys, the customer and their order, the settings) goes through the in-process app; only the
recoveries race, all at once, at the server. The server runs on the real clock, so the budget month is the
current one (the program's time zone is UTC): a burst that straddles the turn of a month is skipped, not
judged, since the two months' budgets are apart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tests.conftest import Api, fetch, idempotency, verify_ledger
from tests.integration.test_recovery import complain
from tests.support.server import encore_serve

Request = tuple[str, str, dict[str, Any], dict[str, str]]
OVER_BUDGET = "urn:encore:problem:recovery-over-budget"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    # A pool larger than any burst: the requests meet at the budget's lock, not at the pool.
    with encore_serve(database_url, ENCORE_DB_POOL_MAX="60") as base:
        yield base


async def _burst(base: str, requests: list[Request]) -> list[httpx.Response]:
    """Every request at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        return list(
            await asyncio.gather(
                *(http.request(m, url, json=body, headers=h) for m, url, body, h in requests)
            )
        )


# --- set-up through the in-process app ---------------------------------------------------------------------


class Agent:
    def __init__(self, name: str, key: str, key_id: str) -> None:
        self.name = name
        self.key = key
        self.key_id = UUID(key_id)


async def _agent(api: Api, name: str) -> Agent:
    made = await api.client.post(
        "/v1/api-keys", json={"name": name, "scope": "agent"}, headers=api.headers(**idempotency())
    )
    assert made.status_code == 201, made.text
    return Agent(name, made.json()["api_key"], made.json()["id"])


async def _two_agents(api: Api) -> tuple[Agent, Agent]:
    return await _agent(api, "Mira"), await _agent(api, "Ben")


async def _customer(api: Api, customer: str = "c-1", order: str = "o-1") -> None:
    placed = await api.order(order, customer)
    assert placed.status_code == 201, placed.text


async def _settings(api: Api, budget: int, agent_cap: int | None = None) -> None:
    body: dict[str, Any] = {"monthly_budget": {"amount": budget, "currency": "EUR"}}
    if agent_cap is not None:
        body["agent_monthly_budget"] = {"amount": agent_cap, "currency": "EUR"}
    put = await api.client.put("/v1/recovery/settings", json=body, headers=api.headers())
    assert put.status_code == 200, put.text
    assert put.json()["monthly_budget"] == {"amount": budget, "currency": "EUR"}


# --- the burst and what it wrote ---------------------------------------------------------------------------


def _month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")  # the program's zone is UTC


def _same_month(month: str) -> None:
    """After a burst begun in `month`: skip a test whose burst ran into the next month (its budgets are
    apart, so what it asserts of one month does not hold)."""
    if _month() != month:
        pytest.skip(f"the burst began in {month} and ended in {_month()}")


def _recovery(
    agent: Agent,
    points: int | None = None,
    *,
    customer: str = "c-1",
    key: str | None = None,
    action: dict[str, Any] | None = None,
    **body: Any,
) -> Request:
    headers = {"Authorization": f"Bearer {agent.key}", "Idempotency-Key": key or uuid4().hex}
    payload = {"reason": "parcel lost", "action": action or {"kind": "points", "points": points}, **body}
    return ("POST", f"/v1/customers/{customer}/recovery", payload, headers)


def _key(request: Request) -> str:
    return request[3]["Idempotency-Key"]


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def _recoveries(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        """
        SELECT r.id, r.agent_key_id, r.agent_name, r.action, r.cost_amount, r.currency, r.budget_period,
               r.explanation, r.case_id, c.external_id AS customer, o.external_id AS order_external_id
        FROM recovery r JOIN customer c ON c.id = r.customer_id LEFT JOIN orders o ON o.id = r.order_id
        WHERE r.program_id = $1::uuid ORDER BY r.created_at, r.id
        """,
        api.program_id,
    )


def _recovery_entries(api: Api) -> list[dict[str, Any]]:
    """The ledger's `recovery` entries: one per recovery (its points, or a note of 0 for another action)."""
    return fetch(
        api.client,
        """
        SELECT e.points, e.explanation, e.actor, (e.details->>'recovery_id')::uuid AS recovery_id,
               c.external_id AS customer
        FROM points_entry e JOIN customer c ON c.id = e.customer_id
        WHERE e.program_id = $1::uuid AND e.kind = 'recovery' ORDER BY e.id
        """,
        api.program_id,
    )


def _stored_keys(api: Api, requests: list[Request]) -> set[str]:
    """Which of the requests' Idempotency-Keys are stored (a refused request rolls its key back)."""
    rows = fetch(
        api.client,
        "SELECT key FROM idempotency_key WHERE program_id = $1::uuid AND key = ANY($2::text[])",
        api.program_id,
        [_key(r) for r in requests],
    )
    return {r["key"] for r in rows}


def _given_events(api: Api) -> list[dict[str, Any]]:
    return fetch(
        api.client,
        "SELECT (payload->>'recovery_id')::uuid AS recovery_id FROM outbox WHERE program_id = $1::uuid AND topic = 'recovery.given' ORDER BY seq",
        api.program_id,
    )


async def _budget(server: str, api: Api, month: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        answer = await http.get(f"/v1/recovery/budget?month={month}", headers=api.headers())
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _available(server: str, api: Api, customer: str = "c-1") -> int:
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        answer = await http.get(f"/v1/customers/{customer}", headers=api.headers())
    assert answer.status_code == 200, answer.text
    return int(answer.json()["points"]["available"])


def _eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


def _split(
    requests: list[Request], responses: list[httpx.Response]
) -> tuple[list[tuple[Request, dict[str, Any]]], list[tuple[Request, dict[str, Any]]]]:
    """(request, answer) of the recoveries made and of those refused over budget; anything else fails."""
    made, refused = [], []
    for request, response in zip(requests, responses, strict=True):
        if response.status_code == 201:
            made.append((request, response.json()))
        else:
            assert response.status_code == 409, response.text
            assert response.json()["type"] == OVER_BUDGET, response.text
            refused.append((request, response.json()))
    return made, refused


def _check_written(
    api: Api,
    requests: list[Request],
    made: list[tuple[Request, dict[str, Any]]],
    agents: dict[str, Agent],
    month: str,
) -> list[dict[str, Any]]:
    """What the made recoveries answered is what the database holds, and nothing of the refused ones is
    there: one recovery row each (by the agent whose key sent it), one `recovery` ledger entry each, one
    `recovery.given` event each, and only their Idempotency-Keys. The rows, for more checks."""
    rows = _recoveries(api)
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == sorted(UUID(answer["id"]) for _, answer in made), (rows, made)
    for request, answer in made:
        row = by_id[UUID(answer["id"])]
        agent = agents[request[3]["Authorization"]]
        assert answer["agent"] == {"key_id": str(agent.key_id), "name": agent.name}
        assert (row["agent_key_id"], row["agent_name"]) == (agent.key_id, agent.name)
        assert row["cost_amount"] == answer["cost"]["amount"] and row["currency"] == "EUR"
        assert row["budget_period"] == answer["month"] == month
        assert row["explanation"] == answer["explanation"]
        assert row["action"] == request[2]["action"]["kind"]
        assert answer["explanation"].startswith(f"Recovery by {agent.name}: parcel lost — ")
    entries = _recovery_entries(api)
    assert sorted(e["recovery_id"] for e in entries) == sorted(by_id), entries
    for entry in entries:
        row = by_id[entry["recovery_id"]]
        assert (entry["explanation"], entry["actor"], entry["customer"]) == (
            row["explanation"],
            row["agent_name"],
            row["customer"],
        )
    events = _given_events(api)
    assert sorted(e["recovery_id"] for e in events) == sorted(by_id), events
    assert _stored_keys(api, requests) == {_key(request) for request, _ in made}
    return rows


# --- the program's budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "points", "per_agent"),
    [
        (1000, 300, 5),  # three fit, 100 left
        (1200, 300, 6),  # four fit exactly, nothing left
        (1000, 90, 10),  # eleven of twenty, 10 left
    ],
)
async def test_two_agents_at_once_never_exceed_the_programs_budget(
    api: Api, server: str, budget: int, points: int, per_agent: int
) -> None:
    """At 1 cent a point a recovery of `points` costs `points`: exactly budget // cost of the burst are made,
    each saw all made before it (their budgets left are every step down, once), and the others are 409
    with what is left — the same for all of them, since only a remainder below one recovery refuses."""
    mira, ben = await _two_agents(api)
    await _customer(api)
    await _settings(api, budget)
    cost, fit = points, budget // points
    requests = [_recovery(agent, points, order="o-1") for _ in range(per_agent) for agent in (mira, ben)]
    month = _month()
    responses = await _burst(server, requests)
    _same_month(month)

    made, refused = _split(requests, responses)
    assert len(made) == fit, _statuses(responses)
    assert len(refused) == len(requests) - fit
    left = budget - fit * cost
    for _, problem in refused:
        assert problem["left"] == _eur(left) and problem["cost"] == _eur(cost), problem
        assert problem["month"] == month and problem["agent_left"] is None, problem
        assert "the program's recovery budget" in problem["detail"], problem
    assert sorted(a["budget_left"]["amount"] for _, a in made) == [
        budget - k * cost for k in range(fit, 0, -1)
    ]
    assert all(a["agent_left"] is None and a["given"]["points"] == points for _, a in made)

    agents = {f"Bearer {a.key}": a for a in (mira, ben)}
    rows = _check_written(api, requests, made, agents, month)
    assert sum(r["cost_amount"] for r in rows) == fit * cost <= budget
    assert {(r["customer"], r["order_external_id"]) for r in rows} == {("c-1", "o-1")}
    entries = _recovery_entries(api)
    assert [e["points"] for e in entries] == [points] * fit
    assert await _available(server, api) == fit * points
    verify_ledger(api.client)

    spent = await _budget(server, api, month)
    assert (spent["budget"], spent["used"], spent["left"]) == (_eur(budget), _eur(fit * cost), _eur(left))
    assert spent["recoveries"] == fit and spent["agent_monthly_budget"] is None
    per_name = Counter(r["agent_name"] for r in rows)
    assert {a["name"]: (a["recoveries"], a["used"], a["left"]) for a in spent["agents"]} == {
        name: (per_name[name], _eur(per_name[name] * cost), None) for name in ("Mira", "Ben")
    }


# --- the cap per agent -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "cap", "per_agent"),
    [
        (10_000, 600, 5),  # only the caps bind: two each
        (1_000, 600, 5),  # both bind: three in all, two for one agent and one for the other
    ],
)
async def test_each_agents_cap_holds_under_a_burst_from_both(
    api: Api, server: str, budget: int, cap: int, per_agent: int
) -> None:
    mira, ben = await _two_agents(api)
    await _customer(api)
    await _settings(api, budget, cap)
    cost = 300
    per_cap, fit = cap // cost, min(budget // cost, 2 * (cap // cost))
    requests = [_recovery(agent, cost) for _ in range(per_agent) for agent in (mira, ben)]
    month = _month()
    responses = await _burst(server, requests)
    _same_month(month)

    made, refused = _split(requests, responses)
    assert len(made) == fit, _statuses(responses)
    agents = {f"Bearer {a.key}": a for a in (mira, ben)}
    by_agent = Counter(agents[request[3]["Authorization"]].name for request, _ in made)
    assert max(by_agent.values()) <= per_cap and sum(by_agent.values()) == fit, by_agent
    if budget >= 2 * cap:
        assert by_agent == {"Mira": per_cap, "Ben": per_cap}
    for name in ("Mira", "Ben"):  # each agent's made recoveries saw theirs before: every step down, once
        lefts = sorted(
            a["agent_left"]["amount"] for r, a in made if agents[r[3]["Authorization"]].name == name
        )
        assert lefts == [cap - k * cost for k in range(by_agent[name], 0, -1)], (name, lefts)
    for request, problem in refused:
        name = agents[request[3]["Authorization"]].name
        assert problem["agent_left"] is not None, problem
        if problem["left"]["amount"] < cost:  # the program's budget refused it: it was spent to the last
            assert problem["left"] == _eur(budget - fit * cost), problem
            assert "the program's recovery budget" in problem["detail"], problem
        else:  # the agent's cap refused it: they had spent it all
            assert problem["agent_left"] == _eur(cap - per_cap * cost) and by_agent[name] == per_cap, problem
            assert f"{name}'s recovery budget" in problem["detail"], problem
        assert problem["cost"] == _eur(cost) and problem["month"] == month, problem

    rows = _check_written(api, requests, made, agents, month)
    assert sum(r["cost_amount"] for r in rows) == fit * cost <= budget
    for name in ("Mira", "Ben"):
        assert sum(r["cost_amount"] for r in rows if r["agent_name"] == name) <= cap
    assert await _available(server, api) == fit * cost
    verify_ledger(api.client)

    spent = await _budget(server, api, month)
    assert spent["used"] == _eur(fit * cost) and spent["left"] == _eur(budget - fit * cost)
    assert spent["agent_monthly_budget"] == _eur(cap)
    assert {a["name"]: (a["recoveries"], a["used"], a["left"]) for a in spent["agents"]} == {
        name: (by_agent[name], _eur(by_agent[name] * cost), _eur(cap - by_agent[name] * cost))
        for name in ("Mira", "Ben")
    }


# --- every kind of action, one budget ----------------------------------------------------------------------


async def test_points_codes_and_gifts_at_once_spend_one_budget(api: Api, server: str) -> None:
    """Points, a catalogue reward as a code and a gift rule's gifts, each worth EUR 3, for two customers
    from both agents at once: three fit the EUR 10, and only they left a code, a gift or points behind."""
    mira, ben = await _two_agents(api)
    await _customer(api, "c-1", "o-1")
    await _customer(api, "c-2", "o-2")
    await _settings(api, 1000)
    reward = await api.client.post(
        "/v1/rewards",
        json={
            "kind": "amount_off",
            "name": {"en": "EUR 3 off"},
            "cost_points": 50,
            "amount": {"amount": 300, "currency": "EUR"},
        },
        headers=api.headers(**idempotency()),
    )
    assert reward.status_code == 201, reward.text
    rule = await api.client.post(
        "/v1/gift-rules",
        json={
            "name": "Sorry points",
            "trigger": {"kind": "random_share", "share": "1"},
            "gifts": [{"kind": "points", "points": 300}],
            "holdout": "0",
            "status": "draft",  # the agents' template: it gives nothing on its own
        },
        headers=api.headers(**idempotency()),
    )
    assert rule.status_code == 201, rule.text
    actions = [
        {"kind": "points", "points": 300},
        {"kind": "reward", "reward_id": reward.json()["id"]},
        {"kind": "gift", "gift_rule_id": rule.json()["id"]},
    ]
    requests = [
        _recovery(agent, action=action, customer=customer)
        for action in actions
        for customer in ("c-1", "c-2")
        for agent in (mira, ben)
    ]
    month = _month()
    responses = await _burst(server, requests)
    _same_month(month)

    made, refused = _split(requests, responses)
    assert len(made) == 3, _statuses(responses)
    assert all(p["left"] == _eur(100) and p["cost"] == _eur(300) for _, p in refused), refused
    assert sorted(a["budget_left"]["amount"] for _, a in made) == [100, 400, 700]
    agents = {f"Bearer {a.key}": a for a in (mira, ben)}
    rows = _check_written(api, requests, made, agents, month)
    assert sum(r["cost_amount"] for r in rows) == 900

    kinds = Counter((r["action"], r["customer"]) for r in rows)
    codes = fetch(
        api.client,
        "SELECT c.external_id AS customer, r.code, r.source_key FROM redemption r "
        "JOIN customer c ON c.id = r.customer_id WHERE r.program_id = $1::uuid AND r.source = 'recovery'",
        api.program_id,
    )
    assert Counter(("reward", c["customer"]) for c in codes) == {
        k: n for k, n in kinds.items() if k[0] == "reward"
    }
    answered_codes = {a["given"]["code"] for _, a in made if a["given"]["kind"] == "reward"}
    assert {c["code"] for c in codes} == answered_codes
    gifts = fetch(
        api.client,
        "SELECT g.id, g.outcome, c.external_id AS customer FROM gift g JOIN customer c ON c.id = g.customer_id "
        "WHERE g.program_id = $1::uuid",
        api.program_id,
    )
    assert Counter(("gift", g["customer"]) for g in gifts) == {
        k: n for k, n in kinds.items() if k[0] == "gift"
    }
    assert {g["outcome"] for g in gifts} <= {"recovery"}
    assert {g["id"] for g in gifts} == {
        UUID(a["given"]["gift_id"]) for _, a in made if a["given"]["kind"] == "gift"
    }
    credited = fetch(
        api.client,
        "SELECT c.external_id AS customer, coalesce(sum(e.points), 0) AS points FROM points_entry e "
        "JOIN customer c ON c.id = e.customer_id WHERE e.program_id = $1::uuid AND e.kind IN ('recovery', 'gift') "
        "GROUP BY c.external_id",
        api.program_id,
    )
    points = {c["customer"]: int(c["points"]) for c in credited}
    for customer in ("c-1", "c-2"):
        expected = 300 * (kinds[("points", customer)] + kinds[("gift", customer)])
        assert points.get(customer, 0) == expected, (customer, points, kinds)
        assert await _available(server, api, customer) == expected
    verify_ledger(api.client)
    spent = await _budget(server, api, month)
    assert (spent["used"], spent["left"], spent["recoveries"]) == (_eur(900), _eur(100), 3)


# --- recoveries racing on one case -------------------------------------------------------------------------


async def test_recoveries_at_once_on_one_case_each_leave_one_entry(api: Api, server: str) -> None:
    """A complaint's case, and ten recoveries on it from both agents at once: the three that fit are on its
    timeline once each, it counts them and their cost, and its first action is one of theirs (and its
    agent that recovery's agent) — set once, not overwritten by the later ones."""
    mira, ben = await _two_agents(api)
    await _customer(api)
    await _settings(api, 1000)
    complaint = await complain(api, properties={"reason": "parcel lost"})
    case_id = complaint["case_id"]
    requests = [_recovery(agent, 300, case_id=case_id) for _ in range(5) for agent in (mira, ben)]
    month = _month()
    responses = await _burst(server, requests)
    _same_month(month)

    made, _refused = _split(requests, responses)
    assert len(made) == 3, _statuses(responses)
    assert all(a["case_id"] == case_id for _, a in made)
    agents = {f"Bearer {a.key}": a for a in (mira, ben)}
    rows = _check_written(api, requests, made, agents, month)
    assert {r["case_id"] for r in rows} == {UUID(case_id)}

    timeline = fetch(
        api.client,
        "SELECT kind, recovery_id, text FROM case_entry WHERE case_id = $1::uuid ORDER BY id",
        case_id,
    )
    assert [e["kind"] for e in timeline] == ["opened", "recovery", "recovery", "recovery"], timeline
    assert sorted(e["recovery_id"] for e in timeline[1:]) == sorted(r["id"] for r in rows)
    [case] = fetch(
        api.client,
        "SELECT status, first_action_at, agent_key_id, agent_name FROM service_case WHERE id = $1::uuid",
        case_id,
    )
    first = [a for _, a in made if datetime.fromisoformat(a["created_at"]) == case["first_action_at"]]
    assert len(first) >= 1, (case, made)
    assert {(a["agent"]["key_id"], a["agent"]["name"]) for a in first} >= {
        (str(case["agent_key_id"]), case["agent_name"])
    }, (case, first)
    assert case["status"] == "open"
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        shown = (await http.get(f"/v1/cases/{case_id}", headers=api.headers())).json()
    assert shown["recoveries"] == 3 and shown["recovery_cost"] == _eur(900), shown
    assert [e["kind"] for e in shown["entries"]] == ["opened", "recovery", "recovery", "recovery"]
    verify_ledger(api.client)


# --- one Idempotency-Key, many times at once ---------------------------------------------------------------


async def test_one_key_sent_five_times_at_once_is_one_recovery(api: Api, server: str) -> None:
    """A concurrent duplicate waits on the key's unique index until the first commits, then replays its
    answer (service.core.idempotency): all five are 201 with the very same bytes, four of them marked
    replayed, and there is one recovery, one credit, one stored key — never a 409 "in progress"."""
    mira = await _agent(api, "Mira")
    await _customer(api)
    await _settings(api, 1000)
    request = _recovery(mira, 300, key="sorry-once")
    month = _month()
    responses = await _burst(server, [request] * 5)
    _same_month(month)

    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # byte for byte the first answer
    assert Counter(r.headers.get("Idempotent-Replayed") for r in responses) == {None: 1, "true": 4}
    answer = responses[0].json()
    assert answer["budget_left"] == _eur(700)
    rows = _check_written(api, [request], [(request, answer)], {f"Bearer {mira.key}": mira}, month)
    assert [r["cost_amount"] for r in rows] == [300]
    assert [e["points"] for e in _recovery_entries(api)] == [300]
    assert await _available(server, api) == 300
    spent = await _budget(server, api, month)
    assert (spent["used"], spent["recoveries"]) == (_eur(300), 1)
    verify_ledger(api.client)


async def test_one_key_with_two_bodies_at_once_is_the_first_bodys_recovery(api: Api, server: str) -> None:
    """Five requests of 300 points and five of 200 under one key, all at once: whichever claims the key
    first is made, the requests with its body replay it, the others are 409 `idempotency-key-reused`."""
    mira = await _agent(api, "Mira")
    await _customer(api)
    await _settings(api, 1000)
    requests = [_recovery(mira, points, key="one-key") for points in (300, 200) for _ in range(5)]
    month = _month()
    responses = await _burst(server, requests)
    _same_month(month)

    made = [(q, r) for q, r in zip(requests, responses, strict=True) if r.status_code == 201]
    assert len({q[2]["action"]["points"] for q, _ in made}) == 1, [r.text for r in responses]
    points = made[0][0][2]["action"]["points"]
    for request, response in zip(requests, responses, strict=True):
        if request[2]["action"]["points"] == points:
            assert response.status_code == 201, response.text
        else:
            assert response.status_code == 409, response.text
            assert response.json()["type"] == "urn:encore:problem:idempotency-key-reused", response.text
    assert len(made) == 5 and len({r.content for _, r in made}) == 1
    assert Counter(r.headers.get("Idempotent-Replayed") for _, r in made) == {None: 1, "true": 4}
    answer = made[0][1].json()
    rows = _check_written(api, [made[0][0]], [(made[0][0], answer)], {f"Bearer {mira.key}": mira}, month)
    assert [r["cost_amount"] for r in rows] == [points]
    assert await _available(server, api) == points
    verify_ledger(api.client)


async def test_one_key_over_budget_five_times_at_once_changes_nothing(api: Api, server: str) -> None:
    """Refused, a request rolls its key back: each of five duplicates at once gets the key in turn, is
    refused in turn, and nothing is kept — so once the budget allows, the same key makes the recovery."""
    mira = await _agent(api, "Mira")
    await _customer(api)
    await _settings(api, 100)
    request = _recovery(mira, 300, key="too-dear")
    month = _month()
    responses = await _burst(server, [request] * 5)
    _same_month(month)

    assert [r.status_code for r in responses] == [409] * 5, [r.text for r in responses]
    assert all(r.json()["type"] == OVER_BUDGET and r.json()["left"] == _eur(100) for r in responses)
    assert all("Idempotent-Replayed" not in r.headers for r in responses)  # refused each time, not replayed
    assert _check_written(api, [request], [], {}, month) == []
    assert _recovery_entries(api) == [] and await _available(server, api) == 0

    await _settings(api, 1000)
    [retried] = await _burst(server, [request])
    _same_month(month)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    rows = _check_written(api, [request], [(request, retried.json())], {f"Bearer {mira.key}": mira}, month)
    assert [r["cost_amount"] for r in rows] == [300]
    verify_ledger(api.client)
