"""Products: the catalogue's queries. Functions take the session first and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Product


@dataclass(frozen=True)
class ProductData:
    """A validated product row, as the importer hands it over."""

    id: str
    name: str
    description: str
    price: Decimal
    category: str


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


async def list_products(
    session: AsyncSession,
    *,
    category: str | None = None,
    search: str | None = None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Product], int]:
    where = _filters(category, search)
    total = await session.scalar(select(func.count()).select_from(Product).where(*where))
    rows = await session.scalars(
        select(Product).where(*where).order_by(Product.id).limit(limit).offset(offset)
    )
    return rows.all(), int(total or 0)


async def upsert_products(session: AsyncSession, *, products: Iterable[ProductData]) -> int:
    """Insert new products and update existing ones by id; returns how many were written."""
    count = 0
    for data in products:
        await session.merge(
            Product(
                id=data.id,
                name=data.name,
                description=data.description,
                price=data.price,
                category=data.category,
            )
        )
        count += 1
    await session.flush()
    return count
