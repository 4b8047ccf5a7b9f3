"""``storefront db upgrade`` and ``serve`` create a missing database and say what they did:
where they created it, and which migrations they applied. Real ``storefront`` processes, on
SQLite and on the local PostgreSQL (a database of a unique name, dropped afterwards)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from persistence.migrate import upgrade
from persistence.revisions import VERSIONS, head_revision
from tests.conftest import POSTGRES_URL, postgres_admin, require_service
from tests.servers import clean_env, run_storefront, serving

HEAD = head_revision()
#: Trust authentication ignores it; what matters is that no output ever shows it.
PASSWORD = "Pw-n0t-pr1nted"


def stdout_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_db_upgrade_creates_a_sqlite_file_and_says_where_and_what_it_applied(
    tmp_path: Path,
) -> None:
    env = clean_env()
    database = tmp_path / "storefront.db"
    # Before: the other commands refuse, naming the file they looked for.
    refused = run_storefront(env, "clients", "list", cwd=tmp_path)
    assert refused.returncode == 2
    assert f"no database at {database} (the default STOREFRONT_DATABASE_URL" in refused.stderr

    assert stdout_lines(run_storefront(env, "db", "upgrade", cwd=tmp_path)) == [
        f"no database at {database} (the default STOREFRONT_DATABASE_URL "
        "sqlite:///storefront.db): creating it",
        f"applied 0001→{HEAD} ({database})",
    ]
    assert stdout_lines(run_storefront(env, "db", "upgrade", cwd=tmp_path)) == [
        f"already at {HEAD} ({database})"
    ]


#: The revisions in order (each file begins with its revision, as 0001_initial_schema.py).
REVISIONS = sorted(path.name[:4] for path in VERSIONS.glob("[0-9]*.py"))


@pytest.mark.parametrize(
    ("at", "said"),
    [
        (REVISIONS[-3], f"applied {REVISIONS[-2]}→{HEAD}"),
        (REVISIONS[-2], f"applied {HEAD}"),
    ],
)
def test_db_upgrade_names_only_the_migrations_it_applied(
    tmp_path: Path, at: str, said: str
) -> None:
    assert REVISIONS[-1] == HEAD
    database = tmp_path / "shop.db"
    upgrade(f"sqlite:///{database}", at)
    env = clean_env(STOREFRONT_DATABASE_URL=f"sqlite:///{database}")

    assert stdout_lines(run_storefront(env, "db", "upgrade", cwd=tmp_path)) == [
        f"{said} ({database})"
    ]


def test_serve_in_an_empty_directory_says_it_creates_the_database_there(tmp_path: Path) -> None:
    database = tmp_path / "storefront.db"
    with serving(tmp_path) as server:
        log = server.output
    creating = [line for line in log.splitlines() if "no database at" in line]
    assert len(creating) == 1, log
    assert creating[0].endswith(
        f"storefront: no database at {database} (the default STOREFRONT_DATABASE_URL "
        "sqlite:///storefront.db): creating it"
    )
    assert f"storefront: applied 0001→{HEAD} ({database})" in log
    # ... before the first secret it generates, which used to be the only sign.
    assert log.index("no database at") < log.index("generated a new pepper")

    # A restart logs no migration line: there is nothing new to say.
    with serving(tmp_path) as server:
        assert "no database at" not in server.output
        assert f"({database})" not in server.output


@pytest.fixture
def postgres_name() -> Iterator[str]:
    """A database name nobody uses, dropped afterwards whoever created it."""
    require_service(POSTGRES_URL, 5432)
    name = f"nc_ops_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_url(name: str, *, role: str | None = None) -> str:
    url = make_url(POSTGRES_URL).set(database=name, password=PASSWORD)
    if role is not None:
        url = url.set(username=role)
    return url.render_as_string(hide_password=False)


def test_db_upgrade_creates_a_missing_postgresql_database(
    tmp_path: Path, postgres_name: str
) -> None:
    url = make_url(POSTGRES_URL)
    env = clean_env(STOREFRONT_DATABASE_URL=postgres_url(postgres_name))
    shown = postgres_url(postgres_name).replace(PASSWORD, "***")

    done = run_storefront(env, "db", "upgrade", cwd=tmp_path)

    assert PASSWORD not in done.stdout + done.stderr
    assert stdout_lines(done) == [
        f'created the database "{postgres_name}" at host {url.host}, port {url.port or 5432}',
        f"applied 0001→{HEAD} ({shown})",
    ]
    assert stdout_lines(run_storefront(env, "db", "upgrade", cwd=tmp_path)) == [
        f"already at {HEAD} ({shown})"
    ]
    # The schema is there: a command that needs it works.
    assert stdout_lines(run_storefront(env, "clients", "list", cwd=tmp_path)) == [
        "CLIENT ID  STATUS  SCOPES  RATE LIMIT  DPOP  CREATED  NAME"
    ]


def test_without_createdb_db_upgrade_says_what_to_run(tmp_path: Path, postgres_name: str) -> None:
    role = f"nc_role_{uuid.uuid4().hex[:12]}"
    postgres_admin(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        url = make_url(POSTGRES_URL)
        host, port = url.host, url.port or 5432
        env = clean_env(STOREFRONT_DATABASE_URL=postgres_url(postgres_name, role=role))

        done = run_storefront(env, "db", "upgrade", cwd=tmp_path)

        assert done.returncode == 1
        assert PASSWORD not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(
            f'storefront: the database "{postgres_name}" does not exist at host {host}, '
            f"port {port} (STOREFRONT_DATABASE_URL=postgresql://{role}:***@"
        )
        assert f'the role "{role}" may not create it (it lacks CREATEDB)' in line
        assert f"createdb -h {host} -p {port} -U postgres -O {role} {postgres_name}" in line
        assert f'CREATE DATABASE "{postgres_name}" OWNER "{role}"' in line

        # What the line says to run, run: then db upgrade goes on as the role.
        postgres_admin(f'CREATE DATABASE "{postgres_name}" OWNER "{role}"')
        assert stdout_lines(run_storefront(env, "db", "upgrade", cwd=tmp_path))[0].startswith(
            f"applied 0001→{HEAD} "
        )
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{postgres_name}" WITH (FORCE)')
        postgres_admin(f'DROP ROLE IF EXISTS "{role}"')


def test_other_commands_say_a_postgresql_database_is_missing_as_a_sqlite_file_is(
    tmp_path: Path, postgres_name: str
) -> None:
    url = make_url(POSTGRES_URL)
    env = clean_env(STOREFRONT_DATABASE_URL=postgres_url(postgres_name))

    done = run_storefront(env, "clients", "list", cwd=tmp_path)

    assert done.returncode == 2
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f'storefront: no database "{postgres_name}" at host {url.host}, port {url.port or 5432} '
        f"(STOREFRONT_DATABASE_URL {postgres_url(postgres_name).replace(PASSWORD, '***')}): "
        "create it with 'storefront db upgrade', or set STOREFRONT_DATABASE_URL to the "
        "database the server uses"
    ]
