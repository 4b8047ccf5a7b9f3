"""One-time identifiers: a client assertion's or a DPoP proof's ``jti`` is accepted once.

RFC 7523 §3 and RFC 9449 §11.1 ask the server to refuse a second use of a ``jti`` for as long
as the JWT carrying it could be accepted. The memory of what was seen lives where the
rate-limit counts live, so that it is shared exactly as far as they are: on Redis (every
instance sharing the store refuses what another one accepted; one ``SET NX PX`` round trip
per check) or, on the embedded default's ``memory://`` store, in this process.

An identifier is kept as a digest of ``namespace`` and ``ident`` (a client-chosen ``jti`` is
of any length), and forgotten when the JWT could no longer be accepted anyway (``until``).
A store that cannot be reached is a refusal (``ReplayStoreUnavailable``, a 503), whatever
STOREFRONT_RATE_LIMIT_FAIL_OPEN says: a proof whose replay cannot be ruled out is not accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING

from core.errors import ReplayStoreUnavailable

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

logger = logging.getLogger("storefront.access.replay")

#: Seconds a Redis call may take before the store counts as unreachable (as the limiter's).
STORE_TIMEOUT = 0.5
#: Identifiers one process remembers at most on the in-process store (about 100 bytes each):
#: past it, new proofs are refused (503) rather than an unexpired one forgotten.
MAX_REMEMBERED = 1_000_000


class ReplayGuard:
    """``await first_use(namespace, ident, until)``: True the first time, False on a replay."""

    def __init__(self, redis_pool: ConnectionPool | None, key_prefix: str) -> None:
        self._prefix = f"{key_prefix}:replay:"
        self._redis = None
        if redis_pool is not None:
            from redis.asyncio import Redis

            self._redis = Redis(connection_pool=redis_pool)
        #: In process: digest -> when it may be forgotten, and the digests in the order they
        #: came (their ``until`` rises nearly in that order: a proof's lifetime is a setting).
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    async def first_use(self, namespace: str, ident: str, until: float) -> bool:
        digest = hashlib.sha256(f"{namespace}\0{ident}".encode()).hexdigest()
        now = time.time()
        if self._redis is None:
            return self._first_use_here(digest, until, now)
        from redis.exceptions import RedisError

        # At least a second: a JWT that has just expired is refused by its own check anyway.
        ttl_ms = max(1000, math.ceil((until - now) * 1000))
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                first = await self._redis.set(self._prefix + digest, b"1", nx=True, px=ttl_ms)
        except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
            logger.warning("replay store unreachable (%s); refusing", type(exc).__name__)
            raise ReplayStoreUnavailable() from exc
        return bool(first)

    def _first_use_here(self, digest: str, until: float, now: float) -> bool:
        while self._order and self._order[0][0] <= now:
            _, old = self._order.popleft()
            if self._seen.get(old, now + 1) <= now:
                del self._seen[old]
        if self._seen.get(digest, 0.0) > now:
            return False
        if len(self._seen) >= MAX_REMEMBERED:
            logger.warning("replay store full (%d identifiers); refusing", MAX_REMEMBERED)
            raise ReplayStoreUnavailable()
        self._seen[digest] = until
        self._order.append((until, digest))
        return True
