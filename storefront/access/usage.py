"""Requests counted per day, per client and per API key, written in batches off the request's
path (``storefront usage`` shows them).

What counts, for a request whose caller was identified (``storefront.access.state``: a valid
access token, an API key, or a client that authenticated at the token endpoint):

- **refused**: answered 429 (a rate limit, or any budget of the caller's, was spent) or 403
  (a scope the caller lacks);
- **accepted**: answered with any other status below 500, errors included (a 404, a 400, a
  412): the request passed the caller's limits and scopes and the API answered it;
- neither: a 5xx (the server could not answer: a fault, a rate-limit store out of reach with
  STOREFRONT_RATE_LIMIT_FAIL_OPEN=false), and every request whose caller was not identified (a
  failed authentication, at /auth/token too, is not charged to the client it names: anyone may
  name any client id).

A database write per request would double the work of every request. So ``record`` is a dict
increment and nothing more, and one write adds up what the process counted since the last:

- the first request after a write starts a task (``storefront.access.background``, as
  ``last_use`` does) that waits STOREFRONT_USAGE_FLUSH_SECONDS and then writes everything
  counted meanwhile in one statement: at most one write per interval, none while idle, and a
  count is in the database within about one interval;
- the write adds to the stored counts (``persistence.usage.add_counts``, an upsert
  increment), so that several instances, each adding its own, add up exactly;
- a write that fails (a database down) is rolled back, and its counts are kept for the next;
- at shutdown (the app's lifespan, after the server has answered its last request) what is
  left is written at once: a process stopped cleanly loses none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date, timedelta

from persistence import usage
from persistence.db import Database
from storefront.access.background import OffPath
from storefront.access.state import Caller

logger = logging.getLogger("storefront.access.usage")

#: The statuses that count as refused: a budget spent (429), a scope missing (403).
REFUSED = frozenset({403, 429})
#: Seconds shutdown waits for a write still running before it cancels it.
CLOSE_TIMEOUT = 5.0
SECONDS_PER_DAY = 86_400
EPOCH = date(1970, 1, 1)

#: (UTC day as days since 1970-01-01, client id, key id or None) -> [accepted, refused]
Counts = dict[tuple[int, str, str | None], list[int]]


class Usage:
    def __init__(self, db: Database, *, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._counts: Counts = {}
        #: The task that waits for the interval before the next write; None: none waiting.
        self._timer: asyncio.Task[None] | None = None
        self._writes = OffPath()
        self._closing = False
        #: The UTC day requests count on (days since 1970-01-01), and when it ends (Unix time).
        self._day = 0
        self._day_ends = 0.0

    def record(self, caller: Caller, status: int) -> None:
        """Count a response to ``caller`` (the module's docstring says which count). Returns
        at once: a dict increment, and a task started by the first request after a write."""
        if status >= 500:
            return
        if time.time() >= self._day_ends:  # the first request of a UTC day
            self._next_day()
        key = (self._day, caller.client_id, caller.key_id)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0]
        counts[status in REFUSED] += 1
        if self._timer is None:
            self._arm()

    def _next_day(self) -> None:
        self._day = int(time.time()) // SECONDS_PER_DAY
        self._day_ends = (self._day + 1) * SECONDS_PER_DAY

    def _arm(self) -> None:
        if not self._closing:
            self._timer = self._writes.start(self._write_later())

    async def _write_later(self) -> None:
        await asyncio.sleep(self.interval)
        # From here on the requests counted start the next wait: a write that takes long
        # holds up no count.
        self._timer = None
        if not await self._write() and self._timer is None:
            self._arm()  # kept: tried again an interval from now

    async def _write(self) -> bool:
        """Write everything counted so far in one statement; whether it is written (or there
        was nothing to write). Counts of a write that failed are kept for the next."""
        if not self._counts:
            return True
        batch, self._counts = self._counts, {}
        rows = [
            usage.DayCount(
                EPOCH + timedelta(days=day), client_id, key_id or usage.NO_KEY, accepted, refused
            )
            for (day, client_id, key_id), (accepted, refused) in batch.items()
        ]
        try:
            await self.db.write(usage.add_counts, counts=rows)
        except asyncio.CancelledError:
            # Shutdown gave up on a write that hung: it may yet commit, so its counts are not
            # kept (they would be counted twice then).
            logger.warning(
                "the usage counts of %d requests may be lost: their write did not finish "
                "within %s s of shutdown",
                sum(a + r for a, r in batch.values()),
                CLOSE_TIMEOUT,
            )
            raise
        except Exception as exc:  # nothing may escape a background task
            # Rolled back: added to what was counted meanwhile, for the next write.
            for key, (accepted, refused) in batch.items():
                counts = self._counts.setdefault(key, [0, 0])
                counts[0] += accepted
                counts[1] += refused
            logger.warning(
                "could not write the usage counts of %d requests (%s); %s",
                sum(a + r for a, r in batch.values()),
                type(exc).__name__,
                "they are lost" if self._closing else "they are kept for the next write",
            )
            return False
        return True

    @property
    def pending(self) -> int:
        """Requests counted and not written yet."""
        return sum(a + r for a, r in self._counts.values())

    async def flush(self) -> bool:
        """Write what is counted now, without waiting for the interval (tests, shutdown)."""
        return await self._write()

    async def close(self) -> None:
        """At shutdown: let a write still running finish, then write what is left at once."""
        self._closing = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()  # still waiting: what it would have written is written below
        await self._writes.close(CLOSE_TIMEOUT)
        await self._write()
