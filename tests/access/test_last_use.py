"""storefront.access.last_use: one write a minute per key, off the request's path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from storefront.access import last_use
from storefront.access.last_use import LastUse


class FakeDatabase:
    """Database.write's shape: counts the writes, each held until ``release`` is set."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.release = asyncio.Event()

    async def write(self, work: Any, /, **kwargs: Any) -> bool:
        self.writes.append(kwargs["key_id"])
        await self.release.wait()
        return True


def recorder(db: FakeDatabase) -> LastUse:
    return LastUse(db)  # type: ignore[arg-type]


def test_a_flood_of_requests_starts_one_write() -> None:
    async def flood() -> tuple[int, list[str]]:
        db = FakeDatabase()
        uses = recorder(db)
        for _ in range(1000):
            uses.touch("key_a")
        uses.touch("key_b")
        pending = uses.pending  # while the writes wait for the database
        db.release.set()
        await uses.close()
        return pending, db.writes

    assert asyncio.run(flood()) == (2, ["key_a", "key_b"])


def test_the_next_write_waits_for_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(last_use.time, "monotonic", lambda: now[0])

    async def over_time() -> list[str]:
        db = FakeDatabase()
        db.release.set()
        uses = recorder(db)
        for seconds in (0, 30, 59.9, 60, 90, 119.9, 120):
            now[0] = 1000.0 + seconds
            uses.touch("key_a")
        await uses.close()
        return db.writes

    assert asyncio.run(over_time()) == ["key_a"] * 3  # at 0, 60 and 120


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(last_use, "MAX_KEYS", 3)
    now = [1000.0]
    monkeypatch.setattr(last_use.time, "monotonic", lambda: now[0])

    async def many_keys() -> tuple[int, list[str]]:
        db = FakeDatabase()
        db.release.set()
        uses = recorder(db)
        for key in ("a", "b", "c"):
            uses.touch(key)
        now[0] += 61  # those three are past their interval: forgotten to make room
        uses.touch("d")
        uses.touch("e")
        remembered = len(uses._started)
        await uses.close()
        return remembered, db.writes

    assert asyncio.run(many_keys()) == (2, ["a", "b", "c", "d", "e"])


def test_shutdown_cancels_writes_that_do_not_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(last_use, "CLOSE_TIMEOUT", 0.01)

    async def stuck() -> tuple[int, list[str]]:
        db = FakeDatabase()  # never released
        uses = recorder(db)
        uses.touch("key_a")
        await asyncio.sleep(0)  # the write starts, and waits
        await uses.close()
        return uses.pending, db.writes

    assert asyncio.run(stuck()) == (0, ["key_a"])
