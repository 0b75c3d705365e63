"""Scopes as sets of permissions: every operation of the app held to the documented table, read off the
app's own route handlers and guards, and tried over HTTP with a key of each scope."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Litestar

from service.app import create_app
from service.core.auth import PUBLIC_PATHS, SCOPE_NAMES, SCOPES, Permission, Requires, Scope, scopes_with
from service.settings import Settings
from tests.conftest import ROOT, Api, order_body

READ, RECORD, ADJUST, RECOVER, CONFIGURE, ADMINISTER = (
    Permission.READ,
    Permission.RECORD,
    Permission.ADJUST,
    Permission.RECOVER,
    Permission.CONFIGURE,
    Permission.ADMINISTER,
)

DOUBLE = {"name": "Double", "priority": 10, "effect": {"kind": "multiplier", "multiplier": "2"}}
TEMPLATE = {
    "message_type": "points_expiring",
    "locale": "en",
    "subject": "Your points expire",
    "text": "{{ greeting }}\n{{ date(expires_on) }}",
    "html": "<p>{{ greeting }}</p>",
}

# The documented table, per operation: the permission it needs (README "Scopes" says which scopes hold it).
OPERATIONS: dict[str, Permission] = {
    "GET /v1/program": READ,
    "PATCH /v1/program": ADMINISTER,
    "GET /v1/api-keys": ADMINISTER,
    "POST /v1/api-keys": ADMINISTER,
    "DELETE /v1/api-keys/{key_id:str}": ADMINISTER,
    "PUT /v1/customers/{external_id:str}": RECORD,
    "GET /v1/customers/{external_id:str}": READ,
    "POST /v1/customers/{external_id:str}/adjustments": ADJUST,
    "GET /v1/customers/{external_id:str}/ledger": READ,
    "GET /v1/customers/{external_id:str}/tier": READ,
    "POST /v1/customers/{external_id:str}/tier": ADJUST,
    "GET /v1/customers/{external_id:str}/tier-history": READ,
    "POST /v1/orders": RECORD,
    "POST /v1/orders/quote": READ,
    "GET /v1/orders/{external_id:str}": READ,
    "POST /v1/orders/{external_id:str}/refunds": RECORD,
    "POST /v1/events": RECORD,
    "GET /v1/rules": READ,
    "POST /v1/rules": CONFIGURE,
    "GET /v1/rules/{rule_id:str}": READ,
    "PATCH /v1/rules/{rule_id:str}": CONFIGURE,
    "DELETE /v1/rules/{rule_id:str}": CONFIGURE,
    "GET /v1/rules/{rule_id:str}/versions": READ,
    "POST /v1/rules/{rule_id:str}/simulate": CONFIGURE,
    "GET /v1/tiers": READ,
    "POST /v1/tiers": CONFIGURE,
    "GET /v1/tiers/{key:str}": READ,
    "PATCH /v1/tiers/{key:str}": CONFIGURE,
    "DELETE /v1/tiers/{key:str}": CONFIGURE,
    "GET /v1/webhook-endpoints": ADMINISTER,
    "POST /v1/webhook-endpoints": ADMINISTER,
    "GET /v1/webhook-endpoints/{endpoint_id:str}": ADMINISTER,
    "PATCH /v1/webhook-endpoints/{endpoint_id:str}": ADMINISTER,
    "DELETE /v1/webhook-endpoints/{endpoint_id:str}": ADMINISTER,
    "POST /v1/webhook-endpoints/{endpoint_id:str}/rotate-secret": ADMINISTER,
    "GET /v1/webhook-endpoints/{endpoint_id:str}/deliveries": ADMINISTER,
    "POST /v1/webhook-endpoints/{endpoint_id:str}/deliveries/{delivery_id:str}/retry": ADMINISTER,
    "POST /v1/webhook-endpoints/{endpoint_id:str}/test": ADMINISTER,
    "GET /v1/system/jobs": ADMINISTER,
    "GET /v1/messaging/settings": READ,
    "PUT /v1/messaging/settings": ADMINISTER,
    "GET /v1/message-types": READ,
    "GET /v1/templates": READ,
    "POST /v1/templates": CONFIGURE,
    "GET /v1/templates/{template_id:str}": READ,
    "PUT /v1/templates/{template_id:str}": CONFIGURE,
    "DELETE /v1/templates/{template_id:str}": CONFIGURE,
    "GET /v1/templates/{template_id:str}/versions": READ,
    "POST /v1/templates/{template_id:str}/preview": CONFIGURE,
    "POST /v1/templates/preview": CONFIGURE,
    "GET /v1/messages": READ,
    "GET /v1/messages/{message_id:str}": READ,
    "GET /v1/suppressions": READ,
    "POST /v1/suppressions": ADMINISTER,
    "DELETE /v1/suppressions/{email:str}": ADMINISTER,
    "GET /v1/journeys": READ,
    "POST /v1/journeys": CONFIGURE,
    "GET /v1/journeys/{key:str}": READ,
    "PUT /v1/journeys/{key:str}": CONFIGURE,
    "PATCH /v1/journeys/{key:str}": CONFIGURE,
    "DELETE /v1/journeys/{key:str}": CONFIGURE,
    "GET /v1/gift-rules": READ,
    "POST /v1/gift-rules": CONFIGURE,
    "GET /v1/gift-rules/{gift_rule_id:str}": READ,
    "PATCH /v1/gift-rules/{gift_rule_id:str}": CONFIGURE,
    "DELETE /v1/gift-rules/{gift_rule_id:str}": CONFIGURE,
    "GET /v1/gift-rules/{gift_rule_id:str}/versions": READ,
    "POST /v1/gift-rules/{gift_rule_id:str}/simulate": CONFIGURE,
    "GET /v1/gift-rules/{gift_rule_id:str}/stats": READ,
    "GET /v1/gift-key": ADMINISTER,
    "GET /v1/gifts": READ,
    "GET /v1/rewards": READ,
    "POST /v1/rewards": CONFIGURE,
    "GET /v1/rewards/{reward_id:str}": READ,
    "PUT /v1/rewards/{reward_id:str}": CONFIGURE,
    "PATCH /v1/rewards/{reward_id:str}": CONFIGURE,
    "DELETE /v1/rewards/{reward_id:str}": CONFIGURE,
    "GET /v1/rewards/{reward_id:str}/versions": READ,
    "GET /v1/customers/{external_id:str}/rewards": READ,
    "POST /v1/customers/{external_id:str}/redemptions": RECORD,
    "GET /v1/redemptions": READ,
    "GET /v1/redemptions/{redemption_id:str}": READ,
    "POST /v1/redemptions/{redemption_id:str}/cancel": RECORD,
    "POST /v1/codes/{code:str}/validate": READ,
    "POST /v1/codes/{code:str}/use": RECORD,
    "PUT /v1/stripe/connection": ADMINISTER,
    "GET /v1/stripe/connection": ADMINISTER,
    "DELETE /v1/stripe/connection": ADMINISTER,
    "GET /v1/stripe/events": ADMINISTER,
    "GET /v1/stripe/events/{event_id:str}": ADMINISTER,
    "POST /v1/stripe/events/{event_id:str}/retry": ADMINISTER,
    "POST /v1/customers/{external_id:str}/recovery": RECOVER,
    "GET /v1/recovery/budget": READ,
    "GET /v1/recovery/settings": READ,
    "PUT /v1/recovery/settings": ADMINISTER,
    "POST /v1/cases": RECOVER,
    "GET /v1/cases": READ,
    "GET /v1/cases/{case_id:str}": READ,
    "POST /v1/cases/{case_id:str}/notes": RECOVER,
    "POST /v1/cases/{case_id:str}/close": RECOVER,
    "POST /v1/surveys": CONFIGURE,
    "GET /v1/surveys": READ,
    "GET /v1/surveys/{key:str}": READ,
    "PATCH /v1/surveys/{key:str}": CONFIGURE,
    "POST /v1/feedback": RECORD,
    "GET /v1/feedback": READ,
    "GET /v1/feedback/{feedback_id:str}": READ,
    "GET /v1/reports/nps": READ,
}


def _operations(app: Litestar) -> dict[str, list[Requires]]:
    """Every operation the app serves (Litestar's own OPTIONS answers aside) with its scope guards, from
    the handler up through its controller and router (a guard on any layer counts)."""
    found: dict[str, list[Requires]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if handler.http_methods == {"OPTIONS"}:
                continue
            guards = [guard for layer in handler.ownership_layers for guard in layer.guards or ()]
            for method in handler.http_methods:
                found[f"{method} {route.path}"] = [g for g in guards if isinstance(g, Requires)]
                assert len(guards) == len(found[f"{method} {route.path}"]), (route.path, guards)
    return found


def _public(operation: str) -> bool:
    path = operation.split(" ", 1)[1]
    return any(re.match(pattern, path) for pattern in PUBLIC_PATHS)


def test_every_operation_is_guarded_as_the_table_says() -> None:
    app = create_app(Settings(database_url="postgresql:///unused"))
    operations = _operations(app)
    guarded = {op: guards for op, guards in operations.items() if not _public(op)}
    public_with_guards = [op for op, guards in operations.items() if _public(op) and guards]
    assert not public_with_guards, public_with_guards
    assert all(len(guards) == 1 for guards in guarded.values()), {
        op: guards for op, guards in guarded.items() if len(guards) != 1
    }
    found = {op: guards[0].permission for op, guards in guarded.items()}
    missing = sorted(set(found) - set(OPERATIONS))
    gone = sorted(set(OPERATIONS) - set(found))
    assert not missing, f"operations with no row in the table: {missing}"
    assert not gone, f"rows for operations the app no longer has: {gone}"
    differ = {op: (found[op].value, OPERATIONS[op].value) for op in found if found[op] != OPERATIONS[op]}
    assert not differ, f"guard differs from the table (found, documented): {differ}"


def test_scopes_are_the_documented_sets() -> None:
    """The README's table, row by permission and column by scope, is SCOPES."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Scopes", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| **")]
    header = next(line for line in section.splitlines() if line.startswith("| Permission"))
    columns = [cell.strip().strip("`") for cell in header.strip("|").split("|")[1:]]
    assert tuple(columns) == SCOPE_NAMES
    documented: dict[str, set[str]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        permission = re.match(r"\*\*(\w+)\*\*", cells[0])
        assert permission is not None, row
        documented[permission.group(1)] = {
            scope for scope, cell in zip(columns, cells[1:], strict=True) if cell == "✓"
        }
    assert documented == {p.value: set(scopes_with(p)) for p in Permission}
    # No rank: admin holds everything; every other scope reads and adds one thing of its own.
    assert SCOPES["admin"] == frozenset(Permission)
    assert all(Permission.READ in permissions for permissions in SCOPES.values())


def _path(template: str) -> str:
    """A concrete path for a template: ids of the right form that name nothing in the program."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("message_id", "delivery_id"):
            return "1"
        return str(uuid.uuid4()) if name.endswith("_id") else "nothing-here"

    return re.sub(r"\{(\w+):\w+\}", value, template)


async def _key(api: Api, scope: Scope) -> str:
    created = await api.client.post(
        "/v1/api-keys",
        json={"name": scope, "scope": scope},
        headers=api.headers(**{"Idempotency-Key": f"key-{scope}"}),
    )
    assert created.status_code == 201, created.text
    key: str = created.json()["api_key"]
    return key


async def test_each_scope_passes_exactly_the_guards_of_its_permissions(api: Api) -> None:
    """Every operation with a key of every scope: a 403 exactly where the scope lacks the permission, and
    the 403 names the scopes that would do. (Guards run before the body is read, so `{}` does.)"""
    keys = {scope: await _key(api, scope) for scope in SCOPE_NAMES}
    wrong: list[tuple[str, str, int]] = []
    for operation, permission in OPERATIONS.items():
        method, template = operation.split(" ", 1)
        path = _path(template)
        for scope, key in keys.items():
            body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
            response = await api.client.request(method, path, json=body, headers=api.headers(key))
            allowed = permission in SCOPES[scope]
            if (response.status_code == 403) == allowed:
                wrong.append((operation, scope, response.status_code))
            elif not allowed:
                names = " or ".join(f"`{s}`" for s in scopes_with(permission))
                assert names in response.json()["detail"], response.text
                assert f"this key has `{scope}`" in response.json()["detail"]
    assert not wrong, wrong


async def test_an_agent_recovers_but_neither_adjusts_nor_writes_rules(api: Api) -> None:
    """An agent reads customers and cases and performs recovery; nothing else (the issue's words)."""
    agent = await _key(api, "agent")
    assert (await api.order("o-1")).status_code == 201
    put = await api.client.put(
        "/v1/recovery/settings",
        json={"monthly_budget": {"amount": 1000, "currency": "EUR"}},
        headers=api.headers(),
    )
    assert put.status_code == 200, put.text
    recovered = await api.client.post(
        "/v1/customers/c-1/recovery",
        json={"reason": "goodwill", "action": {"kind": "points", "points": 5}},
        headers=api.headers(agent, **{"Idempotency-Key": "recover-1"}),
    )
    assert recovered.status_code == 201, recovered.text
    case = await api.client.post(
        "/v1/cases",
        json={"customer": "c-1", "summary": "asked about a parcel"},
        headers=api.headers(agent, **{"Idempotency-Key": "case-1"}),
    )
    assert case.status_code == 201, case.text
    adjusted = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5, "reason": "goodwill"},
        headers=api.headers(agent, **{"Idempotency-Key": "adjust-1"}),
    )
    assert adjusted.status_code == 403
    assert "the `admin` scope; this key has `agent`" in adjusted.json()["detail"]
    settings = await api.client.put(
        "/v1/recovery/settings",
        json={"monthly_budget": {"amount": 10**6, "currency": "EUR"}},
        headers=api.headers(agent),
    )
    assert settings.status_code == 403
    rule = await api.client.post(
        "/v1/rules",
        json=DOUBLE,
        headers=api.headers(agent, **{"Idempotency-Key": "rule-1"}),
    )
    assert rule.status_code == 403
    assert "`marketer` or `admin`" in rule.json()["detail"]
    assert (await api.client.get("/v1/rules", headers=api.headers(agent))).status_code == 200
    assert (await api.client.get("/v1/cases", headers=api.headers(agent))).status_code == 200
    order = await api.client.post("/v1/orders", json=order_body("o-2"), headers=api.headers(agent))
    assert order.status_code == 403
    points = (await api.status())["points"]
    assert (points["pending"], points["available"]) == (90, 5)  # the admin's order and the recovery only


async def test_a_marketer_writes_rules_and_templates_but_records_no_orders(api: Api) -> None:
    marketer = await _key(api, "marketer")
    rule = await api.client.post(
        "/v1/rules",
        json=DOUBLE,
        headers=api.headers(marketer, **{"Idempotency-Key": "rule-1"}),
    )
    assert rule.status_code == 201, rule.text
    template = await api.client.post(
        "/v1/templates",
        json=TEMPLATE,
        headers=api.headers(marketer, **{"Idempotency-Key": "template-1"}),
    )
    assert template.status_code == 201, template.text
    order = await api.client.post("/v1/orders", json=order_body("o-1"), headers=api.headers(marketer))
    assert order.status_code == 403
    assert "`server` or `admin`" in order.json()["detail"]
    adjust = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5, "reason": "x"},
        headers=api.headers(marketer, **{"Idempotency-Key": "adjust-1"}),
    )
    assert adjust.status_code == 403


async def test_a_server_key_records_orders_but_does_not_adjust(api: Api) -> None:
    server = await _key(api, "server")
    order = await api.client.post("/v1/orders", json=order_body("o-1"), headers=api.headers(server))
    assert order.status_code == 201, order.text
    adjust = await api.client.post(
        "/v1/customers/c-1/adjustments",
        json={"points": 5, "reason": "x"},
        headers=api.headers(server, **{"Idempotency-Key": "adjust-1"}),
    )
    assert adjust.status_code == 403
    assert "`admin`" in adjust.json()["detail"] and "`agent`" not in adjust.json()["detail"]
    rule = await api.client.post(
        "/v1/rules",
        json=DOUBLE,
        headers=api.headers(server, **{"Idempotency-Key": "rule-1"}),
    )
    assert rule.status_code == 403
