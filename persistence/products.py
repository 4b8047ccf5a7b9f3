"""Products: the catalogue's queries. Reads take a Connection and return rows; writes take a
Session and never commit."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    FromClause,
    Insert,
    Integer,
    MetaData,
    Numeric,
    Row,
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
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from persistence.counts import catalogue_version, category_total, table_total
from persistence.db import UNBUDGETED
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
#: What reading one match costs against stepping one entry along the id index and testing
#: it, roughly, as measured at 10^4 to 10^6 products (bench/data_growth.py). On SQLite, for an
#: ASCII term, finding a match in the FTS index, looking its row up and sorting it, against
#: reading the next row in id order and testing it with LIKE (``_ascii_contains``):
#: 2.5-8 µs against 0.6-3 µs. On PostgreSQL a bitmap heap fetch, recheck and sort against a
#: primary-key step and strpos(): about the same, 3.5-5 µs each. See _walk_pays.
SEEK_COST = {"sqlite": 4, "postgresql": 1}
#: On SQLite, for a term with other characters than ASCII, a walk tests each row against the
#: list of the FTS index's matches, which it reads in full first: the walk saves only the
#: lookups and the sort, so it pays later.
SEEK_COST_FTS_WALK = 20
#: Characters other than ASCII that SQLite's FTS5 trigram tokenizer folds to an ASCII letter
#: (KELVIN SIGN and LATIN SMALL LETTER LONG S), which LIKE does not: with these made ASCII,
#: LIKE and the index agree on every ASCII term (tests/persistence/test_search.py asks
#: SQLite about every code point).
FTS_FOLDS_TO_ASCII = {"\u212a": "k", "\u017f": "s"}


def _fts_phrase(term: str) -> str:
    """An FTS5 query matching ``term`` as one phrase: every character literal, quotes doubled.

    With the trigram tokenizer a phrase of three characters or more is a substring match."""
    return '"' + term.replace('"', '""') + '"'


def _category_filter(category: str | None) -> list[ColumnElement[bool]]:
    # Served by ix_products_category_lower_id, which also yields the id order.
    return [] if category is None else [func.lower(Product.category) == category.lower()]


def _ascii_contains(
    column: ColumnElement[str] | InstrumentedAttribute[str], term: str
) -> ColumnElement[bool]:
    """Whether ``column`` contains the ASCII ``term`` as the FTS5 trigram index says it does,
    tested on the row itself: SQLite's LIKE ignores the case of ASCII letters only, and the
    index folds case for all of Unicode, but an ASCII term can only meet the ASCII letters,
    and the two characters that the index folds to one (replaced first when the term has
    their letter)."""
    for character, ascii_letter in FTS_FOLDS_TO_ASCII.items():
        if ascii_letter in term.lower():
            column = func.replace(column, character, ascii_letter)
    return column.contains(term, autoescape=True)


def _search_filter(dialect: str, search: str, *, walk: bool = False) -> ColumnElement[bool]:
    """Whether a product's name or description contains ``search``, case aside.

    ``walk``: as a test of each row met along the id order, which no index may serve
    (see _walk_pays); otherwise through the trigram index where the term has a trigram.

    - SQLite, three characters or more: the FTS5 trigram index, whose case folding covers
      Unicode. To walk, an ASCII term is tested on the row (``_ascii_contains``): testing
      against the index would read every match first. Another term is tested against the
      index's matches (a unary + keeps SQLite from looking them up by rowid instead).
    - PostgreSQL: ``lower(x) LIKE '%term%'``, which the GIN trigram indexes serve, or, to
      walk or for a term with no trigram, ``strpos(lower(x), term) > 0``, the same test that
      no index serves (with LIKE the planner may scan a whole trigram index for such a term).
    - SQLite, shorter terms: LIKE on lower(), which folds ASCII only, as PostgreSQL's lower()
      folds the characters of its locale; read from the table.

    autoescape makes ``%`` and ``_`` literal characters, not wildcards."""
    if dialect == "sqlite" and len(search) >= TRIGRAM:
        if walk and search.isascii():
            return or_(
                _ascii_contains(Product.name, search), _ascii_contains(Product.description, search)
            )
        rowid = _WALK_ROWID if walk else _ROWID
        return rowid.in_(select(_FTS.c.rowid).where(_FTS_MATCH(_fts_phrase(search))))
    term = search.lower()
    name, description = func.lower(Product.name), func.lower(Product.description)
    if dialect == "postgresql" and (walk or len(search) < TRIGRAM):
        return or_(func.strpos(name, term) > 0, func.strpos(description, term) > 0)
    return or_(name.contains(term, autoescape=True), description.contains(term, autoescape=True))


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """What a search found, remembered per key with the catalogue version it was found at
    (``persistence.counts.catalogue_version``).

    A common term's count grows with the catalogue (it reads every match), and so does the
    walk to its page; popular terms repeat. The version is read in the same snapshot as the
    search would be, and the database moves it with every write to a product's name,
    description or category and every insert or delete, so a remembered result is used only
    while it is still exact, on every instance: no invalidation message is needed. Bounded by
    weight (``weigh``, 1 per entry by default): the least recently used entries go first.
    Searches run on worker threads on SQLite, hence the lock.
    """

    def __init__(self, max_weight: int, weigh: Callable[[V], int] = lambda _: 1) -> None:
        self.max_weight = max_weight
        self.weigh = weigh
        self.weight = 0
        self._entries: OrderedDict[K, tuple[int, V]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, version: int) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != version:
                return None
            self._entries.move_to_end(key)
            return found[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.weight = 0

    def put(self, key: K, version: int, value: V) -> None:
        with self._lock:
            replaced = self._entries.pop(key, None)
            if replaced is not None:
                self.weight -= self.weigh(replaced[1])
            self._entries[key] = (version, value)
            self.weight += self.weigh(value)
            while self.weight > self.max_weight and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.weight -= self.weigh(dropped)


@dataclass(frozen=True, slots=True)
class PageIds:
    """Which products a search's page holds, in order, and what lies beside it: the page
    without its rows, which are read again by id (a price may have changed; it does not move
    the version, nor which products match)."""

    ids: tuple[str, ...]
    has_next: bool
    has_prev: bool


#: (database, term, category) -> the exact count.
SearchKey = tuple[str, str, str | None]
#: (database, term, category, limit, offset, after, before) -> the page's ids.
PageKey = tuple[str, str, str | None, int, int, str | None, str | None]
#: Counts: 4,096 of them, a few hundred kB.
SEARCH_COUNTS: Remembered[SearchKey, int] = Remembered(4096)
#: An entry's own cost (its key, the PageIds, the dict's node), in ids' worth, so that many
#: empty pages weigh what they cost too: with tracemalloc, an empty page's entry took 350-420
#: bytes and a page of 20 ids 2,000 (70 bytes a weight of 28).
PAGE_ENTRY_WEIGHT = 8
#: Pages, weighed by their ids and their entries: 32,768 in all, about 2.5 MB.
SEARCH_PAGES: Remembered[PageKey, PageIds] = Remembered(
    32768, weigh=lambda page: len(page.ids) + PAGE_ENTRY_WEIGHT
)


def forget_searches() -> None:
    """Forget every remembered count and page (a benchmark's cold ask; tests)."""
    SEARCH_COUNTS.clear()
    SEARCH_PAGES.clear()


def count_products(
    connection: Connection, *, category: str | None = None, search: str | None = None
) -> int:
    """How many products the filters match: X-Total-Count. Without a search, a counter kept by
    the database (``persistence.counts``). A search is counted once per catalogue version
    (``Remembered``); a search alone on SQLite is counted in the FTS index, without reading
    products."""
    if search is None:
        if category is None:
            return table_total(connection, Product)
        return category_total(connection, category)
    return _search_total(connection, _search_key(connection, category, search))[1]


def _search_key(connection: Connection, category: str | None, search: str) -> SearchKey:
    return (str(connection.engine.url), search, None if category is None else category.lower())


def _search_total(connection: Connection, key: SearchKey) -> tuple[int, int]:
    """The catalogue version and the exact count, at it, of the search ``key`` names."""
    _database, search, category = key
    version = catalogue_version(connection)
    total = SEARCH_COUNTS.get(key, version)
    if total is None:
        total = _count_search(connection, category=category, search=search)
        SEARCH_COUNTS.put(key, version, total)
    return version, total


def _count_search(connection: Connection, *, category: str | None, search: str) -> int:
    dialect = connection.dialect.name
    if dialect == "sqlite" and category is None and len(search) >= TRIGRAM:
        return count_rows(connection, _FTS, [_FTS_MATCH(_fts_phrase(search))])
    where = [*_category_filter(category), _search_filter(dialect, search)]
    return count_rows(connection, Product.__table__, where)


def _walk_pays(connection: Connection, *, search: str, total: int, reads: int) -> bool:
    """Whether a page that reads ``reads`` of ``total`` matching products is cheaper found by
    walking the id index and testing each entry (about reads * products / total steps) than
    by looking every match up and sorting them (``total`` lookups).

    Chosen from the exact count: left to guess, SQLite's planner always looks the matches up,
    and PostgreSQL's once walked 100,000 products for a term with 20 matches (405 ms instead
    of 5 ms)."""
    products = table_total(connection, Product)
    seek_cost = SEEK_COST[connection.dialect.name]
    if connection.dialect.name == "sqlite" and not search.isascii():
        seek_cost = SEEK_COST_FTS_WALK
    return reads * products < seek_cost * total * total


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

    A search's page is found as ``_walk_pays`` says is cheaper, and remembered (its ids) for
    as long as the catalogue version stays where it was: asked again, its rows are read by id.
    On PostgreSQL a lookup reads the matches in a MATERIALIZED CTE, which the planner cannot
    turn into a walk."""
    if search is None:
        total = count_products(connection, category=category)
        return _find_page(
            connection,
            category,
            None,
            total,
            limit=limit,
            offset=offset,
            after=after,
            before=before,
        )
    search_key = _search_key(connection, category, search)
    version, total = _search_total(connection, search_key)
    key = (*search_key, limit, offset, after, before)
    remembered = SEARCH_PAGES.get(key, version)
    if remembered is not None:
        page = _page_by_ids(connection, remembered, total)
        if page is not None:
            return page
    page = _find_page(
        connection, category, search, total, limit=limit, offset=offset, after=after, before=before
    )
    ids = PageIds(tuple(row.id for row in page.rows), page.has_next, page.has_prev)
    SEARCH_PAGES.put(key, version, ids)
    return page


#: A remembered page's rows by id. Built once, with the ids an expanding parameter: a statement
#: built per request, with its ids as literals, cost more to build and key for SQLAlchemy's
#: compiled cache than to run (a repeated search's read by id: 370 -> 230 µs of CPU on
#: PostgreSQL, 210 -> 75 on SQLite).
_BY_IDS = (
    select(*COLUMNS).where(Product.id.in_(bindparam("ids", expanding=True))).order_by(Product.id)
)


def _page_by_ids(connection: Connection, page: PageIds, total: int) -> Page[ProductRow] | None:
    """The remembered page's rows, read by id; None when one is gone (on PostgreSQL each
    statement sees its own snapshot, so a product deleted since the version was read)."""
    rows: list[ProductRow] = []
    if page.ids:
        # At most a page of primary keys: no budget of its own (options given to execute()
        # win over the connection's).
        found = connection.execute(_BY_IDS, {"ids": list(page.ids)}, execution_options=UNBUDGETED)
        rows = cast(list[ProductRow], list(found))
        if len(rows) != len(page.ids):
            return None
    return Page(rows=rows, total=total, has_next=page.has_next, has_prev=page.has_prev)


def _find_page(
    connection: Connection,
    category: str | None,
    search: str | None,
    total: int,
    *,
    limit: int,
    offset: int,
    after: str | None,
    before: str | None,
) -> Page[ProductRow]:
    dialect = connection.dialect.name
    source: FromClause = Product.__table__
    where = _category_filter(category)
    if search is not None:
        # Only a term with a trigram has matches to look up; a shorter one is read from the table.
        indexed = len(search) >= TRIGRAM
        walk = indexed and _walk_pays(
            connection, search=search, total=total, reads=offset + limit + 1
        )
        where.append(_search_filter(dialect, search, walk=walk))
        if dialect == "postgresql" and indexed and not walk:
            source = select(*COLUMNS).where(*where).cte("matches").prefix_with("MATERIALIZED")
            where = []
    return read_page(
        connection,
        source=source,
        columns=[source.c[column.key] for column in COLUMNS],
        key=(source.c.id,),
        where=where,
        limit=limit,
        offset=offset,
        after=None if after is None else (after,),
        before=None if before is None else (before,),
        total=total,
    )


#: Rows per INSERT … ON CONFLICT statement: bounds the parameters held in memory.
UPSERT_CHUNK = 5000

_UPDATED = ("name", "description", "price", "category")
#: An import that changes a product gives it a new version, so that its ETag changes: only
#: changed rows are written at all (``upsert_products``), so an unchanged row keeps its tag.
_NEXT_VERSION = {"version": Product.__table__.c.version + 1}


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
        index_elements=["id"], set_={**{c: pg.excluded[c] for c in _UPDATED}, **_NEXT_VERSION}
    )


@dataclass(frozen=True)
class UpsertCounts:
    """What an upsert did with the rows it was given, by id."""

    inserted: int = 0
    updated: int = 0
    #: Rows whose id existed with the very same fields: not written at all.
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


def upsert_products(session: Session, *, products: Iterable[ProductData]) -> UpsertCounts:
    """Insert new products and update changed ones by id; says how many of each, and how many
    were already stored just so (those are not written: no trigger or index work for them).

    One ``INSERT … ON CONFLICT (id) DO UPDATE`` statement per chunk of rows: a million rows
    take seconds, where loading and merging ORM objects one by one takes minutes. Ids should
    be unique within ``products`` (the importer refuses repeats): of an id repeated within a
    chunk, the last row wins and is the one counted.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in {"sqlite", "postgresql"}:
        raise NotImplementedError(f"no upsert for the {dialect} dialect")
    write = _write_staged if dialect == "sqlite" else _write_arrays
    counts = UpsertCounts()

    def flush(chunk: list[ProductData]) -> UpsertCounts:
        stored = _stored(session, [p.id for p in chunk])
        new = [p for p in chunk if p.id not in stored]
        changed = [p for p in chunk if p.id in stored and stored[p.id] != p]
        if new or changed:
            write(session, new + changed)
        return UpsertCounts(len(new), len(changed), len(chunk) - len(new) - len(changed))

    # By id, in the order given: a repeated id keeps its first place and its last row
    # (PostgreSQL refuses to update one row twice in one statement).
    pending: dict[str, ProductData] = {}
    for data in products:
        pending[data.id] = data
        if len(pending) >= UPSERT_CHUNK:
            counts += flush(list(pending.values()))
            pending = {}
    if pending:
        counts += flush(list(pending.values()))
    return counts


def _stored(session: Session, ids: list[str]) -> dict[str, ProductData]:
    """The stored products among ``ids``, as ``ProductData`` to compare with what is given."""
    query = select(*(Product.__table__.c[c] for c in ("id", *_UPDATED))).where(Product.id.in_(ids))
    return {row.id: ProductData(*row) for row in session.execute(query)}


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
        index_elements=["id"], set_={**{c: upsert.excluded[c] for c in _UPDATED}, **_NEXT_VERSION}
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


#: The ids an import has written so far, each with the row of the file it came from: a
#: temporary table in the import's transaction, so that an id repeated a million rows later
#: is still found, in memory that does not grow with the file (a set of a million ids in
#: Python would take over 100 MB).
_IMPORTED = Table(
    "imported_ids",
    MetaData(),
    Column("id", String(64), primary_key=True),
    Column("first_row", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


#: Rows travel as two arrays, cast in SQL: one statement per chunk (an executemany is one
#: per row on asyncpg), without SQLAlchemy's ARRAY type processing every element on the way.
_PG_ADD_IMPORTED = text(
    "INSERT INTO imported_ids (id, first_row) "
    "SELECT * FROM unnest(CAST(:ids AS varchar[]), CAST(:first_rows AS integer[])) "
    "ON CONFLICT (id) DO NOTHING"
)
#: Run on SQLite's driver straight: through SQLAlchemy, an executemany of a chunk's ids took
#: three times as long (57 ms against 20 ms for 5,000 ids).
_SQLITE_ADD_IMPORTED = (
    "INSERT INTO imported_ids (id, first_row) VALUES (?, ?) ON CONFLICT DO NOTHING"
)


class ImportedIds:
    """The ids written by one import, in its transaction (``storefront.importer``).

    The table is made empty when the import starts and dropped when ``close`` is called: a
    SQLite connection keeps a temporary table until it closes, and behind a transaction pooler
    nothing may outlive the transaction. A rolled-back import takes it away with the rest.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        _IMPORTED.create(session.connection(), checkfirst=True)
        session.execute(delete(_IMPORTED))

    def add(self, rows: Iterable[tuple[str, int]]) -> bool:
        """Record ids as written, each with its row, unless one was already: whether all of
        them were new (those already there keep their first row). ``rows`` must not repeat
        an id."""
        pairs = list(rows)
        if not pairs:
            return True
        connection = self.session.connection()
        if connection.dialect.name == "sqlite":
            raw = connection.connection.dbapi_connection
            assert raw is not None
            added = raw.executemany(_SQLITE_ADD_IMPORTED, pairs).rowcount
        else:
            ids = [product_id for product_id, _ in pairs]
            rows_of = [row for _, row in pairs]
            added = connection.execute(
                _PG_ADD_IMPORTED, {"ids": ids, "first_rows": rows_of}
            ).rowcount
        # One count for the whole batch, not a query per id: repeats are the rare case.
        return bool(added == len(pairs))

    def first_rows(self, ids: Iterable[str]) -> dict[str, int]:
        """The row each of ``ids`` that was already written came from."""
        wanted = list(ids)
        if not wanted:
            return {}
        query = select(_IMPORTED.c.id, _IMPORTED.c.first_row).where(_IMPORTED.c.id.in_(wanted))
        return {row.id: row.first_row for row in self.session.execute(query)}

    def close(self) -> None:
        _IMPORTED.drop(self.session.connection())
