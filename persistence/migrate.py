"""Alembic, driven from code: ``storefront db upgrade``, ``storefront serve`` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from persistence.db import async_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Kept as an attribute, not an ini option: the ini parser would mangle '%' in passwords.
    config.attributes["database_url"] = async_url(database_url)
    return config


def upgrade(database_url: str | URL, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
