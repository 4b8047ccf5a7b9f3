"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from persistence.db import async_url
from persistence.migrate import head_revision, upgrade
from persistence.models import Base
from tests.conftest import RUN_ID, postgres_admin, postgres_database_url

EXPRESSION_INDEXES = {"uq_users_email_lower", "ix_products_category_lower"}


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"sf_{RUN_ID}_migrations"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_database_url(name)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _inspect(connection: Connection) -> tuple[list[Any], set[str], str]:
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes; they are checked by name instead.
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    if connection.dialect.name == "sqlite":
        query = "select name from sqlite_master where type = 'index'"
    else:
        query = "select indexname from pg_indexes where schemaname = 'public'"
    indexes = {row[0] for row in connection.execute(text(query))}
    version = connection.execute(text("select version_num from alembic_version")).scalar_one()
    return diff, indexes, version


def inspect(url: str) -> tuple[list[Any], set[str], str]:
    async def run() -> tuple[list[Any], set[str], str]:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_inspect)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _ignorable(change: Any) -> bool:
    # PostgreSQL reflects lower(email) back as lower((email)::text): the same index, which
    # autogenerate reports as removed and added. The names are checked separately.
    return (
        isinstance(change, tuple)
        and change[0] in {"add_index", "remove_index"}
        and change[1].name in EXPRESSION_INDEXES
    )


def test_migrated_schema_matches_the_models(empty_database: str) -> None:
    upgrade(empty_database)
    diff, indexes, version = inspect(empty_database)
    assert [change for change in diff if not _ignorable(change)] == []
    assert indexes >= EXPRESSION_INDEXES
    assert version == head_revision()


def test_upgrade_is_idempotent(empty_database: str) -> None:
    upgrade(empty_database)
    upgrade(empty_database)
    assert inspect(empty_database)[2] == head_revision()
