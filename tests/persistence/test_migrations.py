"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from persistence.migrate import head_revision, upgrade
from persistence.models import Base


def _expression_indexes(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as con:
        rows = con.execute("select name, sql from sqlite_master where type = 'index'").fetchall()
    return {name: sql for name, sql in rows if sql and "lower(" in sql}


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    upgrade(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            # SQLite cannot reflect expression indexes; they are checked by name below.
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            version = connection.exec_driver_sql("select version_num from alembic_version")
            assert version.scalar() == head_revision()
    finally:
        engine.dispose()
    assert diff == []
    indexes = _expression_indexes(path)
    assert set(indexes) == {"uq_users_email_lower", "ix_products_category_lower"}
    assert "UNIQUE" in indexes["uq_users_email_lower"].upper()


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
