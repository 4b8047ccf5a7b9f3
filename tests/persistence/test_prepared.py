"""PreparedQuery (persistence/db.py) answers exactly what SQLAlchemy's executor answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from core.settings import Settings
from persistence.db import Database, PreparedQuery
from persistence.models import Product, User


class UserView(NamedTuple):
    id: str
    name: str
    email: str
    created_at: datetime
    updated_at: datetime | None


BY_ID = select(User.id, User.name, User.email, User.created_at, User.updated_at).where(
    User.id == bindparam("user_id")
)


def _seed(session: Session) -> None:
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    session.add_all(
        [
            User(id="u_new", name="Né", email="a@x.io", password_hash="h", created_at=moment),
            User(
                id="u_upd",
                name="B",
                email="b@x.io",
                password_hash="h",
                created_at=moment,
                updated_at=moment.replace(microsecond=0),
            ),
            Product(id="p1", name="Lamp", description="", price=Decimal("12.50"), category="c"),
        ]
    )


def _both(connection: Connection, /, query: PreparedQuery[Any], **params: Any) -> tuple[Any, Any]:
    expected = [tuple(row) for row in connection.execute(query.statement, params)]
    return expected, [tuple(row) for row in query.all(connection, **params)]


def test_prepared_rows_equal_sqlalchemys(settings: Settings) -> None:
    users = PreparedQuery(BY_ID, UserView)
    price = PreparedQuery(
        select(Product.price).where(Product.id == bindparam("id")), lambda *values: values
    )

    async def scenario() -> None:
        db = Database(settings.database_url)
        try:
            await db.write(_seed)
            for user_id in ("u_new", "u_upd", "u_missing"):
                expected, got = await db.read(_both, users, user_id=user_id)
                assert got == expected
            found = await db.read(users.one, user_id="u_new")
            assert found is not None
            assert found.created_at.tzinfo is not None  # aware UTC, as the ORM gives
            assert found.updated_at is None
            assert await db.read(users.one, user_id="u_missing") is None
            expected, got = await db.read(_both, price, id="p1")
            assert got == expected == [(Decimal("12.50"),)]
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_bind_values_that_need_converting_are_refused_on_sqlite(settings: Settings) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("asyncpg and psycopg take dates as they are: nothing to convert")
    by_date = PreparedQuery(
        select(User.id).where(User.created_at > bindparam("after", type_=User.created_at.type)),
        lambda *values: values,
    )

    async def scenario() -> None:
        db = Database(settings.database_url)
        try:
            with pytest.raises(TypeError, match="need converting"):
                await db.read(by_date.all, after=datetime.now(UTC))
        finally:
            await db.dispose()

    asyncio.run(scenario())
