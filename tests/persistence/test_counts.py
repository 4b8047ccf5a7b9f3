"""The counters of migration 0004 agree with COUNT(*) after every kind of write, on both
engines, whichever way the rows are written."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from persistence import products
from persistence.counts import catalogue_version, category_total, table_total
from persistence.models import User
from persistence.products import ProductData, count_products, upsert_products
from tests.helpers import in_transaction


def counters(connection: Connection) -> tuple[dict[str, int], dict[str, int]]:
    tables = dict(connection.execute(text("select table_name, total from table_counts")).all())
    categories = connection.execute(text("select category, products from category_counts"))
    return tables, {category: n for category, n in categories if n != 0}


def truth(connection: Connection) -> tuple[dict[str, int], dict[str, int]]:
    tables = {
        table: int(connection.scalar(text(f"select count(*) from {table}")) or 0)  # noqa: S608
        for table in ("users", "products")
    }
    categories = connection.execute(
        text("select lower(category), count(*) from products group by lower(category)")
    )
    return tables, dict(categories.all())


def agree(url: str) -> tuple[dict[str, int], dict[str, int]]:
    def both(connection: Connection) -> tuple[dict[str, int], dict[str, int]]:
        kept = counters(connection)
        assert kept == truth(connection)
        return kept

    return in_transaction(url, both)


def sql(*statements: str) -> Callable[[Connection], None]:
    def work(connection: Connection) -> None:
        for statement in statements:
            connection.execute(text(statement))

    return work


def product(id_: str, category: str, name: str = "Thing") -> ProductData:
    return ProductData(id_, name, "", Decimal("1.00"), category)


def test_counters_follow_inserts_updates_upserts_and_deletes(database_url: str) -> None:
    assert agree(database_url) == ({"users": 0, "products": 0}, {})

    in_transaction(
        database_url,
        sql(
            "insert into users (id, name, email, password_hash, created_at) values "
            "('user_a', 'A', 'a@example.com', 'x', '2026-01-01 00:00:00'), "
            "('user_b', 'B', 'b@example.com', 'x', '2026-01-01 00:00:01'), "
            "('user_c', 'C', 'c@example.com', 'x', '2026-01-01 00:00:02')",
            "insert into products (id, name, description, price, category) values "
            "('prod_1', 'One', '', 1, 'Garden'), ('prod_2', 'Two', '', 1, 'GARDEN'), "
            "('prod_3', 'Three', '', 1, 'Kitchen')",
        ),
    )
    assert agree(database_url) == ({"users": 3, "products": 3}, {"garden": 2, "kitchen": 1})

    # A category moves; a rename and a change of case only leave the counts alone.
    in_transaction(
        database_url,
        sql(
            "update products set category = 'garden' where id = 'prod_3'",
            "update products set name = 'Uno', category = 'GaRdEn' where id = 'prod_1'",
        ),
    )
    assert agree(database_url) == ({"users": 3, "products": 3}, {"garden": 3})

    # The importer's upsert: one existing product changes category, two are new.
    def upsert(connection: Connection) -> None:
        with Session(bind=connection) as session:
            rows = [product("prod_2", "Tools"), product("prod_4", "tools"), product("prod_5", "Ü")]
            assert upsert_products(session, products=rows).total == 3
            session.flush()

    in_transaction(database_url, upsert)
    tables, categories = agree(database_url)
    assert tables == {"users": 3, "products": 5}
    assert categories["garden"] == 2
    assert categories["tools"] == 2

    in_transaction(
        database_url,
        sql(
            "delete from users where id = 'user_b'",
            "delete from products where id in ('prod_1', 'prod_3', 'prod_4')",
        ),
    )
    tables, categories = agree(database_url)
    assert tables == {"users": 2, "products": 2}
    assert categories["tools"] == 1


def test_a_rolled_back_write_leaves_the_counts(database_url: str) -> None:
    def fail(connection: Connection) -> None:
        sql(
            "insert into products (id, name, description, price, category) "
            "values ('prod_x', 'X', '', 1, 'Garden')"
        )(connection)
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        in_transaction(database_url, fail)
    assert agree(database_url) == ({"users": 0, "products": 0}, {})


def test_truncate_resets_the_counts_on_postgresql(backend: str, database_url: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no TRUNCATE (DELETE without WHERE runs the row triggers)")
    in_transaction(
        database_url,
        sql(
            "insert into products (id, name, description, price, category) values "
            "('prod_1', 'One', '', 1, 'Garden'), ('prod_2', 'Two', '', 1, 'Kitchen')",
        ),
    )
    in_transaction(database_url, sql("truncate products"))
    assert agree(database_url) == ({"users": 0, "products": 0}, {})


def test_totals_read_the_counters(database_url: str) -> None:
    """X-Total-Count of unfiltered lists and of categories comes from the counters (here set
    apart from the rows on purpose, to see which one is read)."""
    in_transaction(
        database_url,
        sql(
            "insert into products (id, name, description, price, category) values "
            "('prod_1', 'One', '', 1, 'Garden')",
            "update table_counts set total = 41 where table_name = 'products'",
            "update table_counts set total = 7 where table_name = 'users'",
            "update category_counts set products = 5 where category = 'garden'",
        ),
    )

    def totals(connection: Connection) -> tuple[int, int, int, int, int]:
        return (
            count_products(connection),
            count_products(connection, category="GARDEN"),
            count_products(connection, category="Garden", search="one"),
            category_total(connection, "Nowhere"),
            table_total(connection, User),
        )

    assert in_transaction(database_url, totals) == (41, 5, 1, 0, 7)


def test_concurrent_product_writers_queue_instead_of_deadlocking(
    backend: str, database_url: str
) -> None:
    """Two PostgreSQL transactions writing products of two categories in opposite orders:
    each would hold one category's count while waiting for the other's, had the products
    counter not queued them first."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    insert = text(
        "insert into products (id, name, description, price, category) "
        "values (:id, 'Thing', '', 1, :category)"
    )
    try:
        with engine.connect() as first, engine.connect() as second:
            first.execute(insert, {"id": "prod_1a", "category": "Apples"})
            with ThreadPoolExecutor(1) as pool:
                # Waits for the first transaction (on the products counter, before any
                # category); with the old order it held Bananas' count while waiting.
                waiting = pool.submit(
                    second.execute, insert, {"id": "prod_2b", "category": "Bananas"}
                )
                _until_a_transaction_waits_for_a_lock(engine)
                first.execute(insert, {"id": "prod_1b", "category": "Bananas"})
                first.commit()
                waiting.result(timeout=30)
            second.execute(insert, {"id": "prod_2a", "category": "Apples"})
            second.commit()
    finally:
        engine.dispose()
    assert agree(database_url) == ({"users": 0, "products": 4}, {"apples": 2, "bananas": 2})


def _until_a_transaction_waits_for_a_lock(engine: Engine) -> None:
    query = text(
        "select count(*) from pg_stat_activity "
        "where datname = current_database() and wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    with engine.connect() as observer:
        while not observer.scalar(query):
            assert time.monotonic() < deadline, "the second writer never waited"
            time.sleep(0.01)


def versioned_count(url: str, search: str, category: str | None = None) -> tuple[int, int]:
    """(the catalogue version, the search's count) in one snapshot."""

    def read(connection: Connection) -> tuple[int, int]:
        return catalogue_version(connection), count_products(
            connection, search=search, category=category
        )

    return in_transaction(url, read)


def test_a_remembered_search_count_is_used_only_while_the_catalogue_is_unchanged(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[str] = []
    count_search = products._count_search

    def counting(connection: Connection, *, category: str | None, search: str) -> int:
        counted.append(search)
        return count_search(connection, category=category, search=search)

    monkeypatch.setattr(products, "_count_search", counting)
    in_transaction(
        database_url,
        sql(
            "insert into products (id, name, description, price, category) values "
            "('prod_a', 'Walnut desk', '', 1, 'Office'),"
            "('prod_b', 'Oak desk', 'walnut veneer', 1, 'Office'),"
            "('prod_c', 'Lamp', '', 1, 'Home')"
        ),
    )
    version, first = versioned_count(database_url, "walnut")
    assert first == 2
    # Asked again with nothing written: the remembered count, at the same version.
    assert versioned_count(database_url, "walnut") == (version, 2)
    assert counted == ["walnut"]

    # Every kind of write moves the version on, so the count is taken again, and is exact.
    writes = [
        (
            "insert into products (id, name, description, price, category) values "
            "('prod_d', 'Walnut shelf', '', 1, 'Home')",
            3,
        ),
        ("update products set name = 'Oak desk' where id = 'prod_a'", 2),
        ("update products set description = 'walnut top' where id = 'prod_c'", 3),
        ("update products set category = 'Garden' where id = 'prod_c'", 3),
        ("delete from products where id = 'prod_b'", 2),
    ]
    for statement, expected in writes:
        in_transaction(database_url, sql(statement))
        moved, total = versioned_count(database_url, "walnut")
        assert moved > version, statement
        assert total == expected, statement
        version = moved
    assert counted == ["walnut"] * (1 + len(writes))
    # A category narrows its own entry: (term, category) are remembered apart.
    assert versioned_count(database_url, "walnut", "HOME")[1] == 1  # prod_d
    assert versioned_count(database_url, "walnut", "garden")[1] == 1  # prod_c
