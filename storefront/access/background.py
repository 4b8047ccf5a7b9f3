"""Database writes that run off the request's path: what ``last_use`` and ``usage`` share.

A request that has something to record starts a task and does not wait for it; the task is
kept here until it ends (the event loop holds only a weak reference to a task), and
shutdown waits for the tasks still running, briefly, before the database goes away. A task
catches and logs its own errors: nothing escapes into the loop's "exception never
retrieved" reports, and nothing fails a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class OffPath:
    """The background tasks of one recorder."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in a task of the running loop; returns at once."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending(self) -> int:
        """Tasks started and not finished."""
        return len(self._tasks)

    async def close(self, grace: float) -> None:
        """Let the tasks still running finish, for ``grace`` seconds at most; then cancel
        those that have not."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
