"""Indexes that keep product search and category paging bounded as the catalogue grows.

- **Substring search.** SQLite: ``products_fts``, an FTS5 table with the ``trigram``
  tokenizer (SQLite 3.34+), an external-content index over ``products(name, description)``
  keyed by the products table's implicit ``rowid``, populated here and kept in sync by three
  triggers. PostgreSQL: the ``pg_trgm`` extension and a GIN trigram index on ``lower(name)``
  and one on ``lower(description)``, which serve the ``lower(x) LIKE '%term%'`` predicates as
  they are. Terms shorter than three characters have no trigram: both engines scan for those.
- **Category paging.** ``(lower(category), id)`` replaces ``lower(category)``: a category's
  products come out of the index already in ``id`` order, so a page reads ``limit`` entries;
  on PostgreSQL it includes ``category``, so that the count is an index-only scan.

On SQLite the FTS index refers to products by ``rowid``, which SQLite keeps through UPDATE and
(in practice) VACUUM but not through a table rebuild: a later migration that recreates
``products`` (Alembic's batch mode does) must recreate the triggers and run
``INSERT INTO products_fts(products_fts) VALUES ('rebuild')``. ``INSERT OR REPLACE`` on
products would bypass the delete trigger (unless ``recursive_triggers`` is on); the code uses
``INSERT … ON CONFLICT DO UPDATE``, which fires the update trigger. That trigger does nothing
when neither name nor description changed, so re-importing a catalogue costs no FTS work.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SQLITE_FTS = [
    # External content: the text lives in products once; the index holds only trigrams.
    """
    CREATE VIRTUAL TABLE products_fts USING fts5(
        name, description,
        content='products', content_rowid='rowid',
        tokenize='trigram case_sensitive 0', columnsize=0
    )
    """,
    "INSERT INTO products_fts(products_fts) VALUES ('rebuild')",
    """
    CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
        INSERT INTO products_fts(rowid, name, description)
        VALUES (new.rowid, new.name, new.description);
    END
    """,
    """
    CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
        INSERT INTO products_fts(products_fts, rowid, name, description)
        VALUES ('delete', old.rowid, old.name, old.description);
    END
    """,
    """
    CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products
    WHEN old.name IS NOT new.name OR old.description IS NOT new.description BEGIN
        INSERT INTO products_fts(products_fts, rowid, name, description)
        VALUES ('delete', old.rowid, old.name, old.description);
        INSERT INTO products_fts(rowid, name, description)
        VALUES (new.rowid, new.name, new.description);
    END
    """,
]

SQLITE_FTS_DOWN = [
    "DROP TRIGGER IF EXISTS products_fts_update",
    "DROP TRIGGER IF EXISTS products_fts_delete",
    "DROP TRIGGER IF EXISTS products_fts_insert",
    "DROP TABLE IF EXISTS products_fts",
]

#: (index name, column) of the PostgreSQL trigram indexes.
TRIGRAM_INDEXES = (
    ("ix_products_name_lower_trgm", "name"),
    ("ix_products_description_lower_trgm", "description"),
)


def _require_sqlite_trigram(connection: sa.Connection) -> None:
    version = connection.exec_driver_sql("select sqlite_version()").scalar_one()
    if tuple(int(part) for part in version.split(".")[:2]) < (3, 34):
        raise RuntimeError(
            f"SQLite {version} has no FTS5 trigram tokenizer; product search needs SQLite "
            "3.34 or later (Python's sqlite3 module is linked against the system's SQLite)."
        )


def _create_pg_trgm(connection: sa.Connection) -> None:
    available = connection.exec_driver_sql(
        "select 1 from pg_available_extensions where name = 'pg_trgm'"
    ).first()
    if available is None:
        raise RuntimeError(
            "PostgreSQL's pg_trgm extension is not installed on the server (it ships in the "
            "postgresql-contrib package); product search needs it."
        )
    try:
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as exc:
        raise RuntimeError(
            "Could not create PostgreSQL's pg_trgm extension (it is a trusted extension: the "
            "database's owner, or a role with CREATE on it, may create it; else run "
            "'CREATE EXTENSION pg_trgm' as a superuser in this database and migrate again): "
            f"{exc.orig}"
        ) from None


def upgrade() -> None:
    connection = op.get_bind()
    op.create_index(
        "ix_products_category_lower_id",
        "products",
        [sa.text("lower(category)"), "id"],
        # PostgreSQL counts a category's products from this index alone (an index-only
        # scan) only if category itself is in it: its planner does not match lower(category).
        postgresql_include=["category"],
    )
    op.drop_index("ix_products_category_lower", table_name="products")
    if connection.dialect.name == "sqlite":
        _require_sqlite_trigram(connection)
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif connection.dialect.name == "postgresql":
        _create_pg_trgm(connection)
        for name, column in TRIGRAM_INDEXES:
            op.create_index(
                name,
                "products",
                [sa.text(f"lower({column}) gin_trgm_ops")],
                postgresql_using="gin",
            )


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        for statement in SQLITE_FTS_DOWN:
            op.execute(statement)
    elif connection.dialect.name == "postgresql":
        # pg_trgm stays installed: other objects of this database may use it.
        for name, _ in TRIGRAM_INDEXES:
            op.drop_index(name, table_name="products")
    op.create_index("ix_products_category_lower", "products", [sa.text("lower(category)")])
    op.drop_index("ix_products_category_lower_id", table_name="products")
