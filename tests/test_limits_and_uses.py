"""Several named limits per client and per key, and keys with a number of uses, through the
real HTTP server: on SQLite with the in-memory store (uses kept in the database, so they
outlive a restart) and on PostgreSQL with Redis (uses counted in Redis). Two instances
sharing them: tests/test_instances.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.servers import (
    deployment_env,
    instances,
    storefront,
    storefront_json,
)


@pytest.fixture(scope="module")
def env(
    backend: str, module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return deployment_env(
        rate_limit_storage_url="memory://" if backend == "sqlite" else REDIS_URL,
        key_dir=tmp_path_factory.mktemp("limits") / "keys",
        STOREFRONT_LOG_LEVEL="warning",
        **module_database_env,
    )


@pytest.fixture(scope="module")
def base(env: dict[str, str]) -> Iterator[str]:
    with instances(env, count=1) as [one]:
        yield one


def _client(env: dict[str, str], *limits: str) -> str:
    client = storefront_json(env, "clients", "create", "--name", "limited", "--scopes", "read")
    if limits:
        storefront(env, "clients", "set-limit", client["client_id"], *limits)
    return client["client_id"]


def _key(env: dict[str, str], client_id: str, *options: str) -> dict[str, str]:
    return storefront_json(env, "keys", "create", "--client-id", client_id, *options)


def test_every_limit_counts_and_a_429_names_the_one_reached(env: dict[str, str], base: str) -> None:
    headers = {"X-API-Key": _key(env, _client(env, "3/minute", "100/day"))["api_key"]}
    with httpx.Client(base_url=base, headers=headers) as api:
        accepted = [api.get("/products") for _ in range(3)]
        refused = api.get("/products")
        shown = api.get("/rate_limit").json()
    policy = '"per-minute";q=3;w=60, "per-day";q=100;w=86400'
    for n, response in enumerate(accepted):
        assert response.status_code == 200
        assert response.headers["RateLimit-Policy"] == policy
        # The most depleted limit: the minute's.
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(2 - n)
        assert response.headers["RateLimit"].startswith(f'"per-minute";r={2 - n};t=')
    assert refused.status_code == 429
    assert refused.json()["error"] == "Too Many Requests"
    assert refused.json()["message"].startswith('Rate limit "per-minute" exceeded: at most 3')
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Policy"] == policy
    assert refused.headers["RateLimit"].startswith('"per-minute";r=0;t=')
    # The refused request spent nothing of the day: 3 of 100 used.
    assert [(x["policy"], x["quota"], x["window"], x["used"]) for x in shown["limits"]] == [
        ("per-minute", 3, 60, 3),
        ("per-day", 100, 86400, 3),
    ]
    assert shown["uses"] is None


def test_a_keys_own_limits_replace_its_clients_and_its_retry_after_is_theirs(
    env: dict[str, str], base: str
) -> None:
    client_id = _client(env, "1/minute")
    key = _key(env, client_id)
    storefront(env, "keys", "set-limit", key["key_id"], "50/minute;2/day")
    headers = {"X-API-Key": key["api_key"]}
    with httpx.Client(base_url=base, headers=headers) as api:
        statuses = [api.get("/products").status_code for _ in range(2)]
        refused = api.get("/products")
        shown = api.get("/rate_limit").json()
    assert statuses == [200, 200]  # not the client's 1/minute
    assert refused.status_code == 429
    assert refused.json()["message"].startswith(
        'Rate limit "per-day" exceeded: at most 2 requests per 86400 seconds.'
    )
    assert int(refused.headers["Retry-After"]) > 86000  # the day's reset, not the minute's
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert [(x["policy"], x["per"], x["id"]) for x in shown["limits"]] == [
        ("per-minute", "key", key["key_id"]),
        ("per-day", "key", key["key_id"]),
    ]
    # One own limit is named "key".
    storefront(env, "keys", "set-limit", key["key_id"], "7/minute")
    time.sleep(1.1)  # STOREFRONT_AUTH_CACHE_TTL
    assert httpx.get(f"{base}/products", headers=headers).headers["RateLimit-Policy"] == (
        '"key";q=7;w=60'
    )


def test_a_key_with_uses_stops_after_them_without_retry_after(
    env: dict[str, str], base: str
) -> None:
    client_id = _client(env)
    key = _key(env, client_id, "--uses", "3")
    headers = {"X-API-Key": key["api_key"]}
    with httpx.Client(base_url=base, headers=headers) as api:
        statuses = [api.get("/products").status_code for _ in range(3)]
        refused = api.get("/products")
        shown = api.get("/rate_limit").json()
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Too Many Requests",
        "message": 'Usage limit "uses" reached: this API key has used all of its 3 uses, '
        "and they do not refill.",
    }
    assert "Retry-After" not in refused.headers
    assert shown["uses"] == {
        "policy": "uses",
        "quota": 3,
        "used": 3,
        "remaining": 0,
        "refill": None,
        "reset": None,
        "reset_in": None,
    }
    listed: list[dict[str, object]] = json.loads(
        storefront(env, "keys", "list", "--client-id", client_id, "--json")
    )
    assert [(k["uses"], k["uses_remaining"]) for k in listed] == [(3, 0)]


def test_a_request_refused_by_a_limit_spends_no_use(env: dict[str, str], base: str) -> None:
    key = _key(env, _client(env, "2/minute"), "--uses", "5")
    headers = {"X-API-Key": key["api_key"]}
    with httpx.Client(base_url=base, headers=headers) as api:
        statuses = [api.get("/products").status_code for _ in range(4)]
        refused = api.get("/products")
        shown = api.get("/rate_limit").json()
    assert statuses == [200, 200, 429, 429]
    assert refused.json()["message"].startswith('Rate limit "client" exceeded')
    assert (shown["uses"]["used"], shown["uses"]["remaining"]) == (2, 3)


def test_a_request_refused_for_its_credential_or_scope_spends_no_use(
    env: dict[str, str], base: str
) -> None:
    key = _key(env, _client(env), "--uses", "2")  # a read-only client's key
    headers = {"X-API-Key": key["api_key"]}
    body = {"name": "Ada", "email": "ada-uses@example.com", "password": "pw-123456"}
    with httpx.Client(base_url=base, headers=headers) as api:
        forbidden = api.post("/users", json=body)
        ambiguous = api.get("/products", headers={"Authorization": "Bearer x"})
        shown = api.get("/rate_limit").json()["uses"]
        statuses = [api.get("/products").status_code for _ in range(3)]
    assert forbidden.status_code == 403
    assert "users:write" in forbidden.json()["message"]
    assert ambiguous.status_code == 401
    assert (shown["used"], shown["remaining"]) == (0, 2)
    assert statuses == [200, 200, 429]


def test_uses_that_refill_come_back_and_their_429_says_when(env: dict[str, str], base: str) -> None:
    key = _key(env, _client(env), "--uses", "2", "--refill", "1/2 seconds")
    headers = {"X-API-Key": key["api_key"]}
    with httpx.Client(base_url=base, headers=headers) as api:
        first = [api.get("/products").status_code for _ in range(2)]
        refused = api.get("/products")
        shown = api.get("/rate_limit").json()["uses"]
        time.sleep(shown["reset_in"] + 0.2)
        after = [api.get("/products").status_code for _ in range(2)]
    assert first == [200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    assert "They refill in" in refused.json()["message"]
    assert (shown["refill"], shown["remaining"]) == ("1/2 seconds", 0)
    assert after == [200, 429]  # the refill's 1 use a period, not the first period's 2


def test_spent_uses_outlive_a_restart(env: dict[str, str]) -> None:
    key = _key(env, _client(env), "--uses", "2")
    headers = {"X-API-Key": key["api_key"]}
    with instances(env, count=1) as [one]:
        assert httpx.get(f"{one}/products", headers=headers).status_code == 200
    with instances(env, count=1) as [again]:
        assert httpx.get(f"{again}/products", headers=headers).status_code == 200
        assert httpx.get(f"{again}/products", headers=headers).status_code == 429


def test_a_clients_tokens_share_its_several_limits_with_its_token_requests(
    env: dict[str, str], base: str
) -> None:
    client = storefront_json(env, "clients", "create", "--name", "tokens", "--scopes", "read")
    storefront(env, "clients", "set-limit", client["client_id"], "3/minute", "50/hour")
    form = {"grant_type": "client_credentials", **client}
    with httpx.Client(base_url=base) as api:
        issued = api.post("/auth/token", data=form)
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        statuses = [api.get("/products", headers=bearer).status_code for _ in range(3)]
        again = api.post("/auth/token", data=form)
        shown = api.get("/rate_limit", headers=bearer).json()["limits"]
    assert issued.headers["RateLimit-Policy"] == '"per-minute";q=3;w=60, "per-hour";q=50;w=3600'
    assert statuses == [200, 200, 429]  # the token request spent the first of the minute's 3
    assert again.status_code == 429
    assert again.json()["message"].startswith('Rate limit "per-minute" exceeded')
    assert [(x["policy"], x["per"], x["used"]) for x in shown] == [
        ("per-minute", "client", 3),
        ("per-hour", "client", 3),
    ]
