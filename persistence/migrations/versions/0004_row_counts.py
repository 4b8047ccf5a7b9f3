"""Row counts kept by the database, so that X-Total-Count costs one key lookup.

``COUNT(*)`` reads every row (or index entry) it counts: at a million users the first page of
``GET /users`` spent nearly all its time counting, and a category's count grew with the
category. Two tables now hold the counts, and triggers keep them in the same transaction as
the rows they count, whichever code (or person) writes the rows:

- ``table_counts``: the rows (``total``) of each counted table (``users``, ``products``).
- ``category_counts``: products per ``lower(category)``, the category filter's key (a row may
  stay at 0 after a category's last product goes).

SQLite runs row-level triggers (cheap there: no locks beyond the writer's). PostgreSQL runs
statement-level triggers with transition tables: one counter update per statement, so a bulk
import of 5,000 rows updates each counter once instead of queueing 5,000 updates on one row.
An ``INSERT … ON CONFLICT DO UPDATE`` fires the INSERT triggers for the rows it inserted and
the UPDATE triggers for the rows it updated. ``TRUNCATE`` (no row triggers on PostgreSQL) is
caught too. On PostgreSQL, concurrent writers of one table wait for each other's commit on
its counter row; writes are short, and users are created at the pace of password hashing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = {
    "count_users_insert": """
        CREATE TRIGGER count_users_insert AFTER INSERT ON users BEGIN
            UPDATE table_counts SET total = total + 1 WHERE table_name = 'users';
        END
    """,
    "count_users_delete": """
        CREATE TRIGGER count_users_delete AFTER DELETE ON users BEGIN
            UPDATE table_counts SET total = total - 1 WHERE table_name = 'users';
        END
    """,
    "count_products_insert": """
        CREATE TRIGGER count_products_insert AFTER INSERT ON products BEGIN
            UPDATE table_counts SET total = total + 1 WHERE table_name = 'products';
            INSERT INTO category_counts (category, products)
            VALUES (lower(new.category), 1)
            ON CONFLICT (category) DO UPDATE SET products = products + 1;
        END
    """,
    "count_products_delete": """
        CREATE TRIGGER count_products_delete AFTER DELETE ON products BEGIN
            UPDATE table_counts SET total = total - 1 WHERE table_name = 'products';
            UPDATE category_counts SET products = products - 1
            WHERE category = lower(old.category);
        END
    """,
    "count_products_update": """
        CREATE TRIGGER count_products_update AFTER UPDATE OF category ON products
        WHEN lower(old.category) IS NOT lower(new.category) BEGIN
            UPDATE category_counts SET products = products - 1
            WHERE category = lower(old.category);
            INSERT INTO category_counts (category, products)
            VALUES (lower(new.category), 1)
            ON CONFLICT (category) DO UPDATE SET products = products + 1;
        END
    """,
}

PG_FUNCTIONS = {
    "count_users_changed": """
        CREATE FUNCTION count_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            moved bigint;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                SELECT count(*) INTO moved FROM new_rows;
            ELSE
                SELECT -count(*) INTO moved FROM old_rows;
            END IF;
            IF moved <> 0 THEN
                UPDATE table_counts SET total = total + moved WHERE table_name = 'users';
            END IF;
            RETURN NULL;
        END
        $$
    """,
    # The products counter first, always: its row lock queues concurrent writers of products
    # before either holds a category's count, so that two imports cannot deadlock on them.
    "count_products_changed": """
        CREATE FUNCTION count_products_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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
            UPDATE table_counts SET total = total + moved WHERE table_name = 'products';
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
    """,
    "count_truncated": """
        CREATE FUNCTION count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE table_counts SET total = 0 WHERE table_name = TG_TABLE_NAME;
            IF TG_TABLE_NAME = 'products' THEN
                DELETE FROM category_counts;
            END IF;
            RETURN NULL;
        END
        $$
    """,
}

_PRODUCTS = "count_products_changed"
#: (trigger, table, event, transition tables, function)
PG_TRIGGERS = (
    ("count_users_insert", "users", "INSERT", "NEW TABLE AS new_rows", "count_users_changed"),
    ("count_users_delete", "users", "DELETE", "OLD TABLE AS old_rows", "count_users_changed"),
    (
        "count_products_insert",
        "products",
        "INSERT",
        "NEW TABLE AS new_rows",
        "count_products_changed",
    ),
    (
        "count_products_delete",
        "products",
        "DELETE",
        "OLD TABLE AS old_rows",
        "count_products_changed",
    ),
    # PostgreSQL allows no column list (OF category) beside transition tables: every UPDATE
    # statement compares its rows' categories, and changes nothing when none moved.
    (
        "count_products_update",
        "products",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        _PRODUCTS,
    ),
    ("count_users_truncate", "users", "TRUNCATE", None, "count_truncated"),
    ("count_products_truncate", "products", "TRUNCATE", None, "count_truncated"),
)


def upgrade() -> None:
    op.create_table(
        "table_counts",
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_table_counts")),
    )
    op.create_table(
        "category_counts",
        # Text, not String(100): lower() may lengthen a category on PostgreSQL.
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("products", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("category", name=op.f("pk_category_counts")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # No row may be written between the counting below and the triggers' creation: this
        # lock (which CREATE TRIGGER would take anyway) holds writers off until the commit.
        op.execute("LOCK TABLE users, products IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO table_counts (table_name, total) "
        "SELECT 'users', count(*) FROM users "
        "UNION ALL SELECT 'products', count(*) FROM products"
    )
    op.execute(
        "INSERT INTO category_counts (category, products) "
        "SELECT lower(category), count(*) FROM products GROUP BY lower(category)"
    )
    if dialect == "sqlite":
        for statement in SQLITE_TRIGGERS.values():
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in PG_FUNCTIONS.values():
            op.execute(statement)
        for name, table, event, transitions, function in PG_TRIGGERS:
            referencing = f"REFERENCING {transitions} " if transitions else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} {referencing}"
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for name, table, *_ in PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for function in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("category_counts")
    op.drop_table("table_counts")
