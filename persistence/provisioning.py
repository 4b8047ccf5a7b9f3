"""Creating the PostgreSQL database a URL names, when the server has none of that name.

``storefront db upgrade`` and ``serve`` create a missing SQLite file simply by opening it; on
PostgreSQL a first start would otherwise stop at "database … does not exist" although the
server answered. PostgreSQL creates a database from a connection to another one: the
maintenance database ``postgres``, or ``template1`` where that has been dropped (as
``createdb`` does), with the same role and credentials as the URL's.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from persistence.db import async_url, is_sqlite

MAINTENANCE_DATABASES = ("postgres", "template1")
INSUFFICIENT_PRIVILEGE = "42501"
DUPLICATE_DATABASE = "42P04"
_FIND = text("SELECT 1 FROM pg_database WHERE datname = :name")


class CannotCreateDatabase(Exception):
    """The database does not exist and the URL's role may not create it (no CREATEDB)."""

    def __init__(self, database: str, role: str) -> None:
        super().__init__(f"database {database!r} does not exist; role {role!r} may not create it")
        self.database = database
        self.role = role


def role_of(url: str | URL) -> str:
    """The role a URL logs in as: its user, or ``?user=``, or the driver's default, the
    operating system's user name (as libpq and asyncpg do)."""
    parsed = make_url(url)
    if parsed.username:
        return parsed.username
    user = parsed.query.get("user")
    if isinstance(user, str) and user:
        return user
    import getpass

    return getpass.getuser()


def create_database_if_missing(database_url: str | URL, *, timeout: float) -> bool:
    """Create the PostgreSQL database ``database_url`` names when the server has none of that
    name: True when it did. False for SQLite, and when the database is there (or another
    process created it meanwhile). Raises :class:`CannotCreateDatabase` when the role lacks
    CREATEDB, and the first connection's error when the database exists but cannot be
    reached or the server cannot be (wrong password, refused, ...). ``timeout``: seconds to
    wait for each connection (a host that drops packets would hold it a minute)."""
    url = async_url(database_url)
    if is_sqlite(url) or not url.database:
        return False
    return asyncio.run(_create_if_missing(url, url.database, timeout))


async def _create_if_missing(url: URL, name: str, connect_seconds: float) -> bool:
    try:
        await _connect(url, None, connect_seconds)
        return False
    except (SQLAlchemyError, OSError) as exc:
        first_error = exc
    if _never_reached(first_error):
        raise first_error
    # Asked rather than told by the error: psycopg reports a missing database without a
    # SQLSTATE, and the server words it in its own language (lc_messages).
    for maintenance in MAINTENANCE_DATABASES:
        if maintenance == name:
            continue
        try:
            return await _connect(url.set(database=maintenance), name, connect_seconds)
        except _Exists:
            break  # another cause: no CONNECT privilege, a pg_hba.conf line for that database
        except CannotCreateDatabase:
            raise
        except (SQLAlchemyError, OSError):
            continue  # that maintenance database is gone or closed to this role: the next
    raise first_error


def database_missing(database_url: str | URL, failure: BaseException, *, timeout: float) -> bool:
    """Whether ``failure``, met connecting to ``database_url``, is the server's answer that
    it has no database of that name, as a maintenance database tells; False for SQLite, for a
    server never reached, and when nothing can tell (no maintenance database open to the
    role, a pooler that offers none)."""
    url = async_url(database_url)
    if is_sqlite(url) or not url.database or _never_reached(failure):
        return False
    return asyncio.run(_missing(url, url.database, timeout))


async def _missing(url: URL, name: str, connect_seconds: float) -> bool:
    for maintenance in MAINTENANCE_DATABASES:
        if maintenance == name:
            continue
        engine = create_async_engine(url.set(database=maintenance), poolclass=NullPool)
        try:
            async with asyncio.timeout(connect_seconds):
                connection = await engine.connect().start()
            try:
                return await connection.scalar(_FIND, {"name": name}) is None
            finally:
                await connection.close()
        except (SQLAlchemyError, OSError):
            continue
        finally:
            await engine.dispose()
    return False


def _never_reached(failure: BaseException) -> bool:
    """Refused, timed out, a network error: no server answered, so none said the database
    is missing, and asking another database of it would only wait as long again."""
    seen: BaseException | None = failure
    while seen is not None:
        if isinstance(seen, OSError):  # TimeoutError and ConnectionRefusedError among them
            return True
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else seen.__cause__
    return False


class _Exists(Exception):
    """The database is there after all: the first connection failed for another reason."""


async def _connect(url: URL, create: str | None, connect_seconds: float) -> bool:
    """Connect to ``url`` within ``connect_seconds``; with ``create``, create the database of that
    name from it (which takes as long as copying the template takes)."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(connect_seconds):
            connection = await engine.connect().start()
        try:
            return False if create is None else await _create(connection, url, create)
        finally:
            await connection.close()
    finally:
        await engine.dispose()


async def _create(connection: AsyncConnection, url: URL, name: str) -> bool:
    found = await connection.scalar(_FIND, {"name": name})
    if found is not None:
        raise _Exists(name)
    quoted = connection.dialect.identifier_preparer.quote(name)
    try:
        await connection.execute(text(f"CREATE DATABASE {quoted}"))
    except DBAPIError as exc:
        code = getattr(exc.orig, "sqlstate", None)
        if code == DUPLICATE_DATABASE:
            return False  # another instance created it first
        if code == INSUFFICIENT_PRIVILEGE:
            raise CannotCreateDatabase(name, role_of(url)) from None
        raise
    return True
