"""When each API key was last used: written at most once a minute per key, off the request's
path.

A write per request would double the database work of every keyed request (and on SQLite
queue every keyed read behind the one writer). So:

- each process remembers when it last wrote each key's use, and writes again only a minute
  later: a flood of requests with one key starts one write a minute, not one per request;
- the write itself is conditional (``persistence.clients.record_key_use``: only when the
  stored time is a minute old), so that several instances together also write about once a
  minute per key;
- it runs as a background task that the request does not wait for, and that cannot fail it
  (``storefront.access.background``, shared with the usage counts): an error (a database that
  is down, say) is logged and the next minute tries again.
"""

from __future__ import annotations

import logging
import time

from persistence import clients
from persistence.db import Database
from persistence.models import utcnow
from storefront.access.background import OffPath

logger = logging.getLogger("storefront.access.last_use")

#: Keys remembered at most; past it those written over a minute ago are forgotten.
MAX_KEYS = 10_000
#: Seconds shutdown waits for writes still running before it cancels them.
CLOSE_TIMEOUT = 2.0


class LastUse:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.interval = clients.LAST_USE_INTERVAL.total_seconds()
        #: key id -> time.monotonic() of the last write started for it.
        self._started: dict[str, float] = {}
        self._writes = OffPath()

    def touch(self, key_id: str) -> None:
        """Note that ``key_id`` authenticated a request now. Returns at once; at most one
        write per key per interval is started."""
        now = time.monotonic()
        last = self._started.get(key_id)
        if last is not None and now - last < self.interval:
            return
        if last is None and len(self._started) >= MAX_KEYS:
            self._forget(now)
        # Noted before the task runs: the requests that follow this one, in the same tick
        # or while the write waits for the database, start none of their own.
        self._started[key_id] = now
        self._writes.start(self._write(key_id))

    def _forget(self, now: float) -> None:
        stale = [key for key, at in self._started.items() if now - at >= self.interval]
        for key in stale:
            del self._started[key]
        if len(self._started) >= MAX_KEYS:  # all recent: a burst of keys, start over
            self._started.clear()

    async def _write(self, key_id: str) -> None:
        try:
            await self.db.write(clients.record_key_use, key_id=key_id, now=utcnow())
        except Exception as exc:  # nothing may escape a background task
            # Not recorded this minute; the next request after the interval tries again.
            logger.warning(
                "could not record the last use of API key %s: %s", key_id, type(exc).__name__
            )

    @property
    def pending(self) -> int:
        """Writes started and not finished."""
        return self._writes.pending

    async def close(self) -> None:
        """Let writes still running finish (briefly), before the database goes away."""
        await self._writes.close(CLOSE_TIMEOUT)
