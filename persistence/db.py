"""The engine and the unit of work.

SQLite and PostgreSQL are reached through their asyncio drivers; the URL operators already
have (``sqlite:///x.db``, ``postgresql://…``) is mapped to the driver here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def async_url(url: str | URL) -> URL:
    """Return ``url`` with the asyncio driver for its database."""
    parsed = make_url(url)
    # Only a URL that names no driver gets one; "+asyncpg" or "+psycopg" are kept as given.
    if parsed.drivername in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


class Database:
    """Owns the engines; hands out sessions as units of work.

    On SQLite, writers open their transaction with ``BEGIN IMMEDIATE``: a deferred transaction
    that reads and then writes cannot wait for the write lock (SQLite reports "database is
    locked" at once to avoid deadlock), so concurrent updates would fail instead of queueing.
    Readers keep deferred transactions, which WAL lets run beside a writer.
    """

    def __init__(self, url: str | URL, *, timeout: float = 10.0, echo: bool = False) -> None:
        # aiosqlite logs every statement with its parameters at DEBUG, password hashes
        # among them; no log level may let those through.
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
        self.url = async_url(url)
        self.sqlite = is_sqlite(self.url)
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": not self.sqlite}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": timeout}
        else:
            kwargs["connect_args"] = {"timeout": timeout, "command_timeout": timeout}
            kwargs["pool_timeout"] = timeout
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self.write_engine: AsyncEngine = self.engine
        if self.sqlite:
            self._configure_sqlite(self.engine, immediate=False)
            self.write_engine = create_async_engine(self.url, **kwargs)
            self._configure_sqlite(self.write_engine, immediate=True)
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @staticmethod
    def _configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    @asynccontextmanager
    async def unit_of_work(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        factory = self._write if write else self._read
        async with factory() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
