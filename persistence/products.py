"""Products: the catalogue's queries. Reads take a Connection and return rows; writes take a
Session and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from sqlalchemy import ColumnElement, Connection, Insert, Row, Table, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from persistence.models import Product


@dataclass(frozen=True, slots=True)
class ProductData:
    """A validated product row, as the importer hands it over."""

    id: str
    name: str
    description: str
    price: Decimal
    category: str


#: id, name, description, price, category
ProductRow = Row[str, str, str, Decimal, str]
COLUMNS = (Product.id, Product.name, Product.description, Product.price, Product.category)


def _filters(category: str | None, search: str | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if category is not None:
        where.append(func.lower(Product.category) == category.lower())
    if search is not None:
        # autoescape makes % and _ literal characters, not wildcards.
        term = search.lower()
        where.append(
            or_(
                func.lower(Product.name).contains(term, autoescape=True),
                func.lower(Product.description).contains(term, autoescape=True),
            )
        )
    return where


def list_products(
    connection: Connection,
    *,
    category: str | None = None,
    search: str | None = None,
    limit: int,
    offset: int,
) -> tuple[Sequence[ProductRow], int]:
    where = _filters(category, search)
    total = connection.scalar(select(func.count()).select_from(Product).where(*where))
    rows = connection.execute(
        select(*COLUMNS).where(*where).order_by(Product.id).limit(limit).offset(offset)
    )
    return rows.all(), int(total or 0)


#: Rows per INSERT … ON CONFLICT executemany: bounds the parameter list held in memory.
UPSERT_CHUNK = 5000

_UPDATED = ("name", "description", "price", "category")


def _upsert_statement(dialect: str) -> Insert:
    # Core, not the ORM's bulk path: no per-row identity or event work.
    table = cast(Table, Product.__table__)
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(
            index_elements=["id"], set_={c: pg.excluded[c] for c in _UPDATED}
        )
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=["id"], set_={c: lite.excluded[c] for c in _UPDATED}
        )
    raise NotImplementedError(f"no upsert for the {dialect} dialect")


def upsert_products(session: Session, *, products: Iterable[ProductData]) -> int:
    """Insert new products and update existing ones by id; returns how many were written.

    One ``INSERT … ON CONFLICT (id) DO UPDATE`` executed for chunks of rows: a million rows
    take seconds, where loading and merging ORM objects one by one takes minutes. Ids should be
    unique within ``products``: a repeated id is written twice, the last one winning.
    """
    statement = _upsert_statement(session.get_bind().dialect.name)
    count = 0
    chunk: list[dict[str, object]] = []
    for data in products:
        chunk.append(
            {
                "id": data.id,
                "name": data.name,
                "description": data.description,
                "price": data.price,
                "category": data.category,
            }
        )
        if len(chunk) >= UPSERT_CHUNK:
            session.execute(statement, chunk)
            count += len(chunk)
            chunk = []
    if chunk:
        session.execute(statement, chunk)
        count += len(chunk)
    return count
