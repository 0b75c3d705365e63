"""The robustness findings one by one: each input that answered 500 is a 4xx problem naming the field and
writes nothing; the problem's `field` has one form (a JSON path, or `path:` / `query:` / `header:`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, idempotency, order_body, table_counts


async def _refused(
    api: Api, method: str, url: str, status: int, field: str | None, **kwargs: Any
) -> dict[str, Any]:
    before = table_counts(api.client)
    response = await api.client.request(
        method, url, headers=api.headers(**kwargs.pop("headers", {})), **kwargs
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem.get("field") == field, problem
    assert table_counts(api.client) == before
    return problem


NUL = "a\u0000b"


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("PUT", "/v1/customers/c-1", {"name": NUL}, "name"),
        ("POST", "/v1/orders", order_body("o\u00001"), "external_id"),
        ("POST", "/v1/orders", order_body("o-1", customer=NUL), "customer.external_id"),
        ("POST", "/v1/orders", order_body("o-1", attributes={"channel": NUL}), "attributes.channel"),
        ("POST", "/v1/customers/c-1/adjustments", {"points": 5, "reason": NUL}, "reason"),
        ("POST", "/v1/api-keys", {"name": NUL, "scope": "read"}, "name"),
        ("PATCH", "/v1/program", {"name": NUL}, "name"),
        (
            "POST",
            "/v1/rules",
            {"name": "x", "effect": {"kind": "fixed", "points": 1}, "description": NUL},
            "description",
        ),
        (
            "POST",
            "/v1/webhook-endpoints",
            {"url": "https://example.com/h", "description": NUL},
            "description",
        ),
        # msgspec would read "2026-03-01T00:00:00\u0000x" as a time: the raw body is checked.
        ("POST", "/v1/orders", order_body("o-1", placed_at="2026-03-01T00:00:00\u0000x"), "placed_at"),
    ],
)
async def test_a_nul_in_any_string_of_a_body_is_a_422_naming_it(
    api: Api, method: str, url: str, body: Any, field: str
) -> None:
    await _refused(api, method, url, 422, field, json=body, headers={"Idempotency-Key": "k"})


async def test_a_nul_in_a_path_or_query_parameter_is_a_422_naming_it(api: Api) -> None:
    await _refused(api, "GET", "/v1/customers/a%00b", 422, "path:external_id")
    await _refused(api, "GET", "/v1/messages?customer=a%00b", 422, "query:customer")
    await _refused(api, "PUT", "/v1/customers/a%00b", 422, "path:external_id", json={"name": "Ada"})


async def test_invalid_utf8_in_a_string_is_a_400_naming_it(api: Api) -> None:
    problem = await _refused(api, "PUT", "/v1/customers/c-1", 400, "name", content=b'{"name": "Ad\xffa"}')
    assert "UTF-8" in problem["detail"]


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [40, 1000, 100_000])
async def test_nesting_deeper_than_32_levels_is_refused_where_it_is(api: Api, levels: int) -> None:
    event = (
        f'{{"type": "signup", "customer": {{"external_id": "c-1"}}, "properties": {{"a": {_deep(levels)}}}}}'
    )
    response = await api.client.post(
        "/v1/events", content=event.encode(), headers=api.headers(**{"Idempotency-Key": f"deep-{levels}"})
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"].startswith("properties.a[0]") and "32" in problem["detail"]
    rule = f'{{"name": "x", "effect": {{"kind": "fixed", "points": 1}}, "conditions": {{"all": {_deep(levels)}}}}}'
    response = await api.client.post("/v1/rules", content=rule.encode(), headers=api.headers(**idempotency()))
    assert response.status_code == 422 and response.json()["field"].startswith("conditions.all")


async def test_integer_ids_beyond_64_bits_are_a_422_naming_them(api: Api) -> None:
    await _refused(api, "GET", "/v1/messages/9223372036854775808", 422, "path:message_id")
    await _refused(api, "GET", "/v1/messages/9223372036854775807", 404, "path:message_id")
    endpoint = await api.client.post(
        "/v1/webhook-endpoints", json={"url": "https://example.com/h"}, headers=api.headers(**idempotency())
    )
    retry = f"/v1/webhook-endpoints/{endpoint.json()['id']}/deliveries/9223372036854775808/retry"
    await _refused(api, "POST", retry, 422, "path:delivery_id")


@pytest.mark.parametrize(
    "placed_at",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"],
)
async def test_times_outside_1970_to_2200_are_refused_and_the_customer_goes_on(
    api: Api, placed_at: str
) -> None:
    problem = await _refused(
        api, "POST", "/v1/orders", 422, "placed_at", json=order_body("o-1", placed_at=placed_at)
    )
    assert "1970-01-01 to 2200-01-01" in problem["detail"]
    assert (await api.order("o-2")).status_code == 201  # the customer's next order is not stuck
    event = {"type": "signup", "customer": {"external_id": "c-1"}, "occurred_at": placed_at}
    await _refused(
        api, "POST", "/v1/events", 422, "occurred_at", json=event, headers={"Idempotency-Key": placed_at}
    )


async def test_a_rule_window_far_in_the_future_is_refused_in_any_time_zone(api: Api) -> None:
    patched = await api.client.patch("/v1/program", json={"timezone": "Etc/GMT+12"}, headers=api.headers())
    assert patched.status_code == 200
    rule = {
        "name": "x",
        "effect": {"kind": "fixed", "points": 1},
        "window": {"ends_at": "9999-12-31T23:59:59"},
    }
    await _refused(api, "POST", "/v1/rules", 422, "window.ends_at", json=rule)


async def test_a_decimal_sent_as_a_json_float_is_refused(api: Api) -> None:
    problem = await _refused(
        api, "PATCH", "/v1/program", 422, "earn_rates.EUR", json={"earn_rates": {"EUR": 1.5}}
    )
    assert "string" in problem["detail"]
    ok = await api.client.patch("/v1/program", json={"earn_rates": {"EUR": "1.5"}}, headers=api.headers())
    assert ok.status_code == 200 and ok.json()["earn_rates"] == {"EUR": "1.5"}
    tier = {"key": "gold", "name": "Gold", "rank": 1, "qualification": {"metric": "orders", "threshold": 3}}
    await _refused(
        api,
        "POST",
        "/v1/tiers",
        422,
        "benefits.earn_multiplier",
        json={**tier, "benefits": {"earn_multiplier": 1.5}},
    )


async def test_field_names_have_one_form(api: Api) -> None:
    await _refused(api, "GET", "/v1/customers/c-1/ledger?limit=abc", 422, "query:limit")
    await _refused(api, "GET", "/v1/customers/c-1/ledger?cursor=zzz", 422, "query:cursor")
    await _refused(api, "GET", "/v1/messages?type=order_thank_you", 422, "query:type")
    await _refused(api, "GET", "/v1/rules/not-a-uuid", 422, "path:rule_id")
    await _refused(api, "GET", "/v1/webhook-endpoints/nope", 422, "path:endpoint_id")
    await _refused(api, "GET", "/v1/customers/nobody", 404, "path:external_id")
    problem = await _refused(api, "PUT", "/v1/customers/c-1", 422, "email", json={"email": "not an address"})
    assert problem["detail"] == "expected an e-mail address such as ada@example.com"
    problem = await _refused(
        api, "PATCH", "/v1/program", 422, "earn_rates", json={"earn_rates": {"EURO": "1"}}
    )
    assert problem["detail"].startswith("a key: ")


async def test_an_empty_body_stands_for_the_defaults_where_every_field_has_one(api: Api) -> None:
    endpoint = await api.client.post(
        "/v1/webhook-endpoints", json={"url": "https://example.com/h"}, headers=api.headers(**idempotency())
    )
    rotated = await api.client.post(
        f"/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", headers=api.headers()
    )
    assert rotated.status_code == 200, rotated.text
    problem = await _refused(api, "POST", "/v1/rules", 400, None, content=b"")
    assert problem["detail"] == "this request needs a JSON body"
    # A whole-document PUT without a body would reset it: refused, the settings as they were.
    await _refused(api, "PUT", "/v1/messaging/settings", 400, None, content=b"")
    await _refused(api, "PUT", "/v1/customers/c-1", 400, None, content=b"")


async def test_a_cursor_naming_an_id_beyond_64_bits_is_not_one_this_api_gave_out(api: Api) -> None:
    cursor = "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk"  # id:99999999999999999999
    await api.client.put("/v1/customers/c-1", json={"name": "Ada"}, headers=api.headers())
    for url in ("/v1/messages", "/v1/customers/c-1/ledger", "/v1/customers/c-1/tier-history"):
        await _refused(api, "GET", f"{url}?cursor={cursor}", 422, "query:cursor")


async def test_invalid_utf8_in_a_path_or_query_is_a_422_naming_it(api: Api) -> None:
    await _refused(api, "PUT", "/v1/customers/%FF", 422, "path:external_id", json={"name": "Ada"})
    await _refused(api, "GET", "/v1/messages?customer=%FF", 422, "query:customer")
    ok = await api.client.put("/v1/customers/%EF%BF%BD", json={"name": "Ada"}, headers=api.headers())
    assert ok.status_code == 200  # U+FFFD itself, sent as valid UTF-8, is text like any other


async def test_pages_outside_the_api_take_the_query_parameters_tools_append(api: Api) -> None:
    assert (await api.client.get("/healthz?probe=1")).status_code == 200
    page = await api.client.get("/v1/unsubscribe/not-a-token?utm_source=newsletter")
    assert page.json()["field"] == "path:token"  # the token is what is wrong, not the tracking parameter


async def test_options_needs_the_key_and_is_no_server_error(api: Api) -> None:
    assert (await api.client.options("/v1/rules", headers=api.headers())).status_code < 300
    assert (await api.client.options("/v1/rules")).status_code == 401
