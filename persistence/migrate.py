"""Alembic, driven from code: ``storefront db upgrade``, ``storefront serve`` and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationInfo
from sqlalchemy.engine import URL

from persistence.db import async_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Kept as an attribute, not an ini option: the ini parser would mangle '%' in passwords.
    config.attributes["database_url"] = async_url(database_url)
    return config


def upgrade(database_url: str | URL, revision: str = "head") -> list[str]:
    """Migrate to ``revision``; the revisions applied, oldest first (none: it was there)."""
    config = alembic_config(database_url)
    applied: list[str] = []

    def record(*, step: MigrationInfo, **_: Any) -> None:
        if step.is_upgrade:
            applied.extend(step.up_revision_ids)

    config.attributes["on_version_apply"] = record
    command.upgrade(config, revision)
    return applied
