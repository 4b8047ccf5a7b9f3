"""Is the database there, and at the schema this code expects? Is the pooler in front of it?

The reasons these functions give are read by anyone who can reach /readyz: they say what
failed (refused, timed out, which kind of server error) and never where (no host, no port, no
server message, which can name users and databases).
"""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

#: SQLSTATE classes and codes a readiness probe meets, in words.
_SQLSTATES = {
    "08": "connection failure",
    "28": "login refused",
    "3D000": "the database does not exist",
    "53300": "too many connections",
    "57P01": "the server is shutting down",
    "57P03": "the server is starting up or shutting down",
    "57014": "the statement was cancelled (timeout)",
}


def schema_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at (None when it was never migrated).

    Raises when the database cannot be reached at all.
    """
    connection.execute(text("SELECT 1"))
    try:
        row = (connection.execute(text("SELECT version_num FROM alembic_version"))).first()
    except DBAPIError:  # no alembic_version table: never migrated
        return None
    return None if row is None else str(row[0])


def _sqlstate(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, getattr(seen, "orig", None)):
            code = getattr(candidate, "sqlstate", None)
            if isinstance(code, str) and code:
                return code
        seen = seen.__cause__ or seen.__context__
    return None


#: SQLSTATEs that mean "the database is not there for now": connection failures (class 08,
#: which is also what PgBouncer answers when it cannot reach PostgreSQL, 08P01), a server
#: shutting down or starting up, too many connections.
_UNAVAILABLE = ("08", "57P01", "57P02", "57P03", "53300")


def unavailable(exc: BaseException) -> bool:
    """Whether a failed database call means the database is away (worth a retry), rather
    than a bug: a driver error whose cause carries one of the SQLSTATEs above."""
    code = _sqlstate(exc)
    return code is not None and code.startswith(_UNAVAILABLE)


def describe_failure(exc: BaseException, timeout: float) -> str:
    """Why a database (or pooler) call failed, in a few words fit for a public probe."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else (seen.__cause__ or seen.__context__)
    if any(isinstance(e, TimeoutError) for e in chain):
        return f"no answer within {timeout:g} s"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    code = _sqlstate(exc)
    if code is not None:
        words = _SQLSTATES.get(code) or _SQLSTATES.get(code[:2]) or "server error"
        return f"{words} (SQLSTATE {code})"
    if any(isinstance(e, OSError | ConnectionError) for e in chain):
        return "unreachable (network error)"
    return f"failed ({type(exc).__name__})"


async def pooler_answers(database_url: str, seconds: float) -> str | None:
    """Whether the pooler at the database URL accepts connections: None when it does, else
    why not. A TCP connection, no login: the query through it tells about the database."""
    url = make_url(database_url)
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(
                url.host or "localhost", url.port or 5432, family=socket.AF_UNSPEC
            )
    except (OSError, TimeoutError) as exc:
        return describe_failure(exc, seconds)
    writer.close()
    await writer.wait_closed()
    return None
