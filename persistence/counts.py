"""Row counts read from the counters that migration 0004's triggers keep: X-Total-Count of an
unfiltered list, or of a category, is one primary-key lookup at any table size."""

from __future__ import annotations

from sqlalchemy import Connection, ScalarSelect, bindparam, select

from persistence.db import PreparedQuery
from persistence.models import Base, CategoryCount, TableCount
from persistence.paging import count_rows


def _value(value: int) -> int:
    return value


_TABLE_TOTAL = PreparedQuery(
    select(TableCount.total).where(TableCount.table_name == bindparam("name")), _value
)


def table_total_column(model: type[Base]) -> ScalarSelect[int]:
    """The counter of ``model``'s table as a column to read beside a page's rows: the page and
    its total in one statement (one round trip, one snapshot). NULL if the counter is gone."""
    return (
        select(TableCount.total)
        .where(TableCount.table_name == model.__tablename__)
        .scalar_subquery()
    )


def table_total(connection: Connection, model: type[Base]) -> int:
    """How many rows ``model``'s table holds (``users`` and ``products`` are counted)."""
    total = _TABLE_TOTAL.one(connection, name=model.__tablename__)
    if total is None:
        # Only if someone deleted the counter row: its triggers then count nothing either.
        return count_rows(connection, model.__table__, [])
    return int(total)


_VERSION = PreparedQuery(
    select(TableCount.version).where(TableCount.table_name == bindparam("name")), _value
)


def catalogue_version(connection: Connection) -> int:
    """The products table's version: moved on, in the writing transaction, by every insert,
    update, delete and truncate of products (migration 0006's triggers)."""
    return _VERSION.one(connection, name="products") or 0


def category_total(connection: Connection, category: str) -> int:
    """How many products ``category`` holds, compared as the category filter compares it:
    the database's lower() of the stored category against ``category.lower()``."""
    total = connection.scalar(
        select(CategoryCount.products).where(CategoryCount.category == category.lower())
    )
    return int(total or 0)
