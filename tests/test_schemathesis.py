"""Property-based conformance: schemathesis drives every operation of openapi.yaml in process.

Positive and negative data, all checks, with a read+write bearer token; the app validates its
own responses too. A failure here is a place where the server and its spec disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import get_client, shutdown_lifespans

from storefront import admin
from tests.conftest import SCHEMATHESIS_CASES

#: Examples per operation: the Hypothesis profile's (tests/conftest.py: 25 by default, 250
#: under HYPOTHESIS_PROFILE=thorough), on top of schemathesis' own boundary cases.
EXAMPLES_PER_OPERATION = settings().max_examples
#: Through PgBouncer: what the pooler can change is how statements and transactions travel,
#: the same for every request, so fewer examples say as much at half the cost.
POOLED_EXAMPLES_PER_OPERATION = EXAMPLES_PER_OPERATION // 2


@pytest.fixture
def api_schema(app: Any, make_client: Callable[..., admin.NewClient]) -> Iterator[Any]:
    client = make_client("read write")
    # Everything goes through schemathesis' own client: its event loop is the one the app's
    # connection pools (asyncpg, Redis) get bound to.
    with get_client(app) as http:
        response = http.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            },
        )
    assert response.status_code == 200, response.text
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.update(headers={"Authorization": f"Bearer {response.json()['access_token']}"})
    # Valid requests may still meet the state earlier ones left, and the spec says how: a
    # taken email (409, already expected), and an Idempotency-Key generated again with
    # another body (422).
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "422"]
    yield schema
    shutdown_lifespans()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@pytest.mark.pgbouncer(only=True)
@settings(max_examples=POOLED_EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck))
def test_api_conforms_through_pgbouncer(
    case: schemathesis.Case, request: pytest.FixtureRequest
) -> None:
    check(case, request)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case: schemathesis.Case, request: pytest.FixtureRequest) -> None:
    check(case, request)


def check(case: schemathesis.Case, request: pytest.FixtureRequest) -> None:
    # The bearer token again, explicitly: schemathesis' ignored-auth check counts only
    # credentials of the call as the caller's own, and on an operation with header parameters
    # (Idempotency-Key, If-Match) it would otherwise take a 2xx for one that needed none.
    case.call_and_validate(headers=case.operation.schema.config.headers)
    stash = request.config.stash
    stash[SCHEMATHESIS_CASES] = stash.get(SCHEMATHESIS_CASES, 0) + 1
