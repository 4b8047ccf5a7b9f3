"""Fixtures of the command-line tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture
def env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    rate_limit_storage_url: str,
) -> Path:
    """A working directory with its own database and keys, as an operator would have."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", database_url)
    monkeypatch.setenv("STOREFRONT_RATE_LIMIT_STORAGE_URL", rate_limit_storage_url)
    monkeypatch.setenv("STOREFRONT_RATE_LIMIT_KEY_PREFIX", f"test-{uuid.uuid4().hex}")
    monkeypatch.setenv("STOREFRONT_KEY_DIR", str(tmp_path / "keys"))
    return tmp_path
