"""/healthz and /readyz: unauthenticated, not rate limited, 503 in the error shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from handlers.health import HEAD
from storefront.app import create_app
from tests.pgbouncer import pgbouncer


def test_healthz_needs_nothing(api: TestClient) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "X-RateLimit-Limit" not in response.headers


@pytest.mark.pgbouncer  # also through PgBouncer: the pooler check
def test_readyz_reports_each_dependency(api: TestClient, backend: str) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "migrations": "ok",
        "rate_limit_store": "ok",
    } | ({"pooler": "ok"} if backend == "pgbouncer" else {})
    assert re.fullmatch(r"answered in \d+ ms", body["checks"]["database"]["reason"])
    assert body["checks"]["migrations"]["reason"] == f"at {HEAD}, as this code expects"
    store = "in process: each process counts on its own" if backend == "sqlite" else "answered PING"
    assert body["checks"]["rate_limit_store"]["reason"] == store
    assert "X-RateLimit-Limit" not in response.headers


def test_readyz_is_503_on_an_unmigrated_database(settings: Settings, tmp_path: Path) -> None:
    bare = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    with TestClient(create_app(bare)) as api:
        response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "error": "Service Unavailable",
        "message": f"Not ready: migrations: at None, this code needs {HEAD}.",
    }
    assert response.headers["Retry-After"] == "1"


def test_readyz_without_the_rate_limit_store_is_degraded_or_503_as_configured(
    settings: Settings,
) -> None:
    """Fail-open serves without limits, so the instance stays in rotation and says why;
    fail-closed refuses every identified request, so it is not ready."""
    cut_off = settings.model_copy(update={"rate_limit_storage_url": "redis://127.0.0.1:1"})
    with TestClient(create_app(cut_off)) as api:
        response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["rate_limit_store"] == {
        "status": "down",
        "reason": "connection refused; serving without limits",
    }

    closed = cut_off.model_copy(update={"rate_limit_fail_open": False})
    with TestClient(create_app(closed)) as api:
        response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "error": "Service Unavailable",
        "message": "Not ready: rate_limit_store: connection refused; "
        "requests are refused with 503.",
    }


@pytest.mark.pgbouncer  # also through PgBouncer: the pooler check
def test_readyz_is_503_without_the_database(settings: Settings) -> None:
    gone = settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:1/none", "database_timeout": 1}
    )
    with TestClient(create_app(gone)) as api:
        response = api.get("/readyz")
    assert response.status_code == 503
    pooler = "; pooler: connection refused" if settings.database_pooler != "none" else ""
    assert response.json()["message"] == (
        "Not ready: database: connection refused; "
        f"migrations: not checked: the database is down{pooler}."
    )


@pytest.mark.pgbouncer(only=True)
def test_readyz_tells_a_live_pooler_from_the_database_behind_it(settings: Settings) -> None:
    """PostgreSQL down behind a PgBouncer that is up: the pooler is not listed (its check is
    ok), the database is, as what a request meets: PgBouncer queues the login, and nothing
    answers within the timeout."""
    with pgbouncer("postgresql://postgres@127.0.0.1:1/none") as orphan:
        cut_off = settings.model_copy(
            update={"database_url": orphan.url_for(settings.database_url), "database_timeout": 2}
        )
        with TestClient(create_app(cut_off)) as api:
            response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["message"] == (
        "Not ready: database: no answer within 2 s; migrations: not checked: the database is down."
    )
