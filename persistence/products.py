"""Products: the catalogue's queries. Reads take a Connection and return rows; writes take a
Session and never commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Insert,
    Integer,
    MetaData,
    Numeric,
    Row,
    Select,
    String,
    Table,
    Text,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from persistence.counts import category_total, table_total
from persistence.models import Product
from persistence.paging import Page, count_rows, read_page


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


#: Search terms this short have no trigram: no index serves them, and both engines scan.
TRIGRAM = 3
#: SQLite's FTS5 trigram index over products(name, description) (migration 0003).
_FTS = table("products_fts", column("rowid"))
_FTS_MATCH = literal_column("products_fts").op("MATCH")
_ROWID: ColumnElement[int] = literal_column("products.rowid", Integer)
#: The same, where SQLite may not use it to look rows up (a unary + disqualifies a term).
_WALK_ROWID: ColumnElement[int] = literal_column("+products.rowid", Integer)
#: What reading one product row by rowid costs, in steps along the id index: roughly, as
#: measured at 10^5 and 10^6 products (bench/data_growth.py). See _rowid_filter.
SEEK_COST = 20
#: On PostgreSQL, what reading one match through the trigram indexes (bitmap heap fetch,
#: recheck, sort) costs in rows walked along the primary key and tested: about the same,
#: 3.5-5 µs each at 10^6 products. See _pg_search_page.
PG_SEEK_COST = 1


def _fts_phrase(term: str) -> str:
    """An FTS5 query matching ``term`` as one phrase: every character literal, quotes doubled.

    With the trigram tokenizer a phrase of three characters or more is a substring match."""
    return '"' + term.replace('"', '""') + '"'


def _filters(
    dialect: str, category: str | None, search: str | None
) -> tuple[list[ColumnElement[bool]], str | None]:
    """The filters, but on SQLite a search of three characters or more: its FTS5 query is
    returned beside them."""
    where: list[ColumnElement[bool]] = []
    if category is not None:
        # Served by ix_products_category_lower_id, which also yields the id order.
        where.append(func.lower(Product.category) == category.lower())
    if search is None:
        return where, None
    if dialect == "sqlite" and len(search) >= TRIGRAM:
        return where, _fts_phrase(search)
    if dialect == "postgresql":
        where.append(_pg_contains(search.lower(), indexed=len(search) >= TRIGRAM))
        return where, None
    # SQLite, under three characters: matched by reading the table. autoescape makes % and _
    # literal characters, not wildcards.
    term = search.lower()
    where.append(
        or_(
            func.lower(Product.name).contains(term, autoescape=True),
            func.lower(Product.description).contains(term, autoescape=True),
        )
    )
    return where, None


def _pg_contains(term: str, *, indexed: bool) -> ColumnElement[bool]:
    """On PostgreSQL, whether lower(name) or lower(description) contains ``term``.

    ``indexed``: as ``lower(x) LIKE '%term%'`` (``%`` and ``_`` escaped), which the GIN
    trigram indexes serve. Otherwise as ``strpos(lower(x), term) > 0``, the same test that
    no index serves: the planner then walks the id order (or reads the table) instead of
    scanning a whole trigram index for a term that has no trigram, as it may for LIKE."""
    name, description = func.lower(Product.name), func.lower(Product.description)
    if indexed:
        return or_(
            name.contains(term, autoescape=True), description.contains(term, autoescape=True)
        )
    return or_(func.strpos(name, term) > 0, func.strpos(description, term) > 0)


def _fts_matches(phrase: str) -> Select[tuple[int]]:
    return select(_FTS.c.rowid).where(_FTS_MATCH(phrase))


def count_products(
    connection: Connection, *, category: str | None = None, search: str | None = None
) -> int:
    """How many products the filters match: X-Total-Count. Without a search, a counter kept by
    the database (``persistence.counts``); a search alone on SQLite is counted in the FTS
    index, without reading products."""
    if search is None:
        if category is None:
            return table_total(connection, Product.__table__, "products")
        return category_total(connection, category)
    where, phrase = _filters(connection.dialect.name, category, search)
    if phrase is None:
        return count_rows(connection, Product.__table__, where)
    if where:
        return count_rows(connection, Product.__table__, [*where, _ROWID.in_(_fts_matches(phrase))])
    return count_rows(connection, _FTS, [_FTS_MATCH(phrase)])


def _rowid_filter(
    connection: Connection, phrase: str, *, total: int, reads: int
) -> ColumnElement[bool]:
    """On SQLite, the products matching an FTS5 ``phrase``, ``total`` of them, for a page
    that reads ``reads`` rows.

    Either the matching rowids are looked up one by one and sorted by id (cheap when few
    match), or the id index is walked, testing each entry's rowid against the matches, until
    ``reads`` rows are found (cheap when many match: about reads * products / total entries).
    The cheaper way is chosen from the count; SQLite's planner, which cannot know it, would
    always take the first. A unary + keeps it from the rowid lookup.
    """
    products = connection.scalar(select(func.max(_ROWID)).select_from(Product)) or 0
    walk = reads * products < SEEK_COST * total * total
    return (_WALK_ROWID if walk else _ROWID).in_(_fts_matches(phrase))


def list_products(
    connection: Connection,
    *,
    category: str | None = None,
    search: str | None = None,
    limit: int,
    offset: int = 0,
    after: str | None = None,
    before: str | None = None,
) -> Page[ProductRow]:
    """A page of products in id order, by offset or after/before an id (``persistence.paging``).

    On SQLite a search of three characters or more is answered by the FTS5 trigram index,
    whose case folding covers Unicode; a shorter one by LIKE on lower(), which folds ASCII
    only, as PostgreSQL's lower() folds the characters of its locale."""
    total = count_products(connection, category=category, search=search)
    dialect = connection.dialect.name
    if dialect == "postgresql" and search is not None and len(search) >= TRIGRAM:
        return _pg_search_page(
            connection,
            category=category,
            term=search.lower(),
            total=total,
            limit=limit,
            offset=offset,
            after=after,
            before=before,
        )
    where, phrase = _filters(dialect, category, search)
    if phrase is not None:
        reads = offset + limit + 1
        where.append(_rowid_filter(connection, phrase, total=total, reads=reads))
    return read_page(
        connection,
        source=Product.__table__,
        columns=COLUMNS,
        key=(Product.id,),
        where=where,
        limit=limit,
        offset=offset,
        after=None if after is None else (after,),
        before=None if before is None else (before,),
        total=total,
    )


def _pg_search_page(
    connection: Connection,
    *,
    category: str | None,
    term: str,
    total: int,
    limit: int,
    offset: int,
    after: str | None,
    before: str | None,
) -> Page[ProductRow]:
    """On PostgreSQL, a page of the ``total`` products whose name or description contains
    ``term`` (three characters or more), the way the count says is cheaper, as on SQLite
    (_rowid_filter): when few match, all of them are read through the trigram indexes and
    sorted (a MATERIALIZED CTE, which the planner cannot turn into a walk); when many do, the
    id order is walked (or a category's part of it), testing each row, until the page is
    full. Left to itself, the planner guesses how many rows a LIKE pattern matches, and a bad
    guess walked 100,000 products for a term with 20 matches (405 ms instead of 5 ms)."""
    where = _filters("postgresql", category, None)[0]
    reads = offset + limit + 1
    products = table_total(connection, Product.__table__, "products")
    key_after = None if after is None else (after,)
    key_before = None if before is None else (before,)
    if reads * products < PG_SEEK_COST * total * total:
        return read_page(
            connection,
            source=Product.__table__,
            columns=COLUMNS,
            key=(Product.id,),
            where=[*where, _pg_contains(term, indexed=False)],
            limit=limit,
            offset=offset,
            after=key_after,
            before=key_before,
            total=total,
        )
    matches = (
        select(*COLUMNS)
        .where(*where, _pg_contains(term, indexed=True))
        .cte("matches")
        .prefix_with("MATERIALIZED")
    )
    return read_page(
        connection,
        source=matches,
        columns=tuple(matches.c),
        key=(matches.c.id,),
        where=[],
        limit=limit,
        offset=offset,
        after=key_after,
        before=key_before,
        total=total,
    )


#: Rows per INSERT … ON CONFLICT statement: bounds the parameters held in memory.
UPSERT_CHUNK = 5000

_UPDATED = ("name", "description", "price", "category")


def _pg_upsert() -> Insert:
    """One statement per chunk on PostgreSQL: the rows travel as five arrays and come out of
    ``unnest``. asyncpg runs an executemany as one statement per row, and with it the
    statement-level triggers of migration 0004: 100,000 products took 33-40 s that way, and
    10.3-10.8 s this way."""
    table = cast(Table, Product.__table__)
    arrays = [bindparam(name, type_=ARRAY(table.c[name].type)) for name in ("id", *_UPDATED)]
    rows = func.unnest(*arrays).table_valued("id", *_UPDATED).render_derived("given")
    pg = postgresql.insert(table).from_select(["id", *_UPDATED], select(*rows.c))
    return pg.on_conflict_do_update(
        index_elements=["id"], set_={c: pg.excluded[c] for c in _UPDATED}
    )


def upsert_products(session: Session, *, products: Iterable[ProductData]) -> int:
    """Insert new products and update existing ones by id; returns how many were written.

    One ``INSERT … ON CONFLICT (id) DO UPDATE`` statement per chunk of rows: a million rows
    take seconds, where loading and merging ORM objects one by one takes minutes. Ids should
    be unique within ``products``: of a repeated id, the last row wins.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in {"sqlite", "postgresql"}:
        raise NotImplementedError(f"no upsert for the {dialect} dialect")
    write = _write_staged if dialect == "sqlite" else _write_arrays
    count = 0
    # By id, in the order given: a repeated id keeps its first place and its last row
    # (PostgreSQL refuses to update one row twice in one statement).
    chunk: dict[str, ProductData] = {}
    for data in products:
        chunk[data.id] = data
        count += 1
        if len(chunk) >= UPSERT_CHUNK:
            write(session, list(chunk.values()))
            chunk = {}
    if chunk:
        write(session, list(chunk.values()))
    return count


def _write_arrays(session: Session, chunk: list[ProductData]) -> None:
    session.execute(
        _pg_upsert(),
        {
            "id": [p.id for p in chunk],
            "name": [p.name for p in chunk],
            "description": [p.description for p in chunk],
            "price": [p.price for p in chunk],
            "category": [p.category for p in chunk],
        },
    )


#: On SQLite, rows are staged here and upserted with one statement per chunk: the FTS5
#: index's triggers, run by one statement per row, flushed the index after every row
#: (100,000 products: 27.7 s that way, under 10 s staged).
_STAGING = Table(
    "products_staging",
    MetaData(),
    Column("id", String(64)),
    Column("name", String(200)),
    Column("description", Text),
    Column("price", Numeric(12, 2)),
    Column("category", String(100)),
    prefixes=["TEMPORARY"],
)


def _staged_upsert() -> Insert:
    columns = ["id", *_UPDATED]
    # Rows in the order given (upsert_products has already kept one row per id).
    rows = select(*(_STAGING.c[c] for c in columns)).order_by(literal_column("rowid"))
    upsert = sqlite.insert(cast(Table, Product.__table__)).from_select(columns, rows.where(true()))
    return upsert.on_conflict_do_update(
        index_elements=["id"], set_={c: upsert.excluded[c] for c in _UPDATED}
    )


def _write_staged(session: Session, chunk: list[ProductData]) -> None:
    _STAGING.create(session.connection(), checkfirst=True)
    session.execute(delete(_STAGING))
    session.execute(
        insert(_STAGING),
        [
            {
                "id": p.id,
                "name": p.name,
                "description": p.description,
                "price": p.price,
                "category": p.category,
            }
            for p in chunk
        ],
    )
    session.execute(_staged_upsert())
