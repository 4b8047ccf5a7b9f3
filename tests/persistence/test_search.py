"""A search's page agrees with its count however the page is found: by looking the matches
up in the index, or by walking the id index and testing each row (``_walk_pays``)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest
from sqlalchemy import Connection, update
from sqlalchemy import delete as delete_rows
from sqlalchemy.orm import Session

from persistence import products
from persistence.models import Product
from persistence.products import FTS_FOLDS_TO_ASCII, ProductData, list_products, upsert_products
from tests.helpers import in_transaction

#: Code points per row of the probe table below: one query per ASCII character then finds the
#: few rows holding a code point that folds to it, instead of one row per code point.
BLOCK = 1024


def test_the_fts_index_folds_exactly_these_characters_to_ascii() -> None:
    """Every code point of Unicode, asked of the SQLite this process runs: which ones does the
    FTS5 trigram tokenizer fold to an ASCII character? ``_ascii_contains`` makes those ASCII
    before LIKE (which folds ASCII letters only) and must know them all."""
    connection = sqlite3.connect(":memory:")
    connection.execute("create virtual table probe using fts5(x, tokenize='trigram')")
    points = [p for p in range(0x80, 0x110000) if not 0xD800 <= p <= 0xDFFF]
    blocks = [points[i : i + BLOCK] for i in range(0, len(points), BLOCK)]
    connection.executemany(
        "insert into probe(rowid, x) values (?, ?)",
        # Separated by what no ASCII phrase "q?q" can span.
        ((n, "\n\n".join(f"q{chr(p)}q" for p in block)) for n, block in enumerate(blocks)),
    )
    folded = {}
    for ascii_code in range(0x20, 0x7F):
        character = chr(ascii_code)
        phrase = '"q' + character.replace('"', '""') + 'q"'
        for (row,) in connection.execute("select rowid from probe where probe match ?", (phrase,)):
            for point in blocks[row]:  # which of the row's code points it was
                text = f"q{chr(point)}q"
                connection.execute("insert into probe(rowid, x) values (-1, ?)", (text,))
                hit = connection.execute(
                    "select 1 from probe where probe match ? and rowid = -1", (phrase,)
                ).fetchone()
                connection.execute("delete from probe where rowid = -1")
                if hit:
                    folded[chr(point)] = character
    assert folded == FTS_FOLDS_TO_ASCII
    # And LIKE does not fold them, nor any other character than ASCII letters.
    for character, letter in FTS_FOLDS_TO_ASCII.items():
        assert connection.execute("select ? like ?", (character, letter)).fetchone() == (0,)
    assert connection.execute("select 'É' like 'é', 'E' like 'e'").fetchone() == (0, 1)


def _product(i: int, name: str, description: str) -> ProductData:
    return ProductData(f"prod_{i:04d}", name, description, Decimal(1), "Things")


def test_walk_and_lookup_find_what_the_count_counts(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same terms, each page found both ways (forced), against the count: the characters
    that the SQLite index folds to ASCII, case, literal % and _, a term in a name and one in a
    description, and one with characters other than ASCII."""
    rows = [
        _product(0, "\u212aettle", "plain"),  # KELVIN SIGN: SQLite's index folds it to k
        _product(1, "Kettle", "plain"),
        _product(2, "kettle", "plain"),
        _product(3, "Bottle", "for \u017fale"),  # LONG S: SQLite's index folds it to s
        _product(4, "Bottle", "FOR SALE"),
        _product(5, "Glass", "100% cotton_wool"),
        _product(6, "Glass", "100 cottonXwool"),
        _product(7, "\u00c9CLAIR", "caf\u00e9"),
        _product(8, "\u00e9clair", "CAF\u00c9"),
        *(_product(10 + i, f"Filler {i}", "nothing here") for i in range(40)),
    ]

    def load(connection: Connection) -> None:
        with Session(bind=connection) as session:
            upsert_products(session, products=rows)
            session.flush()

    in_transaction(database_url, load)
    on_sqlite = {
        "kettle": ["prod_0000", "prod_0001", "prod_0002"],
        "KETTLE": ["prod_0000", "prod_0001", "prod_0002"],
        "for sale": ["prod_0003", "prod_0004"],
        "0% cotton_w": ["prod_0005"],
        "fill": [f"prod_{10 + i:04d}" for i in range(40)],
        "\u00e9clair": ["prod_0007", "prod_0008"],
    }
    for term, ids in on_sqlite.items():
        found = {}
        for walk in (True, False):
            monkeypatch.setattr(products, "_walk_pays", lambda *_, walk=walk, **__: walk)
            products.forget_searches()

            def read(connection: Connection, term: str = term) -> tuple[list[str], int]:
                first = list_products(connection, search=term, limit=20)
                seen = [row.id for row in first.rows]
                if seen:
                    after = list_products(connection, search=term, limit=20, after=seen[-1])
                    seen += [row.id for row in after.rows]
                return seen, first.total

            found[walk] = in_transaction(database_url, read)
        assert found[True] == found[False], term
        assert len(found[True][0]) == found[True][1], term
        if backend == "sqlite":  # PostgreSQL's lower() folds as its locale says
            assert found[True][0] == ids, term


def test_a_repeated_search_reads_its_remembered_page_by_id_while_the_catalogue_stands(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked again, a search's page is its remembered ids read afresh: a new price shows, and
    an insert, a rename or a delete that changes what matches moves the catalogue version, so
    the page is found again, never stale. (A price alone moves the version on PostgreSQL,
    whose statement-level trigger does not look at which columns an UPDATE set: the page is
    then found again, which costs time, never exactness.)"""
    products.forget_searches()
    rows = [_product(i * 2, f"Walnut {i}", "wood") for i in range(30)]
    rows += [_product(i * 2 + 1, f"Pine {i}", "wood") for i in range(30)]

    def write(
        *changed: ProductData, delete: str | None = None, price: tuple[str, str] | None = None
    ) -> None:
        def work(connection: Connection) -> None:
            with Session(bind=connection) as session:
                if changed:
                    upsert_products(session, products=list(changed))
                if price:
                    session.execute(
                        update(Product).where(Product.id == price[0]).values(price=price[1])
                    )
                if delete:
                    session.execute(delete_rows(Product).where(Product.id == delete))
                session.flush()

        in_transaction(database_url, work)

    write(*rows)
    found = []
    real_find = products._find_page
    monkeypatch.setattr(
        products, "_find_page", lambda *a, **k: found.append(a[2]) or real_find(*a, **k)
    )

    def page(**filters: object) -> products.Page[products.ProductRow]:
        return in_transaction(
            database_url, lambda c: list_products(c, search="walnut", limit=5, **filters)
        )

    first = page()
    assert [row.id for row in first.rows] == [f"prod_{i * 2:04d}" for i in range(5)]
    assert (first.total, first.has_next, first.has_prev) == (30, True, False)
    assert found == ["walnut"]

    again = page()
    assert again == first
    assert found == ["walnut"], "the repeat found its page again instead of reading it by id"

    write(price=("prod_0002", "9.50"))  # the price alone, as an operator's UPDATE
    priced = page()
    assert [row.price for row in priced.rows][1] == Decimal("9.50")
    assert [row.id for row in priced.rows] == [row.id for row in first.rows]
    if backend == "sqlite":
        assert found == ["walnut"]
    else:
        assert found == ["walnut", "walnut"]
        found.pop()

    write(ProductData("prod_0001", "Walnut pine", "wood", Decimal(1), "Things"))  # renamed
    renamed = page()
    assert [row.id for row in renamed.rows][:3] == ["prod_0000", "prod_0001", "prod_0002"]
    assert renamed.total == 31
    assert found == ["walnut", "walnut"]

    write(delete="prod_0000")
    deleted = page()
    assert deleted.rows[0].id == "prod_0001"
    assert deleted.total == 30
    assert found == ["walnut"] * 3

    # Each cursor is a page of its own.
    after = page(after="prod_0004")
    assert after.rows[0].id == "prod_0006"
    assert (after.total, after.has_prev) == (30, True)
    assert found == ["walnut"] * 4


def test_remembered_results_are_bounded_by_weight_least_recently_used_first() -> None:
    memo: products.Remembered[str, tuple[str, ...]] = products.Remembered(
        10, weigh=lambda ids: len(ids)
    )
    memo.put("a", 1, ("x",) * 4)
    memo.put("b", 1, ("x",) * 4)
    assert memo.get("a", 1) == ("x",) * 4  # a is now the most recently used
    memo.put("c", 1, ("x",) * 4)  # 12 > 10: b goes
    assert (memo.get("b", 1), len(memo), memo.weight) == (None, 2, 8)
    assert memo.get("a", 2) is None  # another catalogue version
    memo.put("a", 2, ("x",))  # replaced, not added
    assert (len(memo), memo.weight) == (2, 5)
    memo.clear()
    assert (len(memo), memo.weight) == (0, 0)
