"""Several server processes, one database and one Redis, behave as one API.

Run on each backend: SQLite (one file, several processes) and PostgreSQL, and the test of one
set of users and clients through PgBouncer as well. Rate limits are in Redis here on all, since
a global budget is what is being tested. The module's tests share one database and two
servers per backend (starting them is most of the cost); each makes its own clients, keys and
users, so that none depends on what another left.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from tests.conftest import REDIS_URL, require_service
from tests.servers import (
    burst,
    clean_env,
    deployment_env,
    free_port,
    instances,
    new_api_key,
    run_storefront,
    start_server,
    stop_servers,
    storefront,
    storefront_json,
    wait_until_up,
)

#: The servers run with the default STOREFRONT_AUTH_CACHE_TTL.
AUTH_CACHE_TTL = Settings.model_fields["auth_cache_ttl"].default


@pytest.fixture(scope="module")
def env(
    module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    require_service(REDIS_URL, 6379)
    return deployment_env(
        rate_limit_storage_url=REDIS_URL,
        key_dir=tmp_path_factory.mktemp("instances") / "unused-keys",
        STOREFRONT_LOG_LEVEL="warning",
        **module_database_env,
    )


@pytest.fixture(scope="module")
def servers(env: dict[str, str]) -> Iterator[list[str]]:
    """Two separate ``storefront serve`` processes on different ports."""
    with instances(env) as bases:
        yield bases


def test_workers_share_one_budget(env: dict[str, str]) -> None:
    # First of the module: its workers start before the shared servers load the machine.
    storefront(env, "db", "upgrade")
    key = new_api_key(env, limit="20/minute")
    metrics_port = free_port()
    env = {**env, "STOREFRONT_METRICS_PORT": str(metrics_port), "STOREFRONT_METRICS_ACCESS": "off"}
    process, base = start_server(env, "--workers", "2")
    try:
        wait_until_up(base)
        statuses = asyncio.run(burst([base, base], {"X-API-Key": key["api_key"]}, 60))
        assert httpx.get(f"{base}/metrics").status_code == 404  # off on the API's port
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    finally:
        stop_servers([process])
    assert statuses.count(200) == 20
    assert statuses.count(429) == 40
    # Both workers' counts, summed (prometheus_client's multiprocess mode).
    assert _sample(scraped, "GET", "/products", "200") == 20
    assert _sample(scraped, "GET", "/products", "429") == 40


def _sample(text: str, method: str, path: str, status: str) -> float:
    labels = {f'method="{method}"', f'path="{path}"', f'status="{status}"'}
    for line in text.splitlines():
        if line.startswith("storefront_requests_total{"):
            found = set(line[line.index("{") + 1 : line.index("}")].split(","))
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_processes_share_one_exact_budget(env: dict[str, str], servers: list[str]) -> None:
    key = new_api_key(env)
    headers = {"X-API-Key": key["api_key"]}

    # 300 requests at once over 30 connections, split across the two processes.
    statuses = asyncio.run(burst(servers, headers, 300))
    assert statuses.count(200) == 100
    assert statuses.count(429) == 200

    # Revocation through the command reaches both processes within STOREFRONT_AUTH_CACHE_TTL
    # (1 s by default).
    storefront(env, "keys", "revoke", key["key_id"])
    time.sleep(AUTH_CACHE_TTL)
    for base in servers:
        assert httpx.get(f"{base}/products", headers=headers).status_code == 401


def test_either_instance_reports_the_same_remaining_budget(
    env: dict[str, str], servers: list[str]
) -> None:
    key = new_api_key(env, limit="20/minute")
    headers = {"X-API-Key": key["api_key"]}
    for n in range(5):  # 3 on the first instance, 2 on the second
        assert httpx.get(f"{servers[n % 2]}/products", headers=headers).status_code == 200
    shown = []
    for base in [*servers, *servers]:
        response = httpx.get(f"{base}/rate_limit", headers=headers)
        assert response.status_code == 200, response.text
        shown.append(response.json()["limits"])
    for limits in shown:
        [limit] = limits
        assert (limit["policy"], limit["per"], limit["id"]) == ("client", "key", key["key_id"])
        assert (limit["quota"], limit["used"], limit["remaining"]) == (20, 5, 15)
    resets = [limits[0]["reset"] for limits in shown]
    assert max(resets) - min(resets) <= 1  # one window, its milliseconds rounded up
    # Nothing of it spent by asking, on either instance.
    spent = httpx.get(f"{servers[1]}/products", headers=headers)
    assert spent.headers["X-RateLimit-Remaining"] == "14"


def test_two_processes_share_several_limits_and_name_the_one_reached(
    env: dict[str, str], servers: list[str]
) -> None:
    key = new_api_key(env, limit="100/minute;6/hour")
    headers = {"X-API-Key": key["api_key"]}
    responses = asyncio.run(_burst(servers, headers, 20))
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert (len(accepted), len(refused)) == (6, 14)
    for response in refused:
        assert response.json()["message"].startswith('Rate limit "per-hour" exceeded')
        assert int(response.headers["Retry-After"]) > 3000  # the hour's reset
        assert response.headers["RateLimit-Policy"] == (
            '"per-minute";q=100;w=60, "per-hour";q=6;w=3600'
        )
    # Refused requests spent nothing: 6 of the minute's 100, on either instance.
    for base in servers:
        shown = httpx.get(f"{base}/rate_limit", headers=headers).json()["limits"]
        assert [(x["policy"], x["used"]) for x in shown] == [("per-minute", 6), ("per-hour", 6)]


def test_a_use_counted_key_is_exact_across_two_processes(
    env: dict[str, str], servers: list[str]
) -> None:
    key = new_api_key(env)
    metered = storefront_json(
        env, "keys", "create", "--client-id", _client_of(env, key["key_id"]), "--uses", "7"
    )
    headers = {"X-API-Key": metered["api_key"]}
    responses = asyncio.run(_burst(servers, headers, 40))
    statuses = [r.status_code for r in responses]
    assert (statuses.count(200), statuses.count(429)) == (7, 33)
    for response in responses:
        if response.status_code == 429:
            assert "Retry-After" not in response.headers
            assert response.json()["message"].startswith('Usage limit "uses" reached')
    for base in servers:
        uses = httpx.get(f"{base}/rate_limit", headers=headers).json()["uses"]
        assert (uses["used"], uses["remaining"]) == (7, 0)
    listed = json.loads(storefront(env, "keys", "list", "--json"))
    [found] = [k for k in listed if k["key_id"] == metered["key_id"]]
    assert (found["uses"], found["uses_remaining"]) == (7, 0)  # read from Redis


def _client_of(env: dict[str, str], key_id: str) -> str:
    listed = json.loads(storefront(env, "keys", "list", "--json"))
    return str(next(k["client_id"] for k in listed if k["key_id"] == key_id))


async def _burst(bases: list[str], headers: dict[str, str], total: int) -> list[httpx.Response]:
    """``total`` GET /products at once, alternately on each base: the responses."""
    limits = httpx.Limits(max_connections=15)
    async with (
        httpx.AsyncClient(base_url=bases[0], limits=limits, timeout=30) as one,
        httpx.AsyncClient(base_url=bases[1], limits=limits, timeout=30) as two,
    ):
        clients = [one, two]
        return await asyncio.gather(
            *(clients[n % 2].get("/products", headers=headers) for n in range(total))
        )


def test_several_workers_with_in_memory_limits_refuse_to_start(tmp_path: Path) -> None:
    done = run_storefront(clean_env(), "serve", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--workers 2 needs a shared rate-limit store" in lines[0]
    assert "STOREFRONT_RATE_LIMIT_STORAGE_URL" in lines[0]


@pytest.mark.pgbouncer
def test_two_instances_serve_one_set_of_users_and_clients(
    env: dict[str, str], servers: list[str]
) -> None:
    client = storefront_json(env, "clients", "create", "--name", "two")
    form = {"grant_type": "client_credentials", **client}
    one, two = (httpx.Client(base_url=base, timeout=10) for base in servers)
    with one, two:
        token = one.post("/auth/token", data=form).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}  # issued by one, honoured by two
        body = {"name": "Ada", "email": "ada@example.com", "password": "pw-123456"}
        created = one.post("/users", headers=auth, json=body)
        assert created.status_code == 201
        user_id = created.json()["id"]
        assert two.get(f"/users/{user_id}", headers=auth).json() == created.json()
        assert two.post("/users", headers=auth, json=body).status_code == 409
        renamed = two.put(f"/users/{user_id}", headers=auth, json={"name": "Ada L."})
        assert renamed.status_code == 200
        assert one.get(f"/users/{user_id}", headers=auth).json()["name"] == "Ada L."
        assert one.delete(f"/users/{user_id}", headers=auth).status_code == 204
        assert two.get(f"/users/{user_id}", headers=auth).status_code == 404

        # Disabling the client through the command stops its tokens on both, within
        # STOREFRONT_AUTH_CACHE_TTL.
        storefront(env, "clients", "disable", client["client_id"])
        time.sleep(AUTH_CACHE_TTL)
        assert one.get("/users", headers=auth).status_code == 401
        assert two.get("/users", headers=auth).status_code == 401


#: Not the other tests' user: they share the database.
BODY = {"name": "Grace", "email": "grace@example.com", "password": "pw-123456"}


async def _same_key(bases: list[str], keyed: dict[str, str], total: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=total)
    async with (
        httpx.AsyncClient(base_url=bases[0], limits=limits, timeout=30) as one,
        httpx.AsyncClient(base_url=bases[1], limits=limits, timeout=30) as two,
    ):
        clients = [one, two]
        return await asyncio.gather(
            *(clients[n % 2].post("/users", headers=keyed, json=BODY) for n in range(total))
        )


def test_one_idempotency_key_sent_to_two_instances_creates_once(
    env: dict[str, str], servers: list[str]
) -> None:
    headers = {"X-API-Key": new_api_key(env, scopes="read write")["api_key"]}

    keyed = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    responses = asyncio.run(_same_key(servers, keyed, 20))
    first = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    replays = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    busy = [r for r in responses if r.status_code == 409]
    assert len(first) == 1, [(r.status_code, r.text) for r in responses]
    assert len(first) + len(replays) + len(busy) == 20
    assert all(r.status_code == 201 and r.json() == first[0].json() for r in replays)
    assert all(r.json()["message"].startswith("A request with this Idempotency-Key") for r in busy)
    listed = httpx.get(f"{servers[1]}/users", headers=headers).json()
    assert [user["id"] for user in listed if user["email"] == BODY["email"]] == [
        first[0].json()["id"]
    ]
    # Once the first has finished, a retry at either instance gets its response.
    for base in servers:
        retry = httpx.post(f"{base}/users", headers=keyed, json=BODY)
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first[0].json()
