"""Where persistence.db.Database runs its units of work."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import Connection, text

from persistence.db import Database
from storefront.settings import Settings


def _thread_and_answer(connection: Connection) -> tuple[int, int]:
    return threading.get_ident(), int(connection.scalar(text("SELECT 41 + 1")) or 0)


def test_reads_run_on_the_loop_and_scans_off_it_on_sqlite(settings: Settings) -> None:
    async def scenario() -> tuple[int, int, int]:
        db = Database(settings.database_url)
        try:
            loop_thread = threading.get_ident()
            read_thread, answer = await db.read(_thread_and_answer)
            scan_thread, scanned = await db.scan(_thread_and_answer)
            assert answer == scanned == 42
            return loop_thread, read_thread, scan_thread
        finally:
            await db.dispose()

    loop_thread, read_thread, scan_thread = asyncio.run(scenario())
    if settings.database_url.startswith("sqlite"):
        assert read_thread == loop_thread  # a WAL read never waits for a lock
        assert scan_thread != loop_thread  # a read no index bounds must not hold the loop
    else:
        assert read_thread == scan_thread == loop_thread  # asyncpg: nothing blocks
