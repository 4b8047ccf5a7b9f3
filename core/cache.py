"""What a credential is worth, remembered for a moment.

Every authenticated request asks the database whether the caller's client is still enabled
(a JWT alone would keep working after ``storefront clients disable`` until it expires) or what
an API key belongs to. That read was half of the database work of ``GET /users/{id}``. The
answer is kept for ``STOREFRONT_AUTH_CACHE_TTL`` seconds (default 1): disabling a client or
revoking a key takes effect within that time, in every process, without any invalidation
message. ``0`` asks the database on every request.

Only answers for credentials that were already proven are kept: a client id from a token whose
signature verified, or the digest of an API key that exists. Misses are not cached, so random
keys cannot fill the memory; the number of entries is bounded by the number of real clients
and keys, and capped besides.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Entries kept at most; past it the cache starts over (a burst of keys, not a steady state).
MAX_ENTRIES = 10_000


class TTLCache(Generic[K, V]):
    def __init__(self, ttl: float, *, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        keep: Callable[[V], bool] = lambda _: True,
    ) -> V:
        """The value for ``key``: remembered, or ``await load()`` (remembered if ``keep``)."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = await load()
        if self.ttl > 0 and keep(value):
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value

    def discard(self, key: K) -> None:
        """Forget ``key``, so that the next get loads it (a change made by this process)."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
