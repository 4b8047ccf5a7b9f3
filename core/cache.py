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

import asyncio
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
        #: Loads under way, per key: the requests that find one wait for it instead of
        #: starting their own (when an entry expires under load, every request in flight
        #: would otherwise read the database for it at once).
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        keep: Callable[[V], bool] = lambda _: True,
    ) -> V:
        """The value for ``key``: remembered, or ``await load()`` (remembered if ``keep``),
        a load already under way for it shared (with a TTL of 0, every call loads)."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        if self.ttl <= 0:
            return await load()
        while (pending := self._loading.get(key)) is not None:
            try:
                # Shielded: a waiter that is cancelled must not cancel the load of the others.
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this waiter was cancelled
                # The load itself was cancelled (its own request went away): load anew.
        loading: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = loading
        try:
            value = await load()
        except asyncio.CancelledError:
            loading.cancel()
            raise
        except BaseException as exc:
            loading.set_exception(exc)
            loading.exception()  # retrieved: no warning when no one else was waiting
            raise
        finally:
            del self._loading[key]
        loading.set_result(value)
        if keep(value):
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value

    def discard(self, key: K) -> None:
        """Forget ``key``, so that the next get loads it (a change made by this process)."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
