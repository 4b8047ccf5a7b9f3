"""Where persistence.db.Database runs its units of work."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from typing import Any, SupportsIndex

import pytest
from sqlalchemy import Connection, TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.errors import SearchTooBroad
from core.settings import Settings
from persistence.db import SCANS_AT_ONCE, Database


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


def test_scans_share_a_few_connections_whichever_threads_run_them(settings: Settings) -> None:
    """anyio ends a worker thread after 10 s idle and starts another when needed (each event
    loop has its own). Scans on SQLite used to keep a connection per thread, never closed:
    every thread that had run one left a connection and its page cache behind."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's scans run on worker threads")
    db = Database(settings.database_url)
    threads: list[threading.Thread] = []
    connections: set[int] = set()

    def where(connection: Connection) -> None:
        threads.append(threading.current_thread())
        raw = connection.connection.dbapi_connection
        connections.add(id(raw))
        connection.scalar(text("SELECT 1"))

    async def scans() -> None:  # a new loop: new worker threads
        async with asyncio.TaskGroup() as group:
            for _ in range(SCANS_AT_ONCE):
                group.create_task(db.scan(where))

    try:
        for _ in range(4):
            asyncio.run(scans())
    finally:
        asyncio.run(db.dispose())
    assert len(set(threads)) > SCANS_AT_ONCE  # the scans did run on new threads
    assert 1 <= len(connections) <= SCANS_AT_ONCE


class _TakenMeanwhile(list[Any]):
    """An idle list that another scan empties between a look and a pop: it looks full once."""

    def __bool__(self) -> bool:
        return True

    def pop(self, index: SupportsIndex = -1) -> Any:
        if not super().__len__():
            raise IndexError("pop from empty list")
        return super().pop(index)


def test_a_scan_whose_idle_connection_was_taken_meanwhile_opens_another(
    settings: Settings,
) -> None:
    """Two scans may both see the one idle connection; the second then finds none to pop."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's scans run on worker threads")
    db = Database(settings.database_url)
    db._idle_scanners = _TakenMeanwhile()
    try:
        answer = asyncio.run(db.scan(lambda c: str(c.scalar(text("SELECT 'scanned'")))))
    finally:
        asyncio.run(db.dispose())
    assert answer == "scanned"


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
def test_through_pgbouncer_every_statement_is_bounded_and_nothing_is_left_behind(
    database_url: str, driver: str
) -> None:
    """Transaction pooling: many reads at once share PgBouncer's few server connections, and
    each still gives up after the timeout: asyncpg's own (it cancels the statement on the
    server), or, with psycopg, the statement timeout each transaction sets. (plan_cache_mode is
    left as the server has it: every statement here is prepared unnamed and run once, and
    PostgreSQL plans an unnamed statement for the parameters it is bound to.)"""
    url = make_url(database_url).set(drivername=f"postgresql+{driver}")

    def settings_and_server(connection: Connection) -> tuple[str, int]:
        # Each read holds its server connection a little (pg_sleep), so that a burst needs
        # more than one even when the machine is slow to start them.
        timeout, pid, _ = connection.execute(
            text("SELECT current_setting('statement_timeout'), pg_backend_pid(), pg_sleep(0.02)")
        ).one()
        return str(timeout), int(pid)

    async def scenario() -> tuple[list[tuple[str, int]], float]:
        db = Database(url, timeout=0.5, pooler="pgbouncer")
        try:
            seen = await asyncio.gather(*(db.read(settings_and_server) for _ in range(40)))
            started = time.monotonic()
            with pytest.raises((TimeoutError, DBAPIError)):
                await db.read(lambda c: c.execute(text("SELECT pg_sleep(5)")))
            waited = time.monotonic() - started
            # The same statement again, on whichever server connection is free: nothing
            # prepared by name is left behind to collide with or to go missing.
            seen += await asyncio.gather(*(db.read(settings_and_server) for _ in range(40)))
            return seen, waited
        finally:
            await db.dispose()

    seen, waited = asyncio.run(scenario())
    assert waited < 3  # cut at the 0.5 s timeout, not after the statement's 5
    # psycopg's reads are transactions that set the timeout; asyncpg's are single statements
    # in autocommit, bounded by asyncpg (the server's own setting stays as it is, here 0).
    expected = "500ms" if driver == "psycopg" else "0"
    assert {timeout for timeout, _ in seen} == {expected}
    assert len(seen) == 80
    # PgBouncer's pool of 10, shared: each burst of 40 met at most 10 server connections (the
    # cancelled pg_sleep may cost its connection, so the two bursts may not share all of them).
    for burst in (seen[:40], seen[40:]):
        assert 1 < len({pid for _, pid in burst}) <= 10


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


#: A statement that would run for minutes unless stopped.
SLOW = {
    "sqlite": (
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 1000000000) "
        "SELECT count(*) FROM r"
    ),
    "postgresql": "SELECT pg_sleep(60)",
}


COUNT_TO = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < :n) "
    "SELECT count(*) FROM r"
)


def _short(backend: str, seconds: float = 0.06) -> TextClause:
    """A statement that takes at least about ``seconds`` on this machine."""
    if backend == "postgresql":
        return text("SELECT pg_sleep(:seconds)").bindparams(seconds=seconds)
    connection = sqlite3.connect(":memory:")
    try:
        # The fastest of a few runs: on a busy machine a slow one would make it too short.
        fastest = math.inf
        for _ in range(3):
            start = time.perf_counter()
            connection.execute(COUNT_TO, {"n": 100_000}).fetchall()
            fastest = min(fastest, time.perf_counter() - start)
    finally:
        connection.close()
    return text(COUNT_TO).bindparams(n=round(seconds / fastest * 100_000))


def test_a_scan_past_its_budget_is_stopped_and_the_database_serves_on(
    backend: str, database_url: str
) -> None:
    """The budget bounds the whole scan, not each statement: two statements of 80 ms each
    overrun 100 ms together. Meanwhile and afterwards the database answers as usual."""
    short = _short(backend, 0.08)

    def two_statements(connection: Connection) -> None:
        connection.execute(short)
        connection.execute(short)

    async def scenario() -> tuple[list[float], list[int], str]:
        db = Database(database_url, scan_budget=0.1)
        loop = asyncio.get_running_loop()
        try:
            elapsed = []
            for work in (lambda c: c.execute(text(SLOW[backend])), two_statements):
                start = loop.time()
                with pytest.raises(SearchTooBroad) as refused:
                    await db.scan(work)
                elapsed.append(loop.time() - start)
                assert "narrow it with a longer search term" in refused.value.message
            slow = asyncio.create_task(db.scan(lambda c: c.execute(text(SLOW[backend]))))
            await asyncio.sleep(0.02)  # the loop turns while the scan runs
            answers = [(await db.read(_thread_and_answer))[1] for _ in range(5)]
            assert not slow.done()  # the reads did not wait for it
            with pytest.raises(SearchTooBroad):
                await slow
            after = await db.scan(lambda c: str(c.scalar(text("SELECT 'after'"))))
            return elapsed, answers, after
        finally:
            await db.dispose()

    elapsed, answers, after = asyncio.run(scenario())
    assert (answers, after) == ([42] * 5, "after")
    # Stopped at the deadline, give or take a busy machine's delays: not after a minute.
    assert all(0.1 <= seconds < 1.0 for seconds in elapsed), elapsed


def test_a_scan_within_budget_answers(backend: str, database_url: str) -> None:
    short = _short(backend)

    async def scenario() -> str:
        db = Database(database_url, scan_budget=2.0)
        try:
            await db.scan(lambda c: c.execute(short))
            return await db.scan(lambda c: str(c.scalar(text("SELECT 'done'"))))
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == "done"


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_the_scan_budget_holds_on_both_postgresql_drivers(
    backend: str, database_url: str, driver: str
) -> None:
    """SET LOCAL statement_timeout goes through each driver's own cursor, and ends with the
    transaction: the connection's own timeout is back for the next read."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's drivers")
    url = make_url(database_url).set(drivername=f"postgresql+{driver}")

    async def scenario() -> tuple[str, str]:
        db = Database(url, timeout=5, scan_budget=0.1)
        try:
            before = await db.read(lambda c: str(c.scalar(text("SHOW statement_timeout"))))
            with pytest.raises(SearchTooBroad):
                await db.scan(lambda c: c.execute(text(SLOW["postgresql"])))
            after = await db.read(lambda c: str(c.scalar(text("SHOW statement_timeout"))))
            assert after == before
            return before, await db.scan(lambda c: str(c.scalar(text("SELECT 'after'"))))
        finally:
            await db.dispose()

    before, after = asyncio.run(scenario())
    # psycopg sets the database timeout at connect; asyncpg enforces it on the client side.
    assert before == ("5s" if driver == "psycopg" else "0")
    assert after == "after"
