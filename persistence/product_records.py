"""One product at a time, as the HTTP API reads and writes it (``/products/{id}``). A read is
one statement run alone (``Database.one``); writes take a Session and never commit. The
catalogue's lists, searches and imports are ``persistence.products``'.

Counts, the category counters and the catalogue version that remembered searches are keyed on
are kept by the database's triggers (migrations 0003, 0004, 0006) in the transaction of each
write here, as for an import: a list, a count or a search sees a write as soon as it commits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from core.errors import ProductNotFound, ProductTaken
from core.ids import new_id
from persistence import idempotency
from persistence.db import Database, PreparedQuery
from persistence.models import Product
from persistence.rows import Precondition, storable_id

ID_PREFIX = "prod_"
#: PostgreSQL's transaction-level advisory lock that writers of a product's name or category
#: hold while they check that no other product has the pair: checked and written in one
#: transaction that no other such writer can enter, there is no check-then-insert race. (Every
#: write of products already queues on the products counter row of migration 0004 until it
#: commits, so this serialises nothing that was not.) SQLite serialises its writers anyway.
IDENTITY_LOCK = 0x53465052  # "SFPR"


class ProductRecord(NamedTuple):
    id: str
    name: str
    description: str
    price: Decimal
    category: str
    version: int


COLUMNS = (
    Product.id,
    Product.name,
    Product.description,
    Product.price,
    Product.category,
    Product.version,
)
_BY_ID = PreparedQuery(select(*COLUMNS).where(Product.id == bindparam("product_id")), ProductRecord)


def record(product: Product) -> ProductRecord:
    return ProductRecord(
        product.id,
        product.name,
        product.description,
        product.price,
        product.category,
        product.version,
    )


async def get_product(db: Database, *, product_id: str) -> ProductRecord:
    row: ProductRecord | None = None
    if storable_id(product_id):
        row = await db.one(_BY_ID, product_id=product_id)
    if row is None:
        raise ProductNotFound()
    return row


def _refuse_a_second(session: Session, *, name: str, category: str, other_than: str) -> None:
    """``ProductTaken`` when a product other than ``other_than`` has this name and category,
    each compared as the database's lower() compares them (the category filter's way)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IDENTITY_LOCK})
    taken = session.scalar(
        select(Product.id)
        .where(
            func.lower(Product.category) == func.lower(category),
            func.lower(Product.name) == func.lower(name),
            Product.id != other_than,
        )
        .limit(1)
    )
    if taken is not None:
        raise ProductTaken()


def create_product(
    session: Session, *, name: str, description: str, price: Decimal, category: str
) -> ProductRecord:
    """A new product with a random ``prod_`` id, unless another has its name and category."""
    product_id = new_id(ID_PREFIX)
    _refuse_a_second(session, name=name, category=category, other_than=product_id)
    product = Product(
        id=product_id,
        name=name,
        description=description,
        price=price,
        category=category,
        version=1,  # set here too, so that the caller knows it without reading it back
    )
    session.add(product)
    session.flush()
    return record(product)


def _locked_product(
    session: Session, product_id: str, precondition: Precondition | None
) -> Product:
    """The product, its row locked until the transaction ends, if ``precondition`` holds for
    its version (products keep no modification time: If-Unmodified-Since does not apply).
    A product that does not exist is a 404 whatever the precondition (RFC 9110 §13.2.1)."""
    product = (
        session.scalar(select(Product).where(Product.id == product_id).with_for_update())
        if storable_id(product_id)
        else None
    )
    if product is None:
        raise ProductNotFound()
    if precondition is not None:
        precondition(product.version, None)
    return product


def update_product(
    session: Session,
    *,
    product_id: str,
    precondition: Precondition | None = None,
    name: str | None = None,
    description: str | None = None,
    price: Decimal | None = None,
    category: str | None = None,
) -> ProductRecord:
    """Update the fields given if ``precondition`` holds; the version goes up by one. A new
    name or category that another product has with the other is ``ProductTaken``."""
    product = _locked_product(session, product_id, precondition)
    if name is not None or category is not None:
        _refuse_a_second(
            session,
            name=product.name if name is None else name,
            category=product.category if category is None else category,
            other_than=product.id,
        )
    if name is not None:
        product.name = name
    if description is not None:
        product.description = description
    if price is not None:
        product.price = price
    if category is not None:
        product.category = category
    product.version += 1
    session.flush()
    return record(product)


def delete_product(
    session: Session, *, product_id: str, precondition: Precondition | None = None
) -> None:
    """Delete the product if ``precondition`` holds, and forget the stored Idempotency-Key
    responses that carry it, as for a user: a replay of the POST that created it is a 410
    rather than a product that no longer exists."""
    session.delete(_locked_product(session, product_id, precondition))
    session.flush()
    idempotency.forget(session, resource_id=product_id)
