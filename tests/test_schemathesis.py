"""Property-based conformance: schemathesis drives every operation of openapi.yaml in process.

Positive and negative data, all checks, with a read+write bearer token; the app validates its
own responses too. A failure here is a place where the server and its spec disagree.

The endpoints where a client authenticates itself (revocation, introspection) would answer
every generated request 401, since no generated id and secret belong to a client: their valid
requests are sent with a real client's credentials instead, and half of them with a real token,
so that the answers that matter (revoked, active, inactive) are generated and checked too.
Tokens are signed with EdDSA, so that the key set holds a key for its schema to check.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.python.asgi import get_client, shutdown_lifespans

from core.settings import Settings
from storefront import admin
from tests.conftest import SCHEMATHESIS_CASES, SCHEMATHESIS_OPERATIONS

#: Examples per operation: the Hypothesis profile's (tests/conftest.py: 25 by default, 250
#: under HYPOTHESIS_PROFILE=thorough), on top of schemathesis' own boundary cases.
EXAMPLES_PER_OPERATION = hypothesis.settings().max_examples
#: Through PgBouncer: what the pooler can change is how statements and transactions travel,
#: the same for every request, so fewer examples say as much at half the cost.
POOLED_EXAMPLES_PER_OPERATION = EXAMPLES_PER_OPERATION // 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # HS256's key set is always empty: with EdDSA the JWKS holds a key, which its schema checks.
    return settings.model_copy(update={"jwt_algorithm": "EdDSA"})


@dataclass(frozen=True)
class Caller:
    """The client the requests come from, and its tokens: one that authorizes every request,
    one for the generated revocations to revoke, one for the introspections to look at."""

    client: admin.NewClient
    bearer: str
    tokens: dict[str, str]


@pytest.fixture
def caller(app: Any, make_client: Callable[..., admin.NewClient]) -> Caller:
    client = make_client("read write")
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    # Everything goes through schemathesis' own client: its event loop is the one the app's
    # connection pools (asyncpg, Redis) get bound to.
    with get_client(app) as http:
        responses = [http.post("/auth/token", data=form) for _ in range(3)]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    bearer, revoked, introspected = (r.json()["access_token"] for r in responses)
    assert jwt.get_unverified_header(bearer)["alg"] == "EdDSA"
    return Caller(client, bearer, {"/auth/revoke": revoked, "/auth/introspect": introspected})


@pytest.fixture
def api_schema(app: Any, caller: Caller) -> Iterator[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.update(headers={"Authorization": f"Bearer {caller.bearer}"})
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
@hypothesis.settings(
    max_examples=POOLED_EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck)
)
def test_api_conforms_through_pgbouncer(
    case: schemathesis.Case, request: pytest.FixtureRequest
) -> None:
    check(case, request)


@schema.parametrize()
@hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case: schemathesis.Case, request: pytest.FixtureRequest) -> None:
    check(case, request)


def check(case: schemathesis.Case, request: pytest.FixtureRequest) -> None:
    # The bearer token again, explicitly: schemathesis' ignored-auth check counts only
    # credentials of the call as the caller's own, and on an operation with header parameters
    # (Idempotency-Key, If-Match) it would otherwise take a 2xx for one that needed none.
    headers = case.operation.schema.config.headers
    if (
        case.path in CLIENT_AUTHENTICATED
        and case.meta is not None
        and case.meta.generation.mode.is_positive
        and isinstance(case.body, dict)
    ):
        headers = as_the_client(case, request.getfixturevalue("caller"))
    response = case.call_and_validate(headers=headers)
    stash = request.config.stash
    stash[SCHEMATHESIS_CASES] = stash.get(SCHEMATHESIS_CASES, 0) + 1
    answers = stash.setdefault(SCHEMATHESIS_OPERATIONS, {})
    answers.setdefault(case.operation.label, Counter())[f"{response.status_code // 100}xx"] += 1


#: Where the client authenticates itself (form fields or HTTP Basic), not with the bearer.
CLIENT_AUTHENTICATED = ("/auth/revoke", "/auth/introspect")


def as_the_client(case: schemathesis.Case, caller: Caller) -> dict[str, str]:
    """Make a valid request the real client's: its credentials in the form when the generated
    form names a client (client_secret_post), else HTTP Basic (client_secret_basic); and, for
    an even-length generated token (a split that replays with the example), its real token."""
    assert isinstance(case.body, dict)
    # A generated client assertion is no client's: the real client authenticates with its
    # secret, by one means only (an assertion beside it would be an invalid_request).
    body = {
        name: value
        for name, value in case.body.items()
        if name not in {"client_assertion", "client_assertion_type"}
    }
    client = caller.client
    headers: dict[str, str] = {}
    if "client_id" in body or "client_secret" in body:
        body |= {"client_id": client.client_id, "client_secret": client.client_secret}
    else:
        pair = f"{client.client_id}:{client.client_secret}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    if len(str(body.get("token", ""))) % 2 == 0:
        body["token"] = caller.tokens[case.path]
    case.body = body
    return headers
