"""The fixed-window counters under every budget, on each store (in memory on the SQLite run,
the Redis on 127.0.0.1:6379 on the PostgreSQL run): what they count, when their windows
reset, and that on Redis each decision is one round trip that counts limits' own keys."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from limits import parse

from storefront.access.ratelimit import Limiter, _Scripted, _storage_key, uses_of
from tests.wire import redis_commands

T = TypeVar("T")


def _limiter(store: str, limit: str = "5/minute", failures: str = "3/minute") -> Limiter:
    return Limiter(
        storage_url=store,
        strategy="fixed-window",
        default_limit=limit,
        auth_failure_limit=failures,
        key_prefix=f"test-{uuid.uuid4().hex}",
        fail_open=False,
    )


def _run(store: str, work: Callable[[Limiter], Awaitable[T]], **limits: str) -> T:
    async def main() -> T:
        limiter = _limiter(store, **limits)
        try:
            return await work(limiter)
        finally:
            await limiter.close()

    return asyncio.run(main())


def test_a_charge_counts_down_to_a_refusal_with_the_window_reset(
    rate_limit_storage_url: str,
) -> None:
    async def work(limiter: Limiter) -> list[tuple[bool, int, float]]:
        found = []
        for _ in range(6):
            decision = await limiter.charge(kind="client", ident="cli_a", override=None)
            assert decision is not None
            found.append((decision.allowed, decision.remaining, decision.reset))
        return found

    before = time.time()
    found = _run(rate_limit_storage_url, work)
    assert [(allowed, left) for allowed, left, _ in found] == [
        (True, 4),
        (True, 3),
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    # One window, started by the first count: every decision names the same reset, a minute on.
    resets = [reset for _, _, reset in found]
    assert max(resets) - min(resets) < 1.0
    assert before + 58 < resets[0] <= time.time() + 60.5


def test_a_look_at_both_failure_budgets_counts_nothing(rate_limit_storage_url: str) -> None:
    async def work(limiter: Limiter) -> tuple[list[int], int]:
        looks = []
        for _ in range(3):
            look = await limiter.failures(ip="203.0.113.7", client_id="cli_b", record=False)
            assert look is not None
            looks.append(look.remaining)
        for _ in range(2):
            await limiter.failures(ip="203.0.113.7", client_id="cli_b", record=True)
        # Another client id from the same address: the address's budget is the one spent.
        after = await limiter.failures(ip="203.0.113.7", client_id="cli_c", record=False)
        assert after is not None
        return looks, after.remaining

    looks, after = _run(rate_limit_storage_url, work)
    assert looks == [3, 3, 3]
    assert after == 1  # 3 per minute, 2 recorded against the address


@pytest.fixture
def redis_store(rate_limit_storage_url: str) -> str:
    if rate_limit_storage_url.startswith("memory"):
        pytest.skip("Redis only: in memory there is no round trip")
    return rate_limit_storage_url


def test_on_redis_a_charge_is_one_round_trip_on_limits_own_key(redis_store: str) -> None:
    limiter = _limiter(redis_store)

    async def main() -> int:
        try:
            await limiter.charge(kind="key", ident="key_1", override=None)  # connected
            with redis_commands(redis_store, limiter.key_prefix) as seen:
                await limiter.charge(kind="key", ident="key_1", override=None)
            sent.extend(seen)
            # limits' own storage reads the key our script counted.
            key = _storage_key(parse("5/minute"), (limiter.key_prefix, "key", "key_1"))
            return await limiter.storage.get(key)
        finally:
            await limiter.close()

    sent: list[str] = []
    count = asyncio.run(main())
    assert len(sent) == 1, sent
    assert sent[0].split()[0].upper() in {"EVALSHA", "EVAL"}, sent
    assert count == 2


def test_on_redis_a_script_the_server_does_not_know_is_loaded_once(redis_store: str) -> None:
    """A Redis restarted or failed over knows no script: the first call is answered NOSCRIPT,
    loads the script (SCRIPT LOAD) and runs it again; later calls are one EVALSHA. (A script
    of the test's own, which no Redis knows yet: flushing the scripts of a Redis other tests
    share would test them too.)"""
    from redis.asyncio import ConnectionPool

    mark = f"test-{uuid.uuid4().hex}"
    # The mark in the source: a new script (a new SHA1), and SCRIPT LOAD names the mark.
    source = f"-- {mark}\nreturn redis.call('incr', KEYS[1])"

    async def main() -> list[int]:
        pool = ConnectionPool.from_url(redis_store)
        script = _Scripted(pool, source)
        try:
            counts = []
            for _ in range(2):
                with redis_commands(redis_store, mark) as seen:
                    counts.append(int(await script([f"{mark}:n".encode()], [])))
                sent.append([command.split()[0].strip("'\"").upper() for command in seen])
            return counts
        finally:
            await pool.aclose()

    sent: list[list[str]] = []
    assert asyncio.run(main()) == [1, 2]
    assert sent == [["EVALSHA", "SCRIPT", "EVALSHA"], ["EVALSHA"]], sent


def test_on_redis_both_failure_budgets_are_one_round_trip(redis_store: str) -> None:
    limiter = _limiter(redis_store)

    async def main() -> None:
        try:
            await limiter.failures(ip="198.51.100.1", client_id="cli_x", record=True)
            with redis_commands(redis_store, limiter.key_prefix) as seen:
                await limiter.failures(ip="198.51.100.1", client_id="cli_x", record=False)
            sent.extend(seen)
        finally:
            await limiter.close()

    sent: list[str] = []
    asyncio.run(main())
    assert len(sent) == 1, sent


def test_a_report_reads_the_budget_and_counts_only_its_own(rate_limit_storage_url: str) -> None:
    async def work(limiter: Limiter) -> list[tuple[int, int, float, float]]:
        found = []
        for _ in range(2):
            await limiter.charge(kind="key", ident="key_r", override=None)
        charged = await limiter.charge(kind="key", ident="key_r", override=None)
        assert charged is not None
        for _ in range(3):
            decided = await limiter.report(kind="key", ident="key_r", override=None)
            assert decided is not None
            reads, [budget] = decided.reads, decided.limits
            assert (reads.policy, budget.policy, budget.allowed) == (
                "rate_limit_reads",
                "default",
                True,
            )
            found.append((reads.remaining, budget.remaining, budget.reset, charged.reset))
        decided = await limiter.report(kind="key", ident="key_r", override="9/minute")
        assert decided is not None
        [own] = decided.limits
        assert (own.policy, own.limit, own.remaining) == ("client", 9, 9)
        return found

    found = _run(rate_limit_storage_url, work)
    # 5/minute, 3 charged: 2 left each time; the reads' own budget (30/minute) counts down.
    assert [(reads, left) for reads, left, _, _ in found] == [(29, 2), (28, 2), (27, 2)]
    for _, _, reset, charged_reset in found:
        assert abs(reset - charged_reset) < 0.05


def test_on_redis_a_report_is_one_round_trip_on_limits_own_keys(redis_store: str) -> None:
    limiter = _limiter(redis_store)

    async def main() -> tuple[int, int]:
        try:
            await limiter.charge(kind="client", ident="cli_r", override=None)  # connected
            with redis_commands(redis_store, limiter.key_prefix) as seen:
                await limiter.report(kind="client", ident="cli_r", override=None)
            sent.extend(seen)
            budget = _storage_key(parse("5/minute"), (limiter.key_prefix, "client", "cli_r"))
            reads = _storage_key(
                parse("30/minute"), (limiter.key_prefix, "rate_limit_reads", "client", "cli_r")
            )
            return await limiter.storage.get(budget), await limiter.storage.get(reads)
        finally:
            await limiter.close()

    sent: list[str] = []
    counts = asyncio.run(main())
    assert len(sent) == 1, sent
    assert sent[0].split()[0].upper() in {"EVALSHA", "EVAL"}, sent
    assert counts == (1, 1)  # the budget only read; the reads' own budget counted


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
def test_a_report_under_limits_other_strategies(rate_limit_storage_url: str, strategy: str) -> None:
    async def main() -> list[tuple[int, int]]:
        limiter = Limiter(
            storage_url=rate_limit_storage_url,
            strategy=strategy,
            default_limit="5/minute",
            auth_failure_limit="3/minute",
            reads_limit="2/minute",
            key_prefix=f"test-{uuid.uuid4().hex}",
            fail_open=False,
        )
        try:
            await limiter.charge(kind="key", ident="key_s", override=None)
            found = []
            for _ in range(3):
                decided = await limiter.report(kind="key", ident="key_s", override=None)
                assert decided is not None
                reads, [budget] = decided.reads, decided.limits
                found.append((reads.allowed, reads.remaining, budget.remaining))
            return found
        finally:
            await limiter.close()

    found = asyncio.run(main())
    assert found == [(True, 1, 4), (True, 0, 4), (False, 0, 4)]


def test_a_charge_refused_by_one_limit_counts_none_of_the_others(
    rate_limit_storage_url: str,
) -> None:
    async def work(limiter: Limiter) -> list[tuple[bool, str, int]]:
        found = []
        for _ in range(3):
            verdict = await limiter.charge(kind="key", ident="key_m", override="2/minute;10/hour")
            assert verdict is not None
            found.append((verdict.allowed, verdict.policy, verdict.remaining))
        report = await limiter.report(kind="key", ident="key_m", override="2/minute;10/hour")
        assert report is not None
        found += [(d.allowed, d.policy, d.remaining) for d in report.limits]
        return found

    assert _run(rate_limit_storage_url, work) == [
        (True, "per-minute", 1),
        (True, "per-minute", 0),
        (False, "per-minute", 0),  # refused: the hour not counted
        (True, "per-minute", 0),
        (True, "per-hour", 8),
    ]


def test_on_redis_three_limits_and_uses_are_one_round_trip(redis_store: str) -> None:
    limiter = _limiter(redis_store)
    uses = uses_of("key_u", 5, "5/day", time.time())
    limits = "100/minute;1000/hour;10000/day"

    async def main() -> None:
        try:
            await limiter.charge(kind="key", ident="key_u", override=limits, own="key", uses=uses)
            with redis_commands(redis_store, limiter.key_prefix) as seen:
                verdict = await limiter.charge(
                    kind="key", ident="key_u", override=limits, own="key", uses=uses
                )
            sent.extend(seen)
            assert verdict is not None
            assert verdict.uses is not None
            assert (verdict.uses.remaining, [d.remaining for d in verdict.windows]) == (
                3,
                [98, 998, 9998],
            )
        finally:
            await limiter.close()

    sent: list[str] = []
    asyncio.run(main())
    assert len(sent) == 1, sent
    assert sent[0].split()[0].upper() in {"EVALSHA", "EVAL"}, sent
