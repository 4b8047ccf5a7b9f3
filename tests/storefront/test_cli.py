"""The ``storefront`` command, run in process (and once as a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from persistence.migrate import head_revision
from storefront.app import create_app
from storefront.cli import main
from tests.helpers import db_rows


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


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return json.loads(out)


def test_db_upgrade_creates_the_schema(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    assert "latest migration" in out
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert db_rows(settings, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert (env / "keys").exists() is False  # db upgrade needs no secrets


def test_client_lifecycle_and_api_keys(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    created = run_json(capsys, "clients", "create", "--name", "shop", "--scopes", "read", "--json")
    assert set(created) == {"client_id", "client_secret"}
    listed = run_json(capsys, "clients", "list", "--json")
    assert [(c["client_id"], c["scopes"], c["disabled"]) for c in listed] == [
        (created["client_id"], "read", False)
    ]
    assert created["client_secret"] not in json.dumps(listed)

    key = run_json(capsys, "keys", "create", "--client-id", created["client_id"], "--json")
    assert set(key) == {"key_id", "api_key"}
    assert key["api_key"].startswith("sk_")

    settings = Settings(_env_file=None, validate_responses=True)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as api:
        headers = {"X-API-Key": key["api_key"]}
        assert api.get("/users", headers=headers).status_code == 200
        form = {"grant_type": "client_credentials", **created}
        token = api.post("/auth/token", data=form).json()["access_token"]

        code, _, _ = run(capsys, "keys", "revoke", key["key_id"])
        assert code == 0
        time.sleep(settings.auth_cache_ttl)  # the server may remember the key that long
        assert api.get("/users", headers=headers).status_code == 401

        bearer = {"Authorization": f"Bearer {token}"}
        assert api.get("/users", headers=bearer).status_code == 200
        code, _, _ = run(capsys, "clients", "disable", created["client_id"])
        assert code == 0
        time.sleep(settings.auth_cache_ttl)
        assert api.get("/users", headers=bearer).status_code == 401
        assert api.post("/auth/token", data=form).status_code == 401

    listed = run_json(capsys, "clients", "list", "--json")
    assert listed[0]["disabled"] is True


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["clients", "create", "--name", "x", "--scopes", "admin"], "scopes must be"),
        (["clients", "disable", "cli_nope"], "No client with id 'cli_nope'"),
        (["keys", "create", "--client-id", "cli_nope"], "No client with id 'cli_nope'"),
        (["keys", "revoke", "key_nope"], "No API key with id 'key_nope'"),
    ],
)
def test_mistakes_are_one_line_errors(
    env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    # Log lines (a key generated on first use, say) may precede it; the error is one line.
    [error] = [line for line in err.splitlines() if line.startswith("storefront: ")]
    assert needle in error
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("failure", "needle"),
    [
        # asyncpg's command timeout and a wait for SQLite's writer slot raise it bare.
        (TimeoutError(), "longer than STOREFRONT_DATABASE_TIMEOUT"),
        (PermissionError(), "database error: PermissionError"),
    ],
)
def test_database_failures_without_text_are_one_line_errors(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    needle: str,
) -> None:
    def fail(*_: Any) -> None:
        raise failure

    monkeypatch.setattr("storefront.cli._dispatch", fail)
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 1
    assert err.startswith("storefront: ")
    assert needle in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STOREFRONT_TOKEN_TTL", "soon"),
        ("STOREFRONT_RATE_LIMIT", "lots"),
        ("STOREFRONT_DATABASE_URL", "mysql://x/y"),
        ("STOREFRONT_JWT_SECRET", "short"),
        ("STOREFRONT_RATE_LIMIT_STORAGE_URL", "memcached://x"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(
    env: Path, variable: str, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "storefront.cli", "serve"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"storefront: invalid {variable}:")
    assert "Traceback" not in result.stdout + result.stderr


def test_set_limit_gives_a_client_its_own_budget(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(capsys, "clients", "create", "--name", "big", "--json")
    code, out, _ = run(capsys, "clients", "set-limit", created["client_id"], "2/minute")
    assert code == 0
    assert "2/minute" in out
    assert run_json(capsys, "clients", "list", "--json")[0]["rate_limit"] == "2/minute"

    app = create_app(Settings(_env_file=None, validate_responses=True))  # type: ignore[call-arg]
    with TestClient(app) as api:
        form = {"grant_type": "client_credentials", **created}
        token = api.post("/auth/token", data=form).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert api.get("/users", headers=bearer).headers["RateLimit-Policy"] == (
            '"client";q=2;w=60'
        )
        assert api.get("/users", headers=bearer).status_code == 429

    code, out, _ = run(capsys, "clients", "set-limit", created["client_id"], "default")
    assert code == 0
    assert "default (100/minute)" in out
    assert run_json(capsys, "clients", "list", "--json")[0]["rate_limit"] is None

    code, _, err = run(capsys, "clients", "set-limit", created["client_id"], "lots")
    assert code == 1
    assert "not a rate limit" in err


@pytest.mark.pgbouncer(only=True)
def test_behind_pgbouncer_commands_need_postgresql_itself_for_migrations(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_env: dict[str, str],
) -> None:
    for name, value in database_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STOREFRONT_MIGRATION_DATABASE_URL")
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 2
    assert err.count("\n") == 1
    assert "STOREFRONT_DATABASE_POOLER=pgbouncer needs STOREFRONT_MIGRATION_DATABASE_URL" in err

    monkeypatch.setenv(
        "STOREFRONT_MIGRATION_DATABASE_URL", database_env["STOREFRONT_MIGRATION_DATABASE_URL"]
    )
    assert run(capsys, "db", "upgrade")[0] == 0
    created = run_json(capsys, "clients", "create", "--name", "pooled", "--json")
    listed = run_json(capsys, "clients", "list", "--json")
    assert [c["client_id"] for c in listed] == [created["client_id"]]
