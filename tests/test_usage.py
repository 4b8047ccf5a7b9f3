"""Usage per day over HTTP, with real ``storefront serve`` processes on each backend: two
instances counting into one database exactly, within seconds, and a server stopped with
SIGTERM losing no count."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REDIS_URL, require_service
from tests.servers import (
    burst,
    deployment_env,
    instances,
    new_api_key,
    start_server,
    storefront,
    storefront_json,
    wait_until_up,
)

#: The servers write their counts every second: the tests wait little.
FLUSH_SECONDS = 1


@pytest.fixture(scope="module")
def env(
    module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    require_service(REDIS_URL, 6379)  # one rate-limit budget for both instances
    return deployment_env(
        rate_limit_storage_url=REDIS_URL,
        key_dir=tmp_path_factory.mktemp("usage") / "unused-keys",
        STOREFRONT_LOG_LEVEL="warning",
        STOREFRONT_USAGE_FLUSH_SECONDS=str(FLUSH_SECONDS),
        **module_database_env,
    )


@pytest.fixture(scope="module")
def servers(env: dict[str, str]) -> Iterator[list[str]]:
    with instances(env) as bases:
        yield bases


def usage_of(env: dict[str, str], key_id: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = storefront_json(env, "usage", "--key-id", key_id)  # type: ignore[assignment]
    return rows


def test_two_instances_count_into_one_database_exactly(
    env: dict[str, str], servers: list[str]
) -> None:
    key = new_api_key(env, limit="20/minute")
    statuses = asyncio.run(burst(servers, {"X-API-Key": key["api_key"]}, 60))
    assert (statuses.count(200), statuses.count(429)) == (20, 40)
    # In the database within about 10 s, while both servers run on.
    deadline = time.monotonic() + 10
    while True:
        rows = usage_of(env, key["key_id"])
        if sum(int(r["accepted"]) + int(r["refused"]) for r in rows) >= 60 or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    assert [(r["key_id"], r["accepted"], r["refused"]) for r in rows] == [(key["key_id"], 20, 40)]
    # The chart says the same.
    chart = storefront(env, "usage", "--key-id", key["key_id"], "--days", "1")
    line = next(line for line in chart.splitlines() if key["key_id"] in line)
    assert line.split()[3:5] == ["20", "40"]
    assert "█" in line
    assert "░" in line


def test_a_server_stopped_with_sigterm_writes_what_it_counted(env: dict[str, str]) -> None:
    # A write interval far beyond the test: only the shutdown can have written the counts.
    slow = {**env, "STOREFRONT_USAGE_FLUSH_SECONDS": "60"}
    key = new_api_key(env, scopes="read")
    process, base = start_server(slow)
    try:
        wait_until_up(base)
        with httpx.Client(base_url=base, headers={"X-API-Key": key["api_key"]}) as http:
            statuses = [http.get("/products").status_code for _ in range(25)]
            statuses.append(http.post("/products", json={}).status_code)  # read only: a 403
        assert statuses == [200] * 25 + [403]
        time.sleep(1)
        assert usage_of(env, key["key_id"]) == []  # nothing written yet
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
    rows = usage_of(env, key["key_id"])
    assert [(r["accepted"], r["refused"]) for r in rows] == [(25, 1)]
