"""A one-time identifier is accepted once, on each store (in memory on the SQLite run, the
Redis on 127.0.0.1:6379 on the PostgreSQL run), shared by every instance on that store, and
forgotten when it could no longer be accepted anyway."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import storefront.access.replay as replay_module
from core.errors import ReplayStoreUnavailable
from storefront.access.ratelimit import Limiter


def _limiter(store: str, prefix: str) -> Limiter:
    return Limiter(
        storage_url=store,
        strategy="fixed-window",
        default_limit="5/minute",
        auth_failure_limit="3/minute",
        key_prefix=prefix,
        fail_open=True,  # the replay check refuses anyway
    )


def test_an_identifier_is_accepted_once_per_namespace(rate_limit_storage_url: str) -> None:
    async def main() -> list[bool]:
        limiter = _limiter(rate_limit_storage_url, f"test-{uuid.uuid4().hex}")
        until = time.time() + 60
        try:
            return [
                await limiter.replay.first_use("dpop", "jti-1", until),
                await limiter.replay.first_use("dpop", "jti-1", until),
                await limiter.replay.first_use("client-assertion", "jti-1", until),
                await limiter.replay.first_use("dpop", "jti-2", until),
                await limiter.replay.first_use("dpop", "jti-1", until),
            ]
        finally:
            await limiter.close()

    assert asyncio.run(main()) == [True, False, True, True, False]


def test_an_identifier_is_forgotten_when_it_expires(rate_limit_storage_url: str) -> None:
    async def main() -> list[bool]:
        limiter = _limiter(rate_limit_storage_url, f"test-{uuid.uuid4().hex}")
        try:
            # Redis keeps a key at least a second (a JWT that has just expired is refused by
            # its own exp check), so the wait covers that.
            first = await limiter.replay.first_use("dpop", "short", time.time() + 0.2)
            again = await limiter.replay.first_use("dpop", "short", time.time() + 0.2)
            await asyncio.sleep(1.2)
            later = await limiter.replay.first_use("dpop", "short", time.time() + 60)
            return [first, again, later]
        finally:
            await limiter.close()

    assert asyncio.run(main()) == [True, False, True]


def test_instances_on_one_shared_store_refuse_each_others_identifiers(
    rate_limit_storage_url: str,
) -> None:
    if rate_limit_storage_url.startswith("memory"):
        pytest.skip("the in-process store is one instance's own")

    async def main() -> list[bool]:
        prefix = f"test-{uuid.uuid4().hex}"
        one = _limiter(rate_limit_storage_url, prefix)
        two = _limiter(rate_limit_storage_url, prefix)
        until = time.time() + 60
        try:
            return [
                await one.replay.first_use("dpop", "shared", until),
                await two.replay.first_use("dpop", "shared", until),
                await two.replay.first_use("dpop", "other", until),
                await one.replay.first_use("dpop", "other", until),
            ]
        finally:
            await one.close()
            await two.close()

    assert asyncio.run(main()) == [True, False, True, False]


def test_an_unreachable_store_is_a_refusal_even_failing_open() -> None:
    async def main() -> None:
        limiter = _limiter("redis://127.0.0.1:1", f"test-{uuid.uuid4().hex}")
        try:
            await limiter.replay.first_use("dpop", "jti", time.time() + 60)
        finally:
            await limiter.close()

    with pytest.raises(ReplayStoreUnavailable) as refused:
        asyncio.run(main())
    assert "replay check is temporarily unavailable" in str(refused.value)


def test_a_full_in_process_store_refuses_rather_than_forgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay_module, "MAX_REMEMBERED", 3)

    async def main() -> list[bool]:
        limiter = _limiter("memory://", "test")
        until = time.time() + 60
        found = [await limiter.replay.first_use("dpop", f"jti-{n}", until) for n in range(3)]
        # The oldest is still unexpired: it is refused as a replay, not forgotten for room.
        found.append(await limiter.replay.first_use("dpop", "jti-0", until))
        with pytest.raises(ReplayStoreUnavailable):
            await limiter.replay.first_use("dpop", "jti-3", until)
        return found

    assert asyncio.run(main()) == [True, True, True, False]
