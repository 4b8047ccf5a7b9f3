"""Where persistence.db.Database runs its units of work."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.settings import Settings
from persistence.db import Database


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


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_postgresql_drivers_connect_with_our_settings(
    backend: str, database_url: str, driver: str
) -> None:
    """Both drivers the README names connect, plan every execution for its parameters, and
    give up on a statement after the timeout."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's drivers")
    url = make_url(database_url).set(drivername=f"postgresql+{driver}")

    async def scenario() -> tuple[str, str]:
        db = Database(url, timeout=0.5)
        try:
            mode = await db.read(lambda c: str(c.scalar(text("SHOW plan_cache_mode"))))
            with pytest.raises((TimeoutError, DBAPIError)):
                await db.read(lambda c: c.execute(text("SELECT pg_sleep(5)")))
            return mode, await db.read(lambda c: str(c.scalar(text("SELECT 'still here'"))))
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == ("force_custom_plan", "still here")


@pytest.mark.pgbouncer(only=True)
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_through_pgbouncer_every_transaction_gets_the_connection_settings(
    database_url: str, driver: str
) -> None:
    """Transaction pooling: many transactions at once share PgBouncer's few server
    connections, and each still plans per execution and gives up after the timeout."""
    url = make_url(database_url).set(drivername=f"postgresql+{driver}")

    def settings_and_server(connection: Connection) -> tuple[str, str, int]:
        mode, timeout, pid = connection.execute(
            text(
                "SELECT current_setting('plan_cache_mode'), "
                "current_setting('statement_timeout'), pg_backend_pid()"
            )
        ).one()
        return str(mode), str(timeout), int(pid)

    async def scenario() -> list[tuple[str, str, int]]:
        db = Database(url, timeout=0.5, pooler="pgbouncer")
        try:
            seen = await asyncio.gather(*(db.read(settings_and_server) for _ in range(40)))
            with pytest.raises((TimeoutError, DBAPIError)):
                await db.read(lambda c: c.execute(text("SELECT pg_sleep(5)")))
            # The same statement again, on whichever server connection is free: nothing
            # prepared by name is left behind to collide with or to go missing.
            seen += await asyncio.gather(*(db.read(settings_and_server) for _ in range(40)))
            return seen
        finally:
            await db.dispose()

    seen = asyncio.run(scenario())
    assert {(mode, timeout) for mode, timeout, _ in seen} == {("force_custom_plan", "500ms")}
    assert len(seen) == 80
    assert 1 < len({pid for _, _, pid in seen}) <= 10  # PgBouncer's pool, shared


@pytest.mark.pgbouncer(only=True)
def test_a_direct_connection_setup_is_refused_by_pgbouncer(database_url: str) -> None:
    """Why STOREFRONT_DATABASE_POOLER exists: what a direct connection sets when it connects
    (plan_cache_mode) is a startup parameter PgBouncer refuses."""

    async def scenario() -> None:
        db = Database(database_url, timeout=2)
        try:
            await db.read(lambda c: c.execute(text("SELECT 1")))
        finally:
            await db.dispose()

    with pytest.raises(Exception, match="unsupported startup parameter"):
        asyncio.run(scenario())
