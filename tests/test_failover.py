"""Redis Sentinel failover under load, with two server processes.

A Redis primary, a replica and a Sentinel (tests/sentinel.py); two ``storefront serve``
processes on one SQLite file with ``STOREFRONT_RATE_LIMIT_STORAGE_URL=redis+sentinel://…``.
The primary is killed while both serve a steady stream of requests. What must hold: no 5xx;
fail-open (the default) serves every request during the window in which no budget can be
counted, and says so by leaving out the rate-limit headers; once the Sentinel has promoted the
replica, counting resumes within a bounded time and is exact again across both processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from storefront.access.ratelimit import RETRY_STORE_AFTER
from tests.conftest import require_program
from tests.sentinel import DOWN_AFTER_MS, RedisTopology, redis_with_sentinel
from tests.servers import burst, deployment_env, instances, new_api_key

#: Kill to counting again: the Sentinel's down-after, its election and promotion (about a
#: second here), then the server's back-off from an unreachable store, and slack for a busy
#: machine.
WINDOW_BOUND = DOWN_AFTER_MS / 1000 + 3 + RETRY_STORE_AFTER + 5


@dataclass(frozen=True)
class Seen:
    at: float  # seconds since the primary was killed (negative: before)
    server: str
    status: int
    counted: bool  # the response carried the rate-limit headers


@pytest.fixture
def topology() -> Iterator[RedisTopology]:
    require_program("redis-server", "redis-server")
    require_program("redis-sentinel", "redis-sentinel")
    with redis_with_sentinel() as running:
        yield running


@pytest.fixture
def env(topology: RedisTopology, tmp_path: Path) -> dict[str, str]:
    return deployment_env(
        rate_limit_storage_url=topology.url,
        key_dir=tmp_path / "unused-keys",
        STOREFRONT_DATABASE_URL=f"sqlite:///{tmp_path / 'storefront.db'}",
        STOREFRONT_LOG_LEVEL="error",
    )


def _key(env: dict[str, str], limit: str) -> dict[str, str]:
    return {"X-API-Key": new_api_key(env, limit=limit)["api_key"]}


def _counting_again(seen: list[Seen], bases: list[str]) -> bool:
    """Both servers count again, for a second, after serving uncounted."""
    uncounted = [s.at for s in seen if s.at >= 0 and not s.counted]
    if not uncounted:
        return False
    later = [s for s in seen if s.at > max(uncounted) + 1]
    return {s.server for s in later if s.counted} == set(bases)


async def _load(
    bases: list[str], headers: dict[str, str], topology: RedisTopology, *, at_most: float
) -> list[Seen]:
    """Four streams of requests over both servers; the primary is killed once both count.
    Runs until both count again, or ``at_most`` seconds after the kill. Returns what each
    response showed, and when (relative to the kill)."""
    seen: list[Seen] = []
    killed_at = float("inf")
    stop = asyncio.Event()
    warm = asyncio.Event()  # both servers have counted a request

    async def stream(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while not stop.is_set():
                response = await http.get("/products", headers=headers)
                now = time.monotonic()
                counted = "X-RateLimit-Remaining" in response.headers
                seen.append(Seen(now - killed_at, base, response.status_code, counted))
                if {s.server for s in seen if s.counted} == set(bases):
                    warm.set()
                if _counting_again(seen, bases):
                    stop.set()
                await asyncio.sleep(0.02)

    streams = [asyncio.create_task(stream(base)) for base in bases * 2]
    await asyncio.wait_for(warm.wait(), 30)
    await asyncio.sleep(0.5)
    killed_at = time.monotonic()
    await asyncio.to_thread(topology.kill_primary)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), at_most)
    stop.set()
    await asyncio.gather(*streams)
    return seen


@pytest.fixture
def servers(env: dict[str, str]) -> Iterator[list[str]]:
    with instances(env) as bases:
        yield bases


def test_sentinel_failover_under_load(
    env: dict[str, str], topology: RedisTopology, servers: list[str]
) -> None:
    headers = _key(env, "100000/minute")  # counted throughout, never refused
    old_primary = topology.primary()

    seen = asyncio.run(_load(servers, headers, topology, at_most=WINDOW_BOUND))

    assert topology.primary() == topology.replica_port != old_primary
    statuses = {s.status for s in seen}
    assert statuses == {200}, f"statuses during the failover: {sorted(statuses)}"
    before = [s for s in seen if s.at < 0]
    assert before
    assert all(s.counted for s in before)
    uncounted = [s.at for s in seen if s.at >= 0 and not s.counted]
    assert uncounted, "no request was served uncounted: the failover was not observed"
    window = max(uncounted)
    print(
        f"\nfailover: {len(seen)} requests, all 200; {len(uncounted)} served uncounted "
        f"(fail-open) from the kill until {window:.2f} s after it"
    )
    assert window < WINDOW_BOUND
    assert _counting_again(seen, servers), "counting did not resume on both servers"

    # Counting on the promoted primary is exact across both processes: a fresh budget of 20,
    # 60 requests at once over both, exactly 20 served.
    statuses_after = asyncio.run(burst(servers, _key(env, "20/minute"), 60))
    assert statuses_after.count(200) == 20
    assert statuses_after.count(429) == 40
