"""Every operation of the OpenAPI document with a path parameter, called with another program's ids and
this program's admin key: 404, and nothing of the other program changed."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.core.clock import FrozenClock
from tests.conftest import Api, fingerprint, make_program
from tests.contract.samples import REQUESTS, path_values, seed
from tests.contract.test_robustness import OPERATIONS

# An upsert by the shop's own id makes this program's own customer of that id: no leak, no 404.
UPSERT = ("PUT", "/v1/customers/{external_id}")


def _with_path_parameters() -> list[tuple[str, str]]:
    found = []
    for (method, path), operation in OPERATIONS.items():
        params = [p for p in operation.get("parameters", []) if p["in"] == "path"]
        if params and operation.get("security") != []:  # the public pages carry no program's key
            found.append((method, path))
    return sorted(found, key=lambda op: (op == UPSERT, op))  # the upsert last


async def test_another_programs_ids_answer_404_and_change_nothing(
    api: Api, client: AsyncTestClient[Litestar], clock: FrozenClock
) -> None:
    seeded = await seed(api, clock)
    intruder = make_program(client, "Intruder")
    before = fingerprint(client, api.program_id)
    operations = _with_path_parameters()
    assert len(operations) > 30
    wrong: list[str] = []
    for n, (method, path) in enumerate(operations):
        body, query = REQUESTS[(method, path)]
        url = path.format(**{k: quote(v, safe="") for k, v in path_values(path, seeded).items()})
        if query:
            url += "?" + urlencode(query)
        headers = intruder.headers(**{"Idempotency-Key": f"intruder-{n}"})
        response = await client.request(method, url, json=body, headers=headers)
        expected = 200 if (method, path) == UPSERT else 404
        if response.status_code != expected:
            wrong.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)
    assert fingerprint(client, api.program_id) == before
    own = await client.get(f"/v1/customers/{seeded.customer}", headers=intruder.headers())
    assert own.json()["orders"]["count"] == 0  # the intruder's own customer, not the other program's
