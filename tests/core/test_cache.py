"""The cache of credential answers (core/cache.py)."""

from __future__ import annotations

import asyncio

import pytest

from core import cache as cache_module
from core.cache import TTLCache


class Loader:
    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.value


def test_an_answer_is_reused_until_the_ttl_then_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: now[0])
    cache: TTLCache[str, object] = TTLCache(1.0)
    load = Loader("enabled")

    async def scenario() -> None:
        assert await cache.get("cli_a", load) == "enabled"
        now[0] += 0.99
        assert await cache.get("cli_a", load) == "enabled"
        assert load.calls == 1
        load.value = "disabled"
        now[0] += 0.02  # past the TTL: the database is asked again
        assert await cache.get("cli_a", load) == "disabled"
        assert load.calls == 2

    asyncio.run(scenario())


def test_a_ttl_of_zero_asks_every_time() -> None:
    cache: TTLCache[str, object] = TTLCache(0)
    load = Loader("enabled")

    async def scenario() -> None:
        for _ in range(3):
            await cache.get("cli_a", load)

    asyncio.run(scenario())
    assert load.calls == 3
    assert len(cache) == 0


def test_answers_not_worth_keeping_are_not_kept() -> None:
    cache: TTLCache[str, object] = TTLCache(60)
    missing = Loader(None)

    async def scenario() -> None:
        for key in ("guess-1", "guess-2", "guess-1"):
            assert await cache.get(key, missing, keep=lambda v: v is not None) is None

    asyncio.run(scenario())
    assert missing.calls == 3
    assert len(cache) == 0


def test_the_cache_never_grows_past_its_cap() -> None:
    cache: TTLCache[int, object] = TTLCache(60, max_entries=5)

    async def scenario() -> None:
        for key in range(23):
            await cache.get(key, Loader(key))

    asyncio.run(scenario())
    assert 0 < len(cache) <= 5


def test_discard_makes_the_next_get_load_again() -> None:
    cache: TTLCache[str, object] = TTLCache(60)
    load = Loader(1)

    async def scenario() -> None:
        assert await cache.get("k", load) == 1
        load.value = 2
        assert await cache.get("k", load) == 1  # remembered
        cache.discard("k")
        cache.discard("never there")  # no error for a key it does not hold
        assert await cache.get("k", load) == 2

    asyncio.run(scenario())


def test_requests_that_find_a_load_under_way_wait_for_it_instead_of_loading_again() -> None:
    """When an entry expires under load, every request in flight used to read the database
    for it at once (GET /users/{id} on PostgreSQL: 0.1 extra round trips a request)."""
    cache: TTLCache[str, object] = TTLCache(1.0)
    calls = 0
    release = asyncio.Event()

    async def slow_load() -> object:
        nonlocal calls
        calls += 1
        await release.wait()
        return "enabled"

    async def scenario() -> list[object]:
        waiting = [asyncio.create_task(cache.get("cli_a", slow_load)) for _ in range(20)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == ["enabled"] * 20
    assert calls == 1


def test_a_failed_or_cancelled_load_is_not_shared_beyond_its_moment() -> None:
    cache: TTLCache[str, object] = TTLCache(1.0)
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def failing() -> object:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        raise ConnectionError("database away")

    async def scenario() -> None:
        first = asyncio.create_task(cache.get("k", failing))
        await started.wait()
        second = asyncio.create_task(cache.get("k", failing))  # joins the load under way
        await asyncio.sleep(0)
        release.set()
        for task in (first, second):
            with pytest.raises(ConnectionError):
                await task
        assert calls == 1
        # Nothing was remembered: the next request loads anew.
        assert await cache.get("k", Loader("back")) == "back"
        # A load whose own request is cancelled: those waiting load for themselves.
        started.clear()
        release.clear()
        owner = asyncio.create_task(cache.get("j", failing))
        await started.wait()
        waiter = asyncio.create_task(cache.get("j", Loader("fresh")))
        await asyncio.sleep(0)
        owner.cancel()
        assert await waiter == "fresh"
        with pytest.raises(asyncio.CancelledError):
            await owner

    asyncio.run(scenario())
