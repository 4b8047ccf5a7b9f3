"""The engines and the unit of work.

Queries (``persistence/users.py`` and friends) are plain functions: reads take a Core
:class:`~sqlalchemy.engine.Connection` and return rows (the ORM's identity map and object
loading tripled the cost of a one-row read), writes take an ORM
:class:`~sqlalchemy.orm.Session`. :class:`Database` decides where each unit of work runs:

- **SQLite reads run on the event loop, synchronously.** A read of a local SQLite file in WAL
  mode never waits for a lock (WAL readers do not block on writers) and every read query here
  is bounded by an index, so it takes tens of microseconds — less than one hop to a worker
  thread. aiosqlite hopped to its thread for every cursor, execute, fetch, BEGIN and COMMIT:
  GET /users/{id} spent more time on hops than on everything else together. Each thread reads
  on one connection of its own, kept open: a pool checkout and return cost as much as the query.
- **SQLite writes run on a worker thread**, one at a time per process: waiting for the write
  lock (another process may hold it) must not stall the event loop, and queueing writers
  here, in order, beats SQLite's busy handler, which polls with growing sleeps.
- **PostgreSQL** units of work run through asyncpg, the same synchronous functions as on
  SQLite, each unit in one greenlet (``greenlet_spawn``, the bridge under SQLAlchemy's own
  asyncio extension): while a statement waits on the network the loop serves other requests.
  A read is one round trip per statement: the engine's connections are in autocommit, so a
  one-statement read is not wrapped in BEGIN and ROLLBACK (PostgreSQL runs it as its own
  transaction, with the same snapshot a READ COMMITTED transaction would give it); asyncpg
  keeps each statement prepared on its connection; and a connection is not pinged when it is
  taken from the pool (``pool_pre_ping`` sent BEGIN, ";" and ROLLBACK before every unit of
  work). A connection the server has closed is noticed without a round trip instead
  (``_discard_closed``), and a read that meets a connection lost meanwhile is run once more
  on a new one. Writes and searches (whose statements each get a share of a time budget with
  ``SET LOCAL``) run in READ COMMITTED transactions. The commonest read, one prepared
  statement alone (``Database.one``), needs no unit of work: it takes the driver's connection
  from SQLAlchemy's pool (``Engine.raw_connection``) and awaits asyncpg's ``fetch`` on the
  event loop, without a SQLAlchemy Connection, a DB-API cursor or a greenlet around the
  statement (95 µs of client CPU against 137 through ``read``; asyncpg's own pool and
  ``fetchrow``: 96). Its connection then stays checked out for the next statement alone, up
  to half the pool and while the pool has one idle (``Database._kept_connection``): a
  checkout runs in a greenlet, and each new greenlet costs Python 3.11 an mmap and a munmap.
- **Behind a transaction pooler** (PgBouncer with ``pool_mode = transaction``;
  ``STOREFRONT_DATABASE_POOLER=pgbouncer``) each transaction may run on another server
  connection, so nothing is left on one between transactions: statements are prepared
  unnamed, on the server connection that then runs them (no cache of named statements, which
  would point at another connection's statements or collide with its names): asyncpg prepares
  with a Flush, and the pooler hands a connection on only at a Sync that leaves no
  transaction open, so a read is still one statement in autocommit (two round trips: the
  prepare, then the run). A statement is bounded by asyncpg itself (``command_timeout``);
  psycopg's statement timeout, which a direct connection sets at connect time, is set by each
  transaction instead (``set_config(…, true)``, i.e. ``SET LOCAL``), its reads included.

The URL operators already have (``sqlite:///x.db``, ``postgresql://…``) is mapped to the
driver here.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import anyio
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    String,
    bindparam,
    create_engine,
    event,
    func,
    select,
    true,
)
from sqlalchemy.engine import URL, Dialect, ExecutionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool
from sqlalchemy.util import greenlet_spawn

from core.errors import SearchTooBroad
from core.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
ReadWork = Callable[Concatenate[Connection, P], T]
#: Searches running at once on SQLite (Database.scan), each on a worker thread with one of
#: as many connections.
SCANS_AT_ONCE = 2
WriteWork = Callable[Concatenate[Session, P], T]
#: SQLite calls a scan's progress handler every this many virtual-machine instructions. A
#: scan of products runs about nine per row, so the deadline is looked at every hundred rows
#: or so (well under a millisecond); the calls cost little (a 170 ms scan took 180 ms with
#: them, within the noise of the busy machine measured: docs/notes-h3.md).
PROGRESS_STEPS = 1000
#: PostgreSQL's SQLSTATE for a statement cancelled, by statement_timeout among other causes.
QUERY_CANCELED = "57014"
#: The execution option that carries a scan's deadline (time.monotonic()) on PostgreSQL.
_DEADLINE = "storefront_scan_deadline"


def async_url(url: str | URL) -> URL:
    """Return ``url`` with the asyncio driver for its database (Alembic's and PostgreSQL's)."""
    parsed = make_url(url)
    # Only a URL that names no driver gets one; "+asyncpg" or "+psycopg" are kept as given.
    if parsed.drivername in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_url(url: str | URL) -> URL:
    # The standard library's sqlite3, whatever driver the URL named (aiosqlite included).
    return make_url(url).set(drivername="sqlite")


#: asyncpg prepares every statement, and psycopg every one run five times; PostgreSQL may
#: then plan a statement once for any parameters (a generic plan), and a search plan made
#: for a common term would serve a rare one, or a term with no trigram. Plan each execution.
POSTGRES_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def transaction_settings(timeout: float) -> dict[str, str]:
    """What each transaction sets for itself behind a transaction pooler: the statement
    timeout, which a direct connection sets once when it connects. (Not POSTGRES_SETTINGS:
    there every statement is prepared unnamed and run once, and PostgreSQL plans an unnamed
    statement for the parameters it is bound to.)"""
    return {"statement_timeout": str(round(timeout * 1000))}


def _postgres_connect_args(url: URL, timeout: float, *, pooled: bool) -> dict[str, Any]:
    """The driver's own names for: give up connecting, and give up on a statement, after
    ``timeout`` seconds; and POSTGRES_SETTINGS (per connection, unless ``pooled``)."""
    if pooled:
        # A pooler refuses startup parameters it does not know (PgBouncer: "unsupported
        # startup parameter"), and would not keep them on its server connections anyway.
        if url.get_driver_name() == "psycopg":
            # prepare_threshold=None: never prepare, so no named statement outlives its
            # transaction.
            return {"connect_timeout": max(1, math.ceil(timeout)), "prepare_threshold": None}
        return {
            "timeout": timeout,
            "command_timeout": timeout,
            # asyncpg's own cache of named statements, and SQLAlchemy's, both off; the empty
            # name makes asyncpg prepare the unnamed statement, which lives only until the next
            # one on that server connection: nothing builds up on the pooler's connections
            # (uuid names, SQLAlchemy's suggestion, avoid collisions but leave every statement
            # behind until a DISCARD), and the server connection that prepares it also runs it
            # (asyncpg ends the prepare with a Flush: the pooler hands the connection on only
            # at a Sync that leaves no transaction open).
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unnamed,
        }
    if url.get_driver_name() == "psycopg":
        settings = {**POSTGRES_SETTINGS, "statement_timeout": str(round(timeout * 1000))}
        return {
            "connect_timeout": max(1, math.ceil(timeout)),
            "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
        }
    return {"timeout": timeout, "command_timeout": timeout, "server_settings": POSTGRES_SETTINGS}


def _unnamed() -> str:
    return ""


def _configure_pooled(engine: Engine, settings: dict[str, str]) -> None:
    """Make every transaction set ``settings`` for itself (``SET LOCAL``), in one statement."""
    # Literals, not parameters: the drivers spell parameters differently ($1, %s), and the
    # values are ours (a setting name, a number of milliseconds), never a client's.
    sql = "SELECT " + ", ".join(
        f"set_config('{name}', '{value}', true)" for name, value in settings.items()
    )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver's connection: the SQLAlchemy connection is between "no transaction"
        # and "in one" while this event runs, and a statement through it would begin another.
        # The driver opens the transaction (BEGIN) before it runs the statement.
        driver_rows(conn, sql, [])


def driver_rows(
    connection: Connection, sql: str, values: list[Any] | dict[str, Any]
) -> tuple[list[tuple[Any, ...]], Any]:
    """Run ``sql`` on the DB-API connection under ``connection``: its rows and the cursor's
    description. A driver error is raised as SQLAlchemy raises it (``DBAPIError.instance``),
    and a connection it finds lost is invalidated, so that the pool replaces it."""
    dialect = connection.dialect
    raw = connection.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(sql, values)
        return list(cursor.fetchall()) if cursor.description else [], cursor.description
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, raw, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            values,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc
    finally:
        cursor.close()


def _discard_closed(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
    """At checkout: a connection whose socket the server closed (a restart, an idle timeout,
    pg_terminate_backend) is replaced by a new one, as ``pool_pre_ping`` would, but without a
    round trip: the driver saw the close when it happened. Raising DisconnectionError here is
    SQLAlchemy's documented way to have the pool discard the connection and take another."""
    if _closed(dbapi_connection.driver_connection):
        raise DisconnectionError("the server closed this connection")


def _closed(driver: Any) -> bool:
    """Whether the server closed this asyncpg or psycopg connection (seen without a round
    trip: the driver noticed the close when it happened)."""
    return bool(driver.is_closed() if hasattr(driver, "is_closed") else driver.closed)


async def _run_on_driver(
    driver: Any, compiled: _Compiled, values: list[Any] | dict[str, Any], *, asyncpg: bool
) -> tuple[list[Any], Sequence[Sequence[Any]]]:
    """Run a compiled statement on the driver's own connection, asyncpg's or psycopg's: its
    rows, and (on asyncpg, for a statement's first run only) the columns' (name, type code),
    which its result processors depend on."""
    if asyncpg:
        if compiled.processing is None:
            # The first run learns the columns' types from the statement prepared unnamed
            # (a Record carries none); from the next run on, asyncpg's own cache keeps the
            # statement prepared on each connection (behind a pooler it prepares it unnamed,
            # every run, as statement_cache_size=0 asks).
            statement = await driver.prepare(compiled.sql, name="")
            described = [(a.name, a.type.oid) for a in statement.get_attributes()]
            return await statement.fetch(*values), described
        return await driver.fetch(compiled.sql, *values), ()
    async with driver.cursor() as cursor:  # psycopg
        await cursor.execute(compiled.sql, values)
        return await cursor.fetchall(), cursor.description or ()


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: a statement through SQLAlchemy costs ten times as much.
        conn.connection.dbapi_connection.execute(begin)


def _statement_budget(
    conn: Connection,
    _cursor: Any,
    _statement: str,
    _parameters: Any,
    context: ExecutionContext | None,
    _executemany: bool,
) -> None:
    """On PostgreSQL, before each statement of a scan: what is left of its budget becomes the
    statement's timeout. statement_timeout bounds one statement, and a search runs several
    (its count, then its page): each gets what the earlier ones left, so that together they
    stay within the budget. SET LOCAL lasts until the transaction ends."""
    deadline = None if context is None else context.execution_options.get(_DEADLINE)
    if deadline is None:
        return
    # At least 1: statement_timeout = 0 means no timeout. A parameter, not a literal: one
    # statement that the driver keeps prepared, not a new one per value.
    left = max(1, math.ceil((deadline - time.monotonic()) * 1000))
    _SET_LOCAL_TIMEOUT.one(conn, milliseconds=str(left))


#: Statements a scan runs with this execution option set go without a budget of their own:
#: those bounded by construction (a page's rows read by their primary keys).
UNBUDGETED = {_DEADLINE: None}


def _over_budget(exc: BaseException, deadline: float) -> bool:
    """Whether ``exc`` is the database giving up on a scan because its deadline passed (and
    not, say, an operator cancelling it: a 503). A millisecond's grace for the server's timer."""
    if time.monotonic() < deadline - 0.001:
        return False
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.OperationalError):
        return orig.sqlite_errorname == "SQLITE_INTERRUPT"
    return getattr(orig, "sqlstate", None) == QUERY_CANCELED


class Database:
    """Owns the engines; runs units of work where they belong.

    ``await db.read(users.get_user, user_id=...)`` runs a function of a Connection in one read
    transaction; ``await db.write(users.create_user, ...)`` runs a function of a Session in one
    write transaction, committed when it returns and rolled back when it raises.

    On SQLite, writers open their transaction with ``BEGIN IMMEDIATE``: a deferred transaction
    that reads and then writes cannot wait for the write lock (SQLite reports "database is
    locked" at once to avoid deadlock), so concurrent updates would fail instead of queueing.
    Readers keep deferred transactions, which WAL lets run beside a writer.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        timeout: float = 10.0,
        scan_budget: float = 0.25,
        pooler: str = "none",
        pool_size: int = 20,
        echo: bool = False,
    ) -> None:
        # aiosqlite (Alembic's driver here) logs every statement with its parameters at
        # DEBUG, password hashes among them; no log level may let those through.
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
        self.timeout = timeout
        self.pooler = pooler
        self.scan_budget = scan_budget
        self.sqlite = is_sqlite(url)
        self.url = _sqlite_url(url) if self.sqlite else async_url(url)
        self._read_engine: Engine | None = None
        self._write_engine: Engine | None = None
        self._async_engine: AsyncEngine | None = None
        if self.sqlite:
            connect_args = {"timeout": timeout, "check_same_thread": False}
            self._read_engine = create_engine(self.url, echo=echo, connect_args=connect_args)
            _configure_sqlite(self._read_engine, immediate=False)
            self._readers = threading.local()
            self._scan_slots = anyio.CapacityLimiter(SCANS_AT_ONCE)
            # Scans run on whichever worker thread anyio hands them, and anyio ends a thread
            # after 10 s idle: connections kept per thread were left open by every thread
            # that ended (each with up to 2 MB of page cache), for as long as the process
            # lived. Scans take one of these instead: at most SCANS_AT_ONCE, ever.
            self._idle_scanners: list[Connection] = []
            self._open_readers: list[Connection] = []
            self._write_engine = create_engine(self.url, echo=echo, connect_args=connect_args)
            _configure_sqlite(self._write_engine, immediate=True)
            self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
            # One writer thread at a time: SQLite serialises writers anyway.
            self._write_slot = anyio.CapacityLimiter(1)
        else:
            # asyncpg bounds every statement itself (command_timeout: past it, it cancels the
            # statement on the server); psycopg gets statement_timeout at connect, which a
            # pooler refuses, so behind one each of its transactions sets it (SET LOCAL), and
            # its reads are transactions too.
            #: The driver, decided once: asyncpg, or psycopg (which operators may name).
            self._asyncpg = bounded_by_driver = self.url.get_driver_name() == "asyncpg"
            self._reads_in_transactions = pooler != "none" and not bounded_by_driver
            self._async_engine = create_async_engine(
                self.url,
                echo=echo,
                pool_timeout=timeout,
                pool_size=pool_size,
                max_overflow=0,
                # A read's statement is its own transaction: no BEGIN, no ROLLBACK. Behind a
                # pooler too: asyncpg prepares an unnamed statement with a Flush, not a Sync,
                # so the pooler keeps the server connection until the statement has run.
                isolation_level="READ COMMITTED" if self._reads_in_transactions else "AUTOCOMMIT",
                connect_args=_postgres_connect_args(self.url, timeout, pooled=pooler != "none"),
            )
            engine = self._async_engine.sync_engine
            event.listen(engine.pool, "checkout", _discard_closed)
            event.listen(engine, "before_cursor_execute", _statement_budget)
            if pooler != "none" and not bounded_by_driver:
                _configure_pooled(engine, transaction_settings(timeout))
            self._read_engine = engine
            #: Connections of the pool kept checked out between statements alone (last in,
            #: first out), at most ``_keep`` of them: see ``_statement_on_driver``.
            self._kept: list[PoolProxiedConnection] = []
            self._keep = pool_size // 2
            # The same pool; each connection taken through it runs transactions, and is back
            # in autocommit when it is returned.
            self._write_engine = engine.execution_options(isolation_level="READ COMMITTED")
            self._writes = sessionmaker(self._write_engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            timeout=settings.database_timeout,
            scan_budget=settings.search_budget,
            pooler=settings.database_pooler,
            pool_size=settings.database_pool_size,
        )

    async def read(self, work: ReadWork[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work(connection, ...)`` in a read transaction."""
        if self.sqlite:
            return self._read_sqlite(work, *args, **kwargs)
        return await self._unit_of_work(partial(self._read_postgres, work, *args, **kwargs))

    def _read_postgres(self, work: ReadWork[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        assert self._read_engine is not None
        for attempt in (1, 2):
            try:
                with self._read_engine.connect() as connection:
                    if self._reads_in_transactions:
                        connection.begin()  # the begin event sets the statement timeout
                    return self._read_on(connection, work, *args, **kwargs)
            except DBAPIError as exc:
                # Lost between the check at checkout and the statement (the server went away
                # meanwhile): a read changes nothing, so it is run once more, on a connection
                # the pool opens anew (SQLAlchemy invalidated the pool's older ones).
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def one(self, query: PreparedQuery[R], /, **params: Any) -> R | None:
        """Run one prepared statement alone, as its own unit of work: its first row, or None."""
        rows = await self._statement(query, params)
        return query.row_type(*rows[0]) if rows else None

    async def all(self, query: PreparedQuery[R], /, **params: Any) -> list[R]:
        """Run one prepared statement alone, as its own unit of work: its rows."""
        return [query.row_type(*row) for row in await self._statement(query, params)]

    async def _statement(self, query: PreparedQuery[Any], params: dict[str, Any]) -> list[Any]:
        """A statement alone, the commonest read (a user by id, a page with its total, a
        client): on SQLite on this thread's reader, as every read; on PostgreSQL on the
        driver's own connection, with neither a SQLAlchemy Connection nor its DB-API cursor
        around it (together about 40 µs of a 137 µs read, measured in process). psycopg
        behind a pooler reads in transactions that set their own timeout: there a statement
        alone is a unit of work like any other."""
        if self.sqlite:
            return query.rows(self._reader(), params)
        if self._reads_in_transactions:
            return await self.read(query.rows, params)
        for attempt in (1, 2):
            try:
                return await self._statement_on_driver(query, params)
            except DBAPIError as exc:
                # As in _read_postgres: a connection lost meanwhile, once more on a new one.
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def _statement_on_driver(
        self, query: PreparedQuery[Any], params: dict[str, Any]
    ) -> list[Any]:
        engine = self._read_engine
        assert engine is not None
        pooled = await self._kept_connection()
        if pooled is None:
            # The pool's checkout may open a connection (the dialect awaits it from a
            # greenlet); the statement itself is awaited here, on the event loop.
            pooled = await greenlet_spawn(engine.raw_connection)
        lost = True
        try:
            dialect = engine.dialect
            compiled = query.compiled(dialect)
            values = query.values(compiled, params)
            try:
                found, described = await _run_on_driver(
                    pooled.driver_connection, compiled, values, asyncpg=self._asyncpg
                )
            except Exception as exc:
                # Raised as SQLAlchemy raises a driver's error (PostgreSQL's SQLSTATE kept on
                # .orig), so that storefront.http.problems judges it as any other.
                lost = _closed(pooled.driver_connection) or isinstance(exc, OSError)
                raise DBAPIError.instance(
                    compiled.sql,
                    values,
                    exc,
                    Exception,
                    connection_invalidated=lost,
                    dialect=dialect,
                ) from exc
            lost = False
            return query.processed(compiled, dialect, found, described)
        finally:
            if lost:
                # Lost, timed out or cancelled mid-statement: not handed out again. Soft: it is
                # closed at its next checkout, which runs where the close can be awaited.
                pooled.invalidate(soft=True)
                await self._return_to_pool(pooled)
            elif len(self._kept) < self._keep and self._pool_has_idle():
                self._kept.append(pooled)
            else:
                await self._return_to_pool(pooled)

    async def _kept_connection(self) -> PoolProxiedConnection | None:
        """A connection kept from an earlier statement alone, or None.

        A checkout from SQLAlchemy's pool has to run in a greenlet (it may connect), and
        Python 3.11 gives every new greenlet a frame stack of its own (an mmap and a munmap):
        checkout and return cost a one-row read 50 µs of its 170 inside a request, measured in
        process. So a statement alone gives its connection back to this list, not to the pool,
        and the next takes it from here with neither. At most half the pool is kept, and a
        unit of work (a write, a search, a read of several statements) that finds the pool
        empty has them back first (``_make_room``). A connection the server has closed
        meanwhile (a restart, an idle timeout) is noticed without a round trip, as the pool's
        checkout notices it (``_discard_closed``), and goes back to the pool, which opens a
        new one at its next checkout."""
        while self._kept:
            pooled = self._kept.pop()
            if not _closed(pooled.driver_connection):
                return pooled
            pooled.invalidate(soft=True)
            await self._return_to_pool(pooled)
        return None

    def _pool_has_idle(self) -> bool:
        """Whether the pool holds a connection no one uses, so that no checkout waits on it:
        a statement's connection is kept only then. Else it goes back to the pool, whose
        waiters are served in turn; kept, it would go to whichever request came next, and a
        waiter could wait out its timeout (behind PgBouncer, at the pool's limit, p99 rose
        from 1.5x p50 to 4x)."""
        assert self._read_engine is not None
        pool = self._read_engine.pool
        return isinstance(pool, QueuePool) and pool.checkedin() > 0

    async def _unit_of_work(self, work: Callable[[], T]) -> T:
        """Run ``work``, a unit of work on PostgreSQL that takes its connection from the pool,
        in a greenlet (the bridge to the driver's awaits), after ``_make_room``."""

        def run() -> T:
            self._make_room()
            return work()

        return await greenlet_spawn(run)

    def _make_room(self) -> None:
        """Before a unit of work takes a connection (in its greenlet): if the pool has none
        idle, the connections kept for statements alone go back to it, so that no unit of
        work waits for a connection that sits kept and idle (say, every search while the
        connections of an earlier burst of reads are kept)."""
        if not self._kept or self._pool_has_idle():
            return
        kept, self._kept = self._kept, []
        for pooled in kept:
            pooled.close()  # in a greenlet: psycopg's adapter may await its rollback

    async def _return_to_pool(self, pooled: PoolProxiedConnection) -> None:
        # On asyncpg the return awaits nothing (SQLAlchemy's adapter ends only a transaction
        # it began, and this connection is in autocommit); psycopg's adapter always awaits
        # its rollback.
        if self._asyncpg:
            pooled.close()
        else:
            await greenlet_spawn(pooled.close)

    async def scan(self, work: ReadWork[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Like :meth:`read`, for a search, which may read far more than a page (a term too
        short for the trigram index reads every product), bounded by ``scan_budget`` seconds
        of database time: past it the database gives up and this raises
        :class:`~core.errors.SearchTooBroad`, with nothing half-read returned.

        On SQLite it runs on a worker thread, at most ``SCANS_AT_ONCE`` at a time, so that the
        event loop keeps serving meanwhile; a progress handler on that thread's connection
        interrupts the scan at the deadline. On PostgreSQL each statement gets what is left of
        the budget as its ``statement_timeout`` (``_statement_budget``)."""
        budget = self.scan_budget
        if not self.sqlite:
            deadline = float("inf")

            def bounded() -> T:
                nonlocal deadline
                assert self._write_engine is not None
                # A transaction: the budget is SET LOCAL, which lasts until it ends.
                with self._write_engine.connect() as connection:
                    # Database time: from when a connection is there, not while one is awaited.
                    deadline = time.monotonic() + budget
                    connection.execution_options(**{_DEADLINE: deadline})
                    return self._read_on(connection, work, *args, **kwargs)

            try:
                return await self._unit_of_work(bounded)
            except DBAPIError as exc:
                if _over_budget(exc, deadline):
                    raise SearchTooBroad(budget) from None
                raise

        def run() -> T:
            # No lock: the limiter lets at most SCANS_AT_ONCE threads here, and list.pop and
            # list.append are atomic; a check then a pop is not (two threads may both see
            # the one idle connection), hence the pop that may find the list empty.
            try:
                connection: Connection | None = self._idle_scanners.pop()
            except IndexError:
                connection = None
            if connection is None or connection.closed or connection.invalidated:
                if connection is not None and connection in self._open_readers:
                    self._open_readers.remove(connection)  # gone: not kept for dispose()
                connection = self._open_reader()
            raw = connection.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            deadline = time.monotonic() + budget
            # A true return interrupts the statement running (SQLITE_INTERRUPT).
            raw.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
            try:
                return self._read_on(connection, work, *args, **kwargs)
            except DBAPIError as exc:
                if _over_budget(exc, deadline):
                    raise SearchTooBroad(budget) from None
                raise
            finally:
                raw.set_progress_handler(None, 0)
                self._idle_scanners.append(connection)

        return await anyio.to_thread.run_sync(run, limiter=self._scan_slots)

    def _read_sqlite(self, work: ReadWork[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._read_on(self._reader(), work, *args, **kwargs)

    def _read_on(
        self, connection: Connection, work: ReadWork[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        # No BEGIN up front: a read of one statement (a PreparedQuery's) is its own
        # transaction, and BEGIN, COMMIT and SQLAlchemy's bookkeeping around them cost more
        # than the read. A second statement through SQLAlchemy begins a transaction (the
        # "begin" event), so that a count and its page see one snapshot; it ends here.
        try:
            return work(connection, *args, **kwargs)
        finally:
            if connection.in_transaction():
                connection.rollback()

    def _reader(self) -> Connection:
        """This thread's read connection (reads run on the event loop's thread)."""
        connection: Connection | None = getattr(self._readers, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self._open_reader()
            self._readers.connection = connection
        return connection

    def _open_reader(self) -> Connection:
        assert self._read_engine is not None
        connection = self._read_engine.connect()
        self._open_readers.append(connection)
        return connection

    async def write(self, work: WriteWork[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work(session, ...)`` in a write transaction."""
        if self.sqlite:
            with anyio.fail_after(self.timeout):  # TimeoutError: the database is busy
                await self._write_slot.acquire()
            try:
                return await anyio.to_thread.run_sync(
                    partial(self._write_sync, work, *args, **kwargs)
                )
            finally:
                self._write_slot.release()
        return await self._unit_of_work(partial(self._write_sync, work, *args, **kwargs))

    def _write_sync(self, work: WriteWork[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._writes() as session, session.begin():
            return work(session, *args, **kwargs)

    async def dispose(self) -> None:
        if self.sqlite:
            for connection in self._open_readers:
                connection.close()
            self._open_readers.clear()
            self._idle_scanners.clear()
        if self._async_engine is not None:
            kept, self._kept, self._keep = self._kept, [], 0  # none kept from now on
            for pooled in kept:
                await self._return_to_pool(pooled)
            # Its sync engine is the read and write engines: closed with it.
            await self._async_engine.dispose()
            return
        for engine in (self._read_engine, self._write_engine):
            if engine is not None:
                engine.dispose()


def _result_processor(type_: Any, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
    """SQLAlchemy's result processor for a column type (and the type the driver reported for
    the column), or the type's own faster reader of SQLite's stored text (``from_sqlite_text``),
    falling back to SQLAlchemy's on what it cannot read."""
    slow: Callable[[Any], Any] | None = type_.dialect_impl(dialect).result_processor(
        dialect, coltype
    )
    fast = getattr(type_, "from_sqlite_text", None)
    if dialect.name != "sqlite" or fast is None or slow is None:
        return slow

    def process(value: Any) -> Any:
        try:
            return fast(value)
        except (TypeError, ValueError):
            return slow(value)

    return process


#: (column, result processor) pairs: only the columns that have one.
_Processing = list[tuple[int, Callable[[Any], Any]]]


@dataclass(slots=True)
class _Compiled:
    """A PreparedQuery compiled for one driver."""

    sql: str
    #: The names of its positional parameters (None: the driver takes them by name).
    names: list[str] | None
    defaults: dict[str, Any]
    #: Known once a statement has run: a processor may depend on the type the driver reports
    #: for the column (asyncpg's numeric OIDs), read from the cursor's description.
    processing: _Processing | None = None


class PreparedQuery(Generic[R]):
    """A Core SELECT, compiled once per driver and run straight on the driver's connection.

    SQLAlchemy's executor costs more than the query it runs for a one-row read: a cache key
    computed from the statement on every call, an execution context, events, a result object
    (on SQLite about ten times the query; on PostgreSQL about 75 µs of a read's 260).
    For the hottest reads (a user by id, a client's status, a counter) this runs the SQL that
    SQLAlchemy compiled for the dialect, with SQLAlchemy's own bind values and result
    processors for each column type, on the DB-API connection inside the same connection (and
    transaction, if one is open): ``sqlite3``'s, or the asyncpg (or psycopg) connection behind
    SQLAlchemy's DB-API adapter, whose statements asyncpg keeps prepared. A driver error is
    raised as SQLAlchemy would raise it (``DBAPIError.instance``), and a connection it finds
    lost is invalidated, so that the pool replaces it. Rows come back as ``row_type`` (a
    NamedTuple). One path for every engine: nothing else runs these statements.
    """

    def __init__(self, statement: Select[*tuple[Any, ...]], row_type: Callable[..., R]) -> None:
        self.statement = statement
        self.row_type = row_type
        #: (dialect name, driver) -> compiled: asyncpg and psycopg spell parameters differently.
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        # positiontup: the parameters' order for a positional paramstyle, None for a named one.
        names = None if compiled.positiontup is None else list(compiled.positiontup)
        converted = [
            name
            for name, bind in compiled.binds.items()
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None
        ]
        if converted:
            # Bind values that need converting (dates, say) are not supported here.
            raise TypeError(f"bind parameters that need converting: {converted}")
        entry = _Compiled(compiled.string, names, dict(compiled.params))
        self._compiled[(dialect.name, dialect.driver)] = entry
        return entry

    def _processing(self, dialect: Dialect, description: Any) -> _Processing:
        processors = [
            _result_processor(column.type, dialect, described[1])
            for column, described in zip(self.statement.selected_columns, description, strict=True)
        ]
        return [(index, p) for index, p in enumerate(processors) if p is not None]

    def compiled(self, dialect: Dialect) -> _Compiled:
        return self._compiled.get((dialect.name, dialect.driver)) or self._compile(dialect)

    @staticmethod
    def values(compiled: _Compiled, params: dict[str, Any]) -> list[Any] | dict[str, Any]:
        """``params`` as the driver takes them: in order (positional paramstyles) or by name,
        with the statement's own bound values for those not given."""
        names, defaults = compiled.names, compiled.defaults
        if names is None:
            return {**defaults, **params}
        return [params[name] if name in params else defaults[name] for name in names]

    def processed(
        self,
        compiled: _Compiled,
        dialect: Dialect,
        found: list[Any],
        description: Sequence[Sequence[Any]],
    ) -> list[Any]:
        """The driver's rows, each column through SQLAlchemy's result processor for its type.
        ``description``: (name, type code) first, per column, as a DB-API cursor gives it."""
        processing = compiled.processing
        if processing is None:
            processing = compiled.processing = self._processing(dialect, description)
        if not processing:
            return found  # tuples, or asyncpg's Records: rows the row types unpack alike
        rows = []
        for row in found:
            # Only the columns that have a processor (a user row: its two times of six).
            cells = list(row)
            for index, process in processing:
                cells[index] = process(cells[index])
            rows.append(tuple(cells))
        return rows

    def rows(self, connection: Connection, params: dict[str, Any]) -> list[Any]:
        """The rows, unpacked by no row type (``one`` and ``all`` unpack them; so do
        Database.one and Database.all)."""
        dialect = connection.dialect
        compiled = self.compiled(dialect)
        values = self.values(compiled, params)
        found, description = driver_rows(connection, compiled.sql, values)
        return self.processed(compiled, dialect, found, description)

    def one(self, connection: Connection, /, **params: Any) -> R | None:
        """The first row, or None."""
        rows = self.rows(connection, params)
        return self.row_type(*rows[0]) if rows else None

    def all(self, connection: Connection, /, **params: Any) -> list[R]:
        return [self.row_type(*row) for row in self.rows(connection, params)]


#: ``SET LOCAL statement_timeout`` with the milliseconds as a parameter (set_config's third
#: argument, true: until the transaction ends).
_SET_LOCAL_TIMEOUT = PreparedQuery(
    select(func.set_config("statement_timeout", bindparam("milliseconds", type_=String), true())),
    lambda *values: values,
)
