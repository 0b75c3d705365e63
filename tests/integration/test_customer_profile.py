"""A customer's locale and birthday through the API: a locale CLDR knows, stored in BCP 47 form; a
birthday from 1900-01-01 to today. Anything else is a 422 naming the field (`customer.` inside an
order or event body) and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import START, Api, iso, order_body, table_counts


async def _put(api: Api, body: dict[str, Any], customer: str = "c-1") -> Any:
    return await api.client.put(f"/v1/customers/{customer}", json=body, headers=api.headers())


@pytest.mark.parametrize(
    ("given", "stored"), [("pt_BR", "pt-BR"), ("en-gb", "en-GB"), ("zh-Hant-TW", "zh-Hant-TW"), ("de", "de")]
)
async def test_any_locale_cldr_knows_is_stored_in_bcp47_form(api: Api, given: str, stored: str) -> None:
    response = await _put(api, {"locale": given})
    assert response.status_code == 200, response.text
    assert response.json()["locale"] == stored
    assert (await api.status("c-1"))["customer"]["locale"] == stored


def _event(customer: dict[str, Any]) -> dict[str, Any]:
    return {"type": "review_written", "customer": customer, "properties": {}}


REFUSED = [
    ("PUT", "/v1/customers/c-1", {"locale": "xx"}, "locale"),
    ("PUT", "/v1/customers/c-1", {"locale": "en-XX"}, "locale"),
    ("PUT", "/v1/customers/c-1", {"locale": "und"}, "locale"),
    ("PUT", "/v1/customers/c-1", {"birthday": "1899-12-31"}, "birthday"),
    ("PUT", "/v1/customers/c-1", {"birthday": "0001-01-01"}, "birthday"),
    (
        "POST",
        "/v1/orders",
        {**order_body("o-1"), "customer": {"external_id": "c-1", "locale": "xx"}},
        "customer.locale",
    ),
    (
        "POST",
        "/v1/orders",
        {**order_body("o-1"), "customer": {"external_id": "c-1", "birthday": "1850-02-03"}},
        "customer.birthday",
    ),
    ("POST", "/v1/events", _event({"external_id": "c-1", "locale": "xx"}), "customer.locale"),
]


@pytest.mark.parametrize(("method", "path", "body", "field_name"), REFUSED)
async def test_unknown_locales_and_absurd_birthdays_are_a_422_naming_the_field(
    api: Api, method: str, path: str, body: dict[str, Any], field_name: str
) -> None:
    before = table_counts(api.client)
    response = await api.client.request(
        method, path, json=body, headers=api.headers(**{"Idempotency-Key": "k-1"})
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field_name, response.json()
    assert table_counts(api.client) == before


async def test_a_birthday_today_or_in_1900_is_kept(api: Api) -> None:
    for birthday in ("1900-01-01", START.date().isoformat()):
        response = await _put(api, {"birthday": birthday})
        assert response.status_code == 200, response.text
        assert response.json()["birthday"] == birthday


@pytest.mark.parametrize("where", ["customer", "order"])
async def test_a_birthday_in_the_future_is_refused(api: Api, where: str) -> None:
    tomorrow = (START + timedelta(days=2)).date().isoformat()
    before = table_counts(api.client)
    if where == "customer":
        response = await _put(api, {"birthday": tomorrow})
        field_name = "birthday"
    else:
        body = {**order_body("o-1"), "customer": {"external_id": "c-1", "birthday": tomorrow}}
        body["placed_at"] = iso(START)
        response = await api.client.post("/v1/orders", json=body, headers=api.headers())
        field_name = "customer.birthday"
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field_name
    assert table_counts(api.client) == before
