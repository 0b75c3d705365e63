from tests.conftest import Api


async def test_upsert_customer(api: Api) -> None:
    response = await api.client.put(
        "/v1/customers/c-1", json={"email": "ann@example.com"}, headers=api.headers()
    )
    assert response.status_code == 200, response.text
