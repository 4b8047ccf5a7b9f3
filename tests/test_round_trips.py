"""Round trips are a budget: what a real server asks of PostgreSQL and of Redis per request,
on each hot route, counted by the wire (a proxy in front of PostgreSQL counts each batch the
server waits on: tests/wire.py) and by Redis itself (MONITOR).

PostgreSQL only: SQLite has no round trips, and through PgBouncer every unit of work is a
transaction of its own (docs/performance.md gives those counts, from the bench).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import REDIS_URL, require_service
from tests.servers import (
    deployment_env,
    start_server,
    stop_servers,
    storefront,
    storefront_json,
    wait_until_up,
)
from tests.wire import PostgresWire, postgres_wire, redis_commands

#: Requests per count, after two to warm the pool, the prepared statements and the caches.
REQUESTS = 10


@dataclass
class Counted:
    base: str
    wire: PostgresWire
    prefix: str
    client: dict[str, str]
    token: str


@pytest.fixture(scope="module")
def counted(
    backend: str,
    module_database_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Counted]:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's round trips, counted directly")
    require_service(REDIS_URL, 6379)
    directory = tmp_path_factory.mktemp("round-trips")
    env = deployment_env(
        rate_limit_storage_url=REDIS_URL,
        key_dir=directory / "keys",
        STOREFRONT_LOG_LEVEL="warning",
        # "With a cached token": the client's status stays remembered through the count.
        STOREFRONT_AUTH_CACHE_TTL="60",
        STOREFRONT_RATE_LIMIT="1000000/minute",
        **module_database_env,
    )
    storefront(env, "db", "upgrade")
    catalogue = directory / "products.json"
    catalogue.write_text(
        json.dumps(
            [{"name": f"Walnut desk {n}", "price": 100 + n, "category": "Office"} for n in range(3)]
            + [{"name": "Oak chair", "price": 40, "category": "Home"}]
        )
    )
    storefront(env, "products", "import", str(catalogue))
    client = storefront_json(env, "clients", "create", "--name", "trips", "--scopes", "read write")
    direct = make_url(env["STOREFRONT_DATABASE_URL"])
    with postgres_wire(direct.host or "127.0.0.1", direct.port or 5432) as wire:
        through = direct.set(host="127.0.0.1", port=wire.port)
        process, base = start_server(
            env | {"STOREFRONT_DATABASE_URL": through.render_as_string(hide_password=False)}
        )
        try:
            wait_until_up(base)
            form = {"grant_type": "client_credentials", **client}
            token = httpx.post(f"{base}/auth/token", data=form).json()["access_token"]
            yield Counted(base, wire, env["STOREFRONT_RATE_LIMIT_KEY_PREFIX"], client, token)
        finally:
            stop_servers([process])


Send = Callable[[httpx.Client], httpx.Response]


def _per_request(counted: Counted, send: Send) -> tuple[float, list[str]]:
    """PostgreSQL round trips per request, and every Redis command the requests sent."""
    with httpx.Client(base_url=counted.base, timeout=30) as http:
        for _ in range(2):
            assert send(http).status_code == 200
        before = counted.wire.round_trips
        with redis_commands(REDIS_URL, counted.prefix) as commands:
            for _ in range(REQUESTS):
                response = send(http)
                assert response.status_code == 200, response.text
        return (counted.wire.round_trips - before) / REQUESTS, commands


def _bearer(counted: Counted) -> dict[str, str]:
    return {"Authorization": f"Bearer {counted.token}"}


def test_a_user_by_id_is_one_round_trip_to_each_store(counted: Counted) -> None:
    with httpx.Client(base_url=counted.base) as http:
        made = http.post(
            "/users",
            headers=_bearer(counted),
            json={"name": "Ada", "email": "ada@example.com", "password": "pw-123456"},
        )
    assert made.status_code == 201
    user = made.json()["id"]
    trips, commands = _per_request(
        counted, lambda http: http.get(f"/users/{user}", headers=_bearer(counted))
    )
    # The read, and no BEGIN, ROLLBACK or ping around it; the charge, in one script.
    assert trips == 1.0
    assert len(commands) == REQUESTS, commands
    assert all(c.split()[0].upper() == "EVALSHA" for c in commands), commands


def test_a_page_of_users_and_its_total_are_one_round_trip(counted: Counted) -> None:
    trips, commands = _per_request(
        counted, lambda http: http.get("/users?limit=20", headers=_bearer(counted))
    )
    assert trips == 1.0  # the counter is read in the page's own statement
    assert len(commands) == REQUESTS


def test_a_repeated_search_reads_its_remembered_page_by_id(counted: Counted) -> None:
    def search(http: httpx.Client) -> httpx.Response:
        response = http.get("/products?search=walnut", headers=_bearer(counted))
        assert sorted(p["name"] for p in response.json()) == [f"Walnut desk {n}" for n in range(3)]
        return response

    trips, commands = _per_request(counted, search)
    # A search is a transaction (its budget is SET LOCAL): BEGIN, the catalogue's version,
    # the remembered page's rows by id, ROLLBACK. Its exact count is remembered too.
    assert trips == 4.0
    assert len(commands) == REQUESTS


def test_a_token_is_one_round_trip_to_each_store(counted: Counted) -> None:
    form = {"grant_type": "client_credentials", **counted.client}
    trips, commands = _per_request(counted, lambda http: http.post("/auth/token", data=form))
    assert trips == 1.0  # the client's row
    # Both failed-authentication budgets looked at and, with room, the client's own budget
    # charged: one script.
    assert len(commands) == REQUESTS, commands
