"""schemathesis over the whole committed OpenAPI document against a real `encore serve`: no server
error, every status and every response body as documented, invalid input refused. Fixed seed; the
number of cases per operation keeps `make test` within its time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.server import encore_serve
from tests.support.stripe_stub import StripeStub

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")
# A body over the size limit is refused with 413 before it is read: a refusal too.
SCHEMA.config.checks.negative_data_rejection.expected_statuses.append("413")
CASES_PER_OPERATION = int(os.environ.get("ENCORE_CONTRACT_CASES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def contract_server(database_url: str, stripe_api: StripeStub) -> Iterator[tuple[str, str]]:
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "programs",
            "create",
            "--name",
            "Contract",
            "--currency",
            "EUR",
            "--json",
        ],
        cwd=ROOT,
        env=os.environ | {"ENCORE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["api_key"]
    with encore_serve(database_url, ENCORE_STRIPE_API_BASE=stripe_api.url) as base:
        yield base, key


@SCHEMA.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(
    case: schemathesis.Case, contract_server: tuple[str, str]
) -> None:
    base, key = contract_server
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
