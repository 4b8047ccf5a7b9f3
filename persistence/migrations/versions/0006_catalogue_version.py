"""A version of the catalogue that every write to products moves on: exact search counts can be
remembered for as long as it does not change.

A search's ``X-Total-Count`` is an exact count of its matches, and for a common term that
count grows with the catalogue (10,000 matches at a million products). Popular terms repeat;
a count remembered under ``(database, term, category, catalogue version)`` is exact for as
long as the version stands, and the version is moved by the database, in the transaction of
the write, whichever code (or person) writes products:

- ``table_counts.version``: 0 at first; the ``products`` row's moves on with every insert,
  delete, update (of a name, description or category: what a search or a category matches)
  and truncate.
- SQLite: the row triggers of 0004 that count products now move it too, and a new trigger
  moves it on updates. PostgreSQL: 0004's statement-level function already updates the
  products counter first on every INSERT, UPDATE and DELETE statement (its lock order keeps
  concurrent writers from deadlocking); it now moves the version in that same UPDATE, and so
  does the TRUNCATE function. No new lock is taken.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COUNT = "UPDATE table_counts SET total = total {sign} 1{version} WHERE table_name = 'products';"
_VERSION = ", version = version + 1"


def _sqlite_triggers(version: str) -> dict[str, str]:
    """0004's two product-counting triggers, moving the version when ``version`` is set."""
    return {
        "count_products_insert": f"""
            CREATE TRIGGER count_products_insert AFTER INSERT ON products BEGIN
                {_COUNT.format(sign="+", version=version)}
                INSERT INTO category_counts (category, products)
                VALUES (lower(new.category), 1)
                ON CONFLICT (category) DO UPDATE SET products = products + 1;
            END
        """,
        "count_products_delete": f"""
            CREATE TRIGGER count_products_delete AFTER DELETE ON products BEGIN
                {_COUNT.format(sign="-", version=version)}
                UPDATE category_counts SET products = products - 1
                WHERE category = lower(old.category);
            END
        """,
    }


SQLITE_VERSION_ON_UPDATE = """
    CREATE TRIGGER catalogue_version_update AFTER UPDATE OF name, description, category
    ON products BEGIN
        UPDATE table_counts SET version = version + 1 WHERE table_name = 'products';
    END
"""


def _pg_products_function(version: str) -> str:
    """0004's statement-level function, moving the version in its first UPDATE when set."""
    return f"""
        CREATE OR REPLACE FUNCTION count_products_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            moved bigint;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                SELECT count(*) INTO moved FROM new_rows;
            ELSIF TG_OP = 'DELETE' THEN
                SELECT -count(*) INTO moved FROM old_rows;
            ELSE
                moved := 0;
            END IF;
            UPDATE table_counts SET total = total + moved{version}
            WHERE table_name = 'products';
            IF TG_OP = 'INSERT' THEN
                INSERT INTO category_counts (category, products)
                SELECT category, sum(delta) FROM (
                    SELECT lower(category) AS category, 1 AS delta FROM new_rows
                ) AS changed
                GROUP BY category HAVING sum(delta) <> 0 ORDER BY category
                ON CONFLICT (category) DO UPDATE
                SET products = category_counts.products + excluded.products;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO category_counts (category, products)
                SELECT category, sum(delta) FROM (
                    SELECT lower(category) AS category, -1 AS delta FROM old_rows
                ) AS changed
                GROUP BY category HAVING sum(delta) <> 0 ORDER BY category
                ON CONFLICT (category) DO UPDATE
                SET products = category_counts.products + excluded.products;
            ELSE
                INSERT INTO category_counts (category, products)
                SELECT category, sum(delta) FROM (
                    SELECT lower(category) AS category, -1 AS delta FROM old_rows
                    UNION ALL SELECT lower(category), 1 FROM new_rows
                ) AS changed
                GROUP BY category HAVING sum(delta) <> 0 ORDER BY category
                ON CONFLICT (category) DO UPDATE
                SET products = category_counts.products + excluded.products;
            END IF;
            RETURN NULL;
        END
        $$
    """


def _pg_truncate_function(version: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE table_counts SET total = 0{version} WHERE table_name = TG_TABLE_NAME;
            IF TG_TABLE_NAME = 'products' THEN
                DELETE FROM category_counts;
            END IF;
            RETURN NULL;
        END
        $$
    """


def _replace(version: str) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, statement in _sqlite_triggers(version).items():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(_pg_products_function(version))
        op.execute(_pg_truncate_function(version))


def upgrade() -> None:
    with op.batch_alter_table("table_counts") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    _replace(_VERSION)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_VERSION_ON_UPDATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS catalogue_version_update")
    _replace("")
    op.execute("ALTER TABLE table_counts DROP COLUMN version")  # SQLite 3.35+ and PostgreSQL
