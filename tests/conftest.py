"""Fixtures: an app per test on its own freshly migrated SQLite database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import connexion
import pytest
from starlette.testclient import TestClient

from persistence.migrate import upgrade
from storefront import admin
from storefront.app import create_app
from storefront.security import SecretDigester
from storefront.settings import Settings

#: How many requests schemathesis sent, reported at the end of the run.
SCHEMATHESIS_CASES = pytest.StashKey[int]()

JWT_SECRET = "test-jwt-signing-key-0123456789abcdef0123456789"
PEPPER = "test-pepper-0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the configuration they set, never the developer's."""
    for name in list(os.environ):
        if name.startswith("STOREFRONT_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database, copied for each test: cheaper than migrating every time."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path) -> Settings:
    database = tmp_path / "storefront.db"
    shutil.copy(migrated_sqlite, database)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{database}",
        key_dir=tmp_path / "keys",
        jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        pepper=PEPPER,  # type: ignore[arg-type]
        validate_responses=True,
        # Budgets far beyond what a test spends; tests/storefront/test_ratelimit.py sets its own.
        rate_limit="1000000/minute",
        auth_failure_limit="1000000/minute",
    )


@pytest.fixture
def app(settings: Settings) -> connexion.AsyncApp:
    return create_app(settings, validate_responses=True)


@pytest.fixture
def api(app: connexion.AsyncApp) -> Iterator[TestClient]:
    with app.test_client() as client:
        yield client


@pytest.fixture
def digester(settings: Settings) -> SecretDigester:
    return SecretDigester(PEPPER.encode())


@pytest.fixture
def make_client(settings: Settings, digester: SecretDigester) -> Callable[..., admin.NewClient]:
    """Create an OAuth client: ``make_client(scopes="read write", name="test")``."""

    def make(scopes: str = "read write", name: str = "test") -> admin.NewClient:
        parsed = admin.parse_scopes(scopes)
        return admin.run(
            settings, lambda s: admin.create_client(s, digester, name=name, scopes=parsed)
        )

    return make


@pytest.fixture
def make_api_key(settings: Settings, digester: SecretDigester) -> Callable[[str], admin.NewApiKey]:
    def make(client_id: str) -> admin.NewApiKey:
        return admin.run(settings, lambda s: admin.create_api_key(s, digester, client_id=client_id))

    return make


@pytest.fixture
def token_for(api: TestClient) -> Callable[..., str]:
    """An access token for a client, through the real token endpoint."""

    def fetch(client: admin.NewClient, scope: str | None = None) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        if scope is not None:
            form["scope"] = scope
        response = api.post("/auth/token", data=form)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    return fetch


@pytest.fixture
def auth(
    make_client: Callable[..., admin.NewClient], token_for: Callable[..., str]
) -> Callable[..., dict[str, str]]:
    """Headers carrying a bearer token with the given scopes: ``auth("read")``."""

    def headers(scopes: str = "read write") -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(make_client(scopes))}"}

    return headers


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    cases = config.stash.get(SCHEMATHESIS_CASES, 0)
    if cases:
        terminalreporter.write_line(f"schemathesis: {cases} generated requests checked")
