"""Rate limiting, the same tests on every store: in memory, and the Redis on 127.0.0.1:6379
(the conftest runs them once on each).

Each test runs on its own key prefix, so runs sharing one Redis never see each other's counts.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from httpx2 import Response
from pydantic import ValidationError
from starlette.testclient import TestClient

from core.errors import InvalidInput
from core.settings import Settings
from persistence import clients
from storefront import admin
from storefront.access.ratelimit import sentinel_pool
from storefront.app import create_app

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture
def store(rate_limit_storage_url: str) -> str:
    """memory:// on the SQLite run, the Redis on 127.0.0.1:6379 on the PostgreSQL run."""
    return rate_limit_storage_url


Configure = Callable[..., TestClient]


@pytest.fixture
def limited(settings: Settings, store: str) -> Iterator[Configure]:
    """``limited(rate_limit=..., ...)`` -> a client of an app with those rate-limit settings."""
    opened: list[TestClient] = []

    def configure(**changes: Any) -> TestClient:
        changes = {
            "rate_limit_storage_url": store,
            "rate_limit_key_prefix": f"test-{uuid.uuid4().hex}",
            "rate_limit": "100/minute",
            "auth_failure_limit": "60/minute",
            **changes,
        }
        client = TestClient(create_app(settings.model_copy(update=changes)), **_address(changes))
        opened.append(client)
        return client.__enter__()

    yield configure
    for client in opened:
        client.__exit__(None, None, None)


def _address(changes: dict[str, Any]) -> dict[str, Any]:
    address = changes.pop("client_address", None)
    return {"client": (address, 50000)} if address else {}


def form(client: admin.NewClient, secret: str | None = None) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": secret or client.client_secret,
    }


def token(api: TestClient, client: admin.NewClient) -> dict[str, str]:
    response = api.post("/auth/token", data=form(client))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_limit_headers(response: Response, *, limit: int, remaining: int) -> None:
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + 61
    policy = response.headers["RateLimit-Policy"]
    assert re.fullmatch(rf'"(default|client|auth-failures)";q={limit};w=\d+', policy), policy
    field = re.fullmatch(r'"[a-z-]+";r=(\d+);t=(\d+)', response.headers["RateLimit"])
    assert field, response.headers["RateLimit"]
    assert int(field.group(1)) == remaining


def assert_429(response: Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "Too Many Requests"
    assert set(response.json()) == {"error", "message"}
    retry_after = int(response.headers["Retry-After"])
    # Never earlier than the reset the other headers announce.
    assert time.time() + retry_after >= int(response.headers["X-RateLimit-Reset"]) - 1
    assert retry_after >= 1


def test_a_fresh_key_gets_exactly_100_requests_then_429(
    limited: Configure, make_client: Callable[..., admin.NewClient], make_api_key: Any
) -> None:
    api = limited()
    key = {"X-API-Key": make_api_key(make_client("read").client_id).api_key}
    for n in range(100):
        response = api.get("/products", headers=key)
        assert response.status_code == 200, (n, response.text)
        assert_limit_headers(response, limit=100, remaining=99 - n)
    refused = api.get("/products", headers=key)
    assert_429(refused)
    assert_limit_headers(refused, limit=100, remaining=0)
    assert refused.headers["RateLimit-Policy"] == '"default";q=100;w=60'


def test_tokens_of_one_client_share_one_budget_and_token_requests_count(
    limited: Configure, make_client: Callable[..., admin.NewClient]
) -> None:
    api = limited(rate_limit="6/minute")
    client, other = make_client("read"), make_client("read")
    first, second = token(api, client), token(api, client)  # 2 of 6
    for headers in (first, second, first, second):  # 6 of 6
        assert api.get("/users", headers=headers).status_code == 200
    assert_429(api.get("/users", headers=second))
    assert_429(api.post("/auth/token", data=form(client)))  # minting more buys nothing
    assert api.get("/users", headers=token(api, other)).status_code == 200


def test_each_api_key_has_its_own_budget(
    limited: Configure, make_client: Callable[..., admin.NewClient], make_api_key: Any
) -> None:
    api = limited(rate_limit="3/minute")
    client_id = make_client("read").client_id
    one = {"Authorization": f"Bearer {make_api_key(client_id).api_key}"}
    two = {"X-API-Key": make_api_key(client_id).api_key}
    for _ in range(3):
        assert api.get("/products", headers=one).status_code == 200
    assert_429(api.get("/products", headers=one))
    assert api.get("/products", headers=two).status_code == 200


def test_every_response_to_an_identified_caller_carries_the_headers(
    limited: Configure, make_client: Callable[..., admin.NewClient]
) -> None:
    api = limited()
    reader = token(api, make_client("read"))  # 1 of 100
    cases = [
        (api.get("/users", headers=reader), 200),
        (api.get("/users/user_nobody", headers=reader), 404),
        (api.get("/users", params={"limit": 0}, headers=reader), 400),
        (api.post("/users", headers=reader, json={}), 403),
    ]
    for remaining, (response, status) in enumerate(cases, start=1):
        assert response.status_code == status, response.text
        assert_limit_headers(response, limit=100, remaining=99 - remaining)


def test_a_client_can_have_its_own_limit(
    limited: Configure,
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
) -> None:
    api = limited()
    client = make_client("read")
    admin.run(
        settings,
        lambda s: clients.set_rate_limit(s, client_id=client.client_id, rate_limit="2/minute"),
    )
    headers = token(api, client)  # 1 of 2
    response = api.get("/users", headers=headers)  # 2 of 2
    assert response.headers["RateLimit-Policy"] == '"client";q=2;w=60'
    assert_429(api.get("/users", headers=headers))


def test_the_budget_comes_back_when_the_window_resets(
    limited: Configure, make_client: Callable[..., admin.NewClient], make_api_key: Any
) -> None:
    api = limited(rate_limit="2/second")
    key = {"X-API-Key": make_api_key(make_client("read").client_id).api_key}
    assert api.get("/products", headers=key).status_code == 200
    assert api.get("/products", headers=key).status_code == 200
    refused = api.get("/products", headers=key)
    assert_429(refused)
    time.sleep(int(refused.headers["Retry-After"]) + 0.1)
    assert api.get("/products", headers=key).status_code == 200


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
def test_other_strategies_count_exactly_too(
    limited: Configure,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Any,
    strategy: str,
) -> None:
    api = limited(rate_limit="5/minute", rate_limit_strategy=strategy)
    key = {"X-API-Key": make_api_key(make_client("read").client_id).api_key}
    statuses = [api.get("/products", headers=key).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2


def test_failed_authentications_slow_only_the_failing_address(
    limited: Configure, make_client: Callable[..., admin.NewClient]
) -> None:
    attacker = limited(auth_failure_limit="3/minute", client_address="203.0.113.9")
    victim = make_client("read")
    valid = token(attacker, victim)  # a real token, fetched from the attacker's address
    for _ in range(3):
        assert attacker.get("/users", headers={"Authorization": "Bearer forged"}).status_code == 401
    refused = attacker.get("/users", headers={"Authorization": "Bearer forged"})
    assert_429(refused)
    assert refused.headers["RateLimit-Policy"] == '"auth-failures";q=3;w=60'
    assert attacker.get("/users").status_code == 429  # no credentials is a failure too
    # A valid credential is not a failure, even from a failing address.
    assert attacker.get("/users", headers=valid).status_code == 200


def test_secrets_cannot_be_guessed_at_line_speed_nor_lock_out_the_client(
    limited: Configure, settings: Settings, make_client: Callable[..., admin.NewClient]
) -> None:
    victim = make_client("read")
    changes = {"auth_failure_limit": "3/minute", "rate_limit_key_prefix": uuid.uuid4().hex}
    attacker = limited(client_address="198.51.100.7", **changes)
    for _ in range(3):
        response = attacker.post("/auth/token", data=form(victim, secret="guess"))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
    # Over budget, even the right secret is refused: no oracle for the guesser.
    assert_429(attacker.post("/auth/token", data=form(victim)))
    # The real client, from its own address and sharing the same store, is unaffected.
    real = limited(client_address="192.0.2.10", **changes)
    assert real.post("/auth/token", data=form(victim)).status_code == 200


def test_over_budget_a_refused_scope_is_a_429_too_and_refusals_spend_nothing(
    limited: Configure, make_client: Callable[..., admin.NewClient]
) -> None:
    client = make_client("read")
    api = limited(rate_limit="3/minute", auth_failure_limit="2/minute")
    # A scope the client lacks is refused without spending the client's budget.
    for _ in range(4):
        response = api.post("/auth/token", data={**form(client), "scope": "write"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"
    granted = api.post("/auth/token", data=form(client))
    assert granted.status_code == 200
    assert_limit_headers(granted, limit=3, remaining=2)  # the first of three
    # From a source over its failure budget, the right secret with a refused scope is a 429
    # like any other answer: a 400 would tell the guesser the secret was right.
    for _ in range(2):
        assert api.post("/auth/token", data=form(client, secret="guess")).status_code == 401
    refused = api.post("/auth/token", data={**form(client), "scope": "write"})
    assert_429(refused)
    assert refused.headers["RateLimit-Policy"] == '"auth-failures";q=2;w=60'


def test_guessing_at_revoke_and_introspect_spends_the_same_failure_budget(
    limited: Configure, make_client: Callable[..., admin.NewClient]
) -> None:
    victim = make_client("read")
    attacker = limited(auth_failure_limit="3/minute", client_address="198.51.100.8")
    guess = {"token": "x", "client_id": victim.client_id, "client_secret": "guess"}
    for path in ("/auth/revoke", "/auth/introspect", "/auth/token"):
        response = attacker.post(path, data={**guess, "grant_type": "client_credentials"})
        assert response.status_code == 401, path
        assert response.json()["error"] == "invalid_client"
    # Three failures across the three endpoints: the fourth attempt anywhere is refused.
    right = {**guess, "client_secret": victim.client_secret}
    assert_429(attacker.post("/auth/introspect", data=right))
    assert_429(attacker.post("/auth/revoke", data=right))


@pytest.mark.parametrize("fail_open", [True, False])
def test_an_unreachable_store_fails_open_or_closed_as_configured(
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
    caplog: pytest.LogCaptureFixture,
    fail_open: bool,
) -> None:
    changes = {
        "rate_limit_storage_url": "redis://127.0.0.1:1",  # nothing listens there
        "rate_limit_fail_open": fail_open,
    }
    with TestClient(create_app(settings.model_copy(update=changes))) as api:
        client = make_client("read")
        response = api.post("/auth/token", data=form(client))
        if fail_open:
            assert response.status_code == 200
            assert not any(h in response.headers for h in HEADERS)
            assert api.get("/users", headers=token(api, client)).status_code == 200
            assert "rate-limit store unreachable" in caplog.text
            assert "serving without limits" in caplog.text
        else:
            assert response.status_code == 503
            assert response.json() == {
                "error": "Service Unavailable",
                "message": "Rate limiting is temporarily unavailable; please retry shortly.",
            }
            assert response.headers["Retry-After"] == "1"
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


def test_rate_limits_given_to_the_command_are_validated() -> None:
    with pytest.raises(InvalidInput, match="not a rate limit"):
        admin.parse_rate_limit("lots")
    assert admin.parse_rate_limit("500/minute") == "500/minute"


def test_a_sentinel_url_names_its_sentinels_password_and_service() -> None:
    sentinel, pool = sentinel_pool(
        "redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2/shop", socket_timeout=0.5
    )
    assert [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in sentinel.sentinels
    ] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert {c.connection_pool.connection_kwargs["password"] for c in sentinel.sentinels} == {
        "s@cret"
    }
    assert pool.service_name == "shop"  # type: ignore[attr-defined]
    assert pool.connection_kwargs["password"] == "s@cret"
    assert pool.connection_kwargs["socket_timeout"] == 0.5
    with pytest.raises(ValidationError, match="must name the service"):
        Settings(_env_file=None, rate_limit_storage_url="redis+sentinel://10.0.0.1:26379")  # type: ignore[call-arg]
