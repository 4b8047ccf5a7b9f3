"""The importer's upsert, on both engines: one row per id, the last one given winning."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from persistence import products
from persistence.models import Product
from persistence.products import ProductData, UpsertCounts, upsert_products
from tests.helpers import in_transaction


def test_a_repeated_id_keeps_its_last_row_within_and_across_chunks(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(products, "UPSERT_CHUNK", 2)
    given = [
        ProductData("prod_a", "First A", "", Decimal("1.00"), "Garden"),
        ProductData("prod_a", "Second A", "", Decimal("2.00"), "Tools"),  # same chunk
        ProductData("prod_b", "B", "", Decimal("3.00"), "Garden"),
        ProductData("prod_c", "C", "", Decimal("4.00"), "Garden"),
        ProductData("prod_a", "Third A", "", Decimal("5.00"), "Kitchen"),  # a later chunk
    ]

    def write(connection: Connection) -> list[tuple[str, str, Decimal, str]]:
        with Session(bind=connection) as session:
            # prod_a is inserted by the first chunk, then updated by the last.
            assert upsert_products(session, products=given) == UpsertCounts(3, 1, 0)
            # Given again: nothing to write.
            assert upsert_products(session, products=given[2:]) == UpsertCounts(0, 0, 3)
            session.flush()
        query = select(Product.id, Product.name, Product.price, Product.category)
        return [tuple(row) for row in connection.execute(query.order_by(Product.id))]

    assert in_transaction(database_url, write) == [
        ("prod_a", "Third A", Decimal("5.00"), "Kitchen"),
        ("prod_b", "B", Decimal("3.00"), "Garden"),
        ("prod_c", "C", Decimal("4.00"), "Garden"),
    ]
