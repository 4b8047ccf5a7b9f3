"""A prepared statement run alone (``Database.one`` and ``Database.all``): on PostgreSQL on the
driver's own connection, with no SQLAlchemy Connection around it. It answers what SQLAlchemy's
executor answers, and a connection lost, timed out or cancelled mid-statement is never handed
out again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Connection, bindparam, event, func, literal_column, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.settings import Settings
from persistence.db import Database, PreparedQuery
from persistence.models import Product, User
from tests.persistence.test_prepared import _seed  # two users and a product

#: When tests.persistence.test_prepared._seed made its users.
MOMENT = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)


class UserView(NamedTuple):
    id: str
    created_at: datetime
    updated_at: datetime | None
    version: int


USERS = PreparedQuery(
    select(User.id, User.created_at, User.updated_at, User.version)
    .where(User.id >= bindparam("from_id"))
    .order_by(User.id)
    .limit(bindparam("limit")),
    UserView,
)
PRICE = PreparedQuery(
    select(Product.price, func.count().over()).where(Product.id == bindparam("id")),
    lambda *values: values,
)
#: A statement that takes as long as it is asked to (seconds).
SLEEP = PreparedQuery(
    select(literal_column("1").label("one"), func.pg_sleep(bindparam("seconds"))),
    lambda *values: values,
)


def _executor(connection: Connection, query: PreparedQuery[Any], **params: Any) -> list[Any]:
    return [tuple(row) for row in connection.execute(query.statement, params)]


def _urls(settings: Settings, backend: str) -> list[str]:
    """The test database on each driver its backend has (both of PostgreSQL's)."""
    if backend == "sqlite":
        return [settings.database_url]
    url = make_url(settings.database_url)
    return [
        url.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
        for driver in ("asyncpg", "psycopg")
    ]


@pytest.mark.pgbouncer
def test_a_statement_alone_answers_what_sqlalchemy_answers(
    settings: Settings, backend: str
) -> None:
    async def scenario(url: str, seed: bool) -> None:
        db = Database(url, pooler=settings.database_pooler)
        try:
            if seed:
                await db.write(_seed)
            # Twice: the first run of a statement learns its columns' types.
            for _ in range(2):
                rows = await db.all(USERS, from_id="u_", limit=5)
                assert [tuple(r) for r in rows] == await db.read(
                    _executor, USERS, from_id="u_", limit=5
                )
                assert [type(r) for r in rows] == [UserView, UserView]
                first = await db.one(USERS, from_id="u_upd", limit=1)
                assert first is not None
                assert first.created_at == MOMENT  # aware UTC, as the ORM gives
                assert first.updated_at == MOMENT.replace(microsecond=0)
                assert first.version == 1
                assert await db.one(USERS, from_id="zzz", limit=1) is None
                assert await db.all(USERS, from_id="zzz", limit=1) == []
                price = await db.one(PRICE, id="p1")
                assert price == (Decimal("12.50"), 1)
                assert [tuple(price)] == await db.read(_executor, PRICE, id="p1")
        finally:
            await db.dispose()

    for n, url in enumerate(_urls(settings, backend)):
        asyncio.run(scenario(url, seed=n == 0))


def test_a_connection_the_server_closed_is_replaced_and_the_read_answers(
    settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's connections")

    async def scenario() -> None:
        db = Database(settings.database_url, pool_size=4)
        try:
            await db.write(_seed)
            await asyncio.gather(*(db.one(USERS, from_id="u_new", limit=1) for _ in range(8)))
            # Every connection the pool holds is closed by the server (a restart, say).
            await db.read(
                lambda c: c.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            )
            await asyncio.sleep(0.2)
            found = await asyncio.gather(
                *(db.one(USERS, from_id="u_new", limit=1) for _ in range(8))
            )
            assert {row.id for row in found if row is not None} == {"u_new"}
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_statement_timed_out_or_cancelled_leaves_the_pool_serving(
    settings: Settings, backend: str
) -> None:
    """asyncpg gives up on a statement at the timeout (and cancels it on the server); a task
    cancelled mid-statement returns its connection marked for replacement: neither is handed
    out again in the middle of a statement ("another operation is in progress")."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's statements")

    async def scenario() -> None:
        db = Database(settings.database_url, timeout=0.5, pool_size=2)
        try:
            with pytest.raises(DBAPIError) as raised:
                await db.one(SLEEP, seconds=5)
            assert raised.value.connection_invalidated
            sleeping = [asyncio.create_task(db.one(SLEEP, seconds=0.3)) for _ in range(2)]
            await asyncio.sleep(0.05)
            for task in sleeping:
                task.cancel()
            results = await asyncio.gather(*sleeping, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
            answers = await asyncio.gather(*(db.one(SLEEP, seconds=0) for _ in range(6)))
            assert [a[0] for a in answers if a is not None] == [1] * 6
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_server_error_keeps_its_sqlstate(settings: Settings, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's errors")
    divide = PreparedQuery(
        select((literal_column("1") / bindparam("by", type_=User.version.type)).label("q")),
        lambda *values: values,
    )

    async def scenario() -> None:
        db = Database(settings.database_url)
        try:
            with pytest.raises(DBAPIError) as raised:
                await db.one(divide, by=0)
            assert raised.value.orig is not None
            assert getattr(raised.value.orig, "sqlstate", None) == "22012"  # division_by_zero
            assert not raised.value.connection_invalidated
            assert await db.one(divide, by=1) == (1,)
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_statements_alone_keep_at_most_half_the_pool_and_give_it_all_back(
    settings: Settings, backend: str
) -> None:
    """Connections kept between statements alone are taken from the pool once, not at every
    statement; at most half the pool is kept, and a unit of work that finds the pool empty
    has them back; dispose gives every kept one back."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's connections")

    async def scenario(url: str, seed: bool) -> None:
        db = Database(url, pool_size=4, timeout=0.5)
        pool = db._read_engine.pool  # type: ignore[union-attr]  # the pool under test
        try:
            if seed:
                await db.write(_seed)
            answers = await asyncio.gather(
                *(db.one(USERS, from_id="u_new", limit=1) for _ in range(8))
            )
            assert {a.id for a in answers if a is not None} == {"u_new"}
            assert pool.checkedout() == 2  # kept: half of four
            checkouts = []

            def count(*_: Any) -> None:
                checkouts.append(1)

            event.listen(pool, "checkout", count)
            for _ in range(5):
                assert await db.one(USERS, from_id="u_new", limit=1) is not None
            assert checkouts == []  # one after another, on a kept connection each time

            def slow_write(session: Session) -> int:
                # Holds its connection longer than a checkout may wait (the timeout, 0.5 s).
                for _ in range(3):
                    session.execute(text("SELECT pg_sleep(0.25)"))
                return 1

            # Four units of work at once, with two connections kept: those two go back to the
            # pool rather than make two of the units wait for a connection past the timeout.
            assert await asyncio.gather(*(db.write(slow_write) for _ in range(4))) == [1] * 4
            assert pool.checkedout() == 0
        finally:
            await db.dispose()
        assert pool.checkedout() == 0

    for n, url in enumerate(_urls(settings, backend)):
        asyncio.run(scenario(url, seed=n == 0))


def test_a_connection_goes_to_the_pool_s_waiter_before_the_next_statement(
    settings: Settings, backend: str
) -> None:
    """A statement's connection is kept for the next statement alone only while the pool has
    one idle: when the pool is empty, it goes back to the pool, whose waiter has it, rather
    than to whichever statement comes next while the waiter waits out its timeout."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's connections")

    def long_read(connection: Connection) -> int:
        # Holds its connection (0.4 s) longer than a checkout may wait (the timeout, 0.3 s).
        for _ in range(2):
            connection.execute(text("SELECT pg_sleep(0.2)"))
        return 1

    async def scenario() -> None:
        db = Database(settings.database_url, pool_size=2, timeout=0.3)
        try:
            short = asyncio.create_task(db.one(SLEEP, seconds=0.05))
            long = asyncio.create_task(db.read(long_read))
            await asyncio.sleep(0.02)  # both connections taken: the next checkout waits
            waiting = await db.one(SLEEP, seconds=0)
            assert waiting is not None
            assert waiting[0] == 1
            assert await short is not None
            assert await long == 1
        finally:
            await db.dispose()

    asyncio.run(scenario())
