"""/healthz and /readyz: unauthenticated, not rate limited, 503 in the error shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from storefront.app import create_app

# A representative part of the HTTP suite also runs through PgBouncer (tests/conftest.py).
pytestmark = pytest.mark.pgbouncer


def test_healthz_needs_nothing(api: TestClient) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "X-RateLimit-Limit" not in response.headers


def test_readyz_reports_each_dependency(api: TestClient, backend: str) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200, response.text
    store = "in process" if backend == "sqlite" else "ok"
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "rate_limit_store": store},
    }
    assert "X-RateLimit-Limit" not in response.headers


def test_readyz_is_503_on_an_unmigrated_database(settings: Settings, tmp_path: Path) -> None:
    bare = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    with TestClient(create_app(bare)) as api:
        response = api.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "Service Unavailable"
    assert "schema is at None" in body["message"]
    assert response.headers["Retry-After"] == "1"


def test_readyz_is_503_without_the_rate_limit_store(settings: Settings) -> None:
    cut_off = settings.model_copy(update={"rate_limit_storage_url": "redis://127.0.0.1:1"})
    with TestClient(create_app(cut_off)) as api:
        response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "error": "Service Unavailable",
        "message": "Not ready: the rate-limit store is unreachable.",
    }


def test_readyz_is_503_without_the_database(settings: Settings, tmp_path: Path) -> None:
    gone = settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:1/none", "database_timeout": 1}
    )
    with TestClient(create_app(gone)) as api:
        response = api.get("/readyz")
    assert response.status_code == 503
    assert "the database is unreachable" in response.json()["message"]
