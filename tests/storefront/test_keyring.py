"""The pepper and signing key a database is bound to, and commands that never create one.

Most cases run the command in process (``storefront.cli.main``) from one working directory
or another, as an operator's shell would; one runs the real ``storefront`` command.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from starlette.testclient import TestClient

from core.crypto import fingerprint
from core.settings import Settings, load_settings
from storefront.app import create_app, create_app_from_env
from storefront.cli import main
from tests.conftest import RUN_ID, postgres_admin, postgres_database_url
from tests.helpers import all_cells, db_rows, in_transaction
from tests.servers import clean_env, free_port, run_storefront, storefront_json

OTHER_PEPPER = "another-pepper-0123456789abcdef0123456789abcdef"
OTHER_JWT_SECRET = "another-jwt-key-0123456789abcdef0123456789abcdef"


def run(capsys: pytest.CaptureFixture[str], cwd: Path, *argv: str) -> tuple[int, str, str]:
    """``storefront ARGV`` in process, from the working directory ``cwd``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refusal(err: str) -> str:
    """The one ``storefront: …`` line a refused command writes (log lines may precede it)."""
    [line] = [line for line in err.splitlines() if line.startswith("storefront: ")]
    assert "Traceback" not in err
    return line


def token_status(settings: Settings, client: dict[str, str]) -> int:
    """The token endpoint's answer to a client, from a server on these settings."""
    with TestClient(create_app(settings)) as api:
        form = {"grant_type": "client_credentials", **client}
        return api.post("/auth/token", data=form).status_code


def generated_keys(database_url: str, cwd: Path) -> Path:
    """Where a command run from ``cwd`` keeps the keys it made for this database: beside a
    SQLite file, in the working directory for PostgreSQL."""
    if database_url.startswith("sqlite:///"):
        return Path(database_url.removeprefix("sqlite:///")).with_name("storefront-keys")
    return cwd / "storefront-keys"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The directory the operator set the database up from."""
    (tmp_path / "shop").mkdir()
    return tmp_path / "shop"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """Another working directory, holding nothing of the shop's."""
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "elsewhere"


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    """A migrated database named by an absolute URL, no key directory and no secrets set."""
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", database_url)
    return database_url


def test_keys_follow_a_sqlite_database_and_are_refused_for_a_server_database(
    database: str,
    backend: str,
    shop: Path,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, shop, "clients", "create", "--name", "first", "--json")
    assert code == 0, err
    first = json.loads(out)
    settings = load_settings(_env_file=None)
    assert "generated a new pepper" in err

    code, out, err = run(capsys, elsewhere, "clients", "create", "--name", "second", "--json")
    if backend == "sqlite":
        # The keys were made beside the database file, so any directory finds them.
        assert code == 0, err
        assert "generated" not in err
        assert not (shop / "storefront-keys").exists()
        assert not (elsewhere / "storefront-keys").exists()
        for client in (first, json.loads(out)):
            assert token_status(settings, client) == 200
    else:
        # A server database has no directory of its own: the keys stayed in the shop's, and
        # from elsewhere the command refuses instead of making a pepper of its own.
        assert code == 2
        line = refusal(err)
        assert "was set up with a pepper that is not here" in line
        assert "STOREFRONT_KEY_DIR" in line
        assert "STOREFRONT_PEPPER" in line
        assert "postgresql" in line  # which database...
        assert "@127.0.0.1" in line  # ...without its password, if it has one
        assert not (elsewhere / "storefront-keys").exists()
        assert out == ""
        assert len(db_rows(settings, "SELECT id FROM clients")) == 1


@pytest.mark.parametrize(
    ("variable", "value", "kind"),
    [
        ("STOREFRONT_PEPPER", OTHER_PEPPER, "pepper"),
        ("STOREFRONT_JWT_SECRET", OTHER_JWT_SECRET, "JWT signing key"),
    ],
)
def test_a_secret_the_database_was_not_set_up_with_is_refused(
    database: str,
    shop: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    kind: str,
) -> None:
    code, _, err = run(capsys, shop, "clients", "create", "--name", "first")
    assert code == 0, err

    monkeypatch.setenv(variable, value)
    for argv in (["clients", "create", "--name", "x"], ["clients", "list"], ["db", "upgrade"]):
        code, out, err = run(capsys, shop, *argv)
        assert code == 2, argv
        line = refusal(err)
        assert line.startswith(f"storefront: {variable} is not the {kind} this database")
        assert f"set {variable} to that one" in line
        assert "client_secret" not in out
    assert value not in err

    # A key file changed behind the database's back is named by its place.
    monkeypatch.delenv(variable)
    key_dir = shop / "keys"
    shutil.copytree(generated_keys(database, shop), key_dir)
    monkeypatch.setenv("STOREFRONT_KEY_DIR", str(key_dir))
    filename = "pepper.key" if variable == "STOREFRONT_PEPPER" else "jwt-signing.key"
    (key_dir / filename).write_text(value)
    code, _, err = run(capsys, shop, "keys", "create", "--client-id", "cli_whoever")
    assert code == 2
    line = refusal(err)
    assert f"the {kind} in {key_dir / filename} is not the one this database" in line
    assert "set STOREFRONT_KEY_DIR to the directory that holds its keys" in line


def test_the_database_keeps_fingerprints_not_secrets(
    database: str, shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, shop, "clients", "create", "--name", "x", "--json")
    assert code == 0, err
    settings = load_settings(_env_file=None)
    key_dir = generated_keys(database, shop)
    pepper = (key_dir / "pepper.key").read_bytes().strip()
    jwt_key = (key_dir / "jwt-signing.key").read_bytes().strip()

    recorded = dict(db_rows(settings, "SELECT name, fingerprint FROM secret_fingerprints"))
    assert recorded == {
        "pepper": fingerprint(pepper, "pepper"),
        "jwt-signing-key": fingerprint(jwt_key, "jwt-signing-key"),
    }
    cells = " ".join(all_cells(settings))
    assert pepper.decode() not in cells
    assert jwt_key.decode() not in cells


def test_credentials_made_before_fingerprints_keep_their_pepper(
    database: str, shop: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A database from before migration 0005: it holds credentials and no fingerprint.
    code, _, err = run(capsys, shop, "clients", "create", "--name", "old")
    assert code == 0, err
    in_transaction(database, lambda c: c.exec_driver_sql("DELETE FROM secret_fingerprints"))
    (generated_keys(database, shop) / "pepper.key").unlink()

    code, _, err = run(capsys, elsewhere, "clients", "create", "--name", "new")
    assert code == 2
    line = refusal(err)
    assert "holds client secrets and API keys made under a pepper that is not here" in line
    assert "STOREFRONT_KEY_DIR" in line
    assert not list(elsewhere.glob("**/pepper.key"))


def test_keys_left_in_the_old_default_directory_are_pointed_at(
    tmp_path: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before keys followed a SQLite file, an absolute URL kept them in ./storefront-keys of
    # whichever directory the server ran in. Upgraded, the first start finds none beside the
    # file, and says where the old ones are rather than making new ones.
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    old = elsewhere / "storefront-keys"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STOREFRONT_DATABASE_URL", url)
        patch.setenv("STOREFRONT_KEY_DIR", str(old))
        assert run(capsys, elsewhere, "db", "upgrade")[0] == 0
        assert run(capsys, elsewhere, "clients", "create", "--name", "old")[0] == 0
    in_transaction(url, lambda c: c.exec_driver_sql("DELETE FROM secret_fingerprints"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STOREFRONT_DATABASE_URL", url)
        code, _, err = run(capsys, elsewhere, "clients", "create", "--name", "new")
    assert code == 2
    assert refusal(err).endswith(
        "set STOREFRONT_KEY_DIR to the directory that holds its keys, or STOREFRONT_PEPPER to "
        f"its pepper (is it {old}?)"
    )
    assert not (tmp_path / "shop-keys").exists()


# --- no command but serve and db upgrade creates a database ----------------------------------


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables: an empty SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        (tmp_path / "empty.db").touch()
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"sf_{RUN_ID}_keyring_empty"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_database_url(name)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table_names(url: str) -> list[str]:
    return in_transaction(url, lambda connection: inspect(connection).get_table_names())


COMMANDS = [
    ["clients", "create", "--name", "x"],
    ["clients", "list"],
    ["clients", "disable", "cli_x"],
    ["keys", "create", "--client-id", "cli_x"],
    ["keys", "revoke", "key_x"],
    ["products", "import", "catalogue.json"],
]


def test_commands_refuse_a_missing_sqlite_database_and_say_where_they_looked(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (elsewhere / "catalogue.json").write_text("[]")
    for argv in COMMANDS:
        code, out, err = run(capsys, elsewhere, *argv)
        assert code == 2, argv
        assert out == ""
        line = refusal(err)
        assert line == (
            f"storefront: no database at {elsewhere / 'storefront.db'} (the default "
            "STOREFRONT_DATABASE_URL sqlite:///storefront.db): create it with 'storefront db "
            "upgrade', or set STOREFRONT_DATABASE_URL to the database the server uses"
        )
        assert sorted(p.name for p in elsewhere.iterdir()) == ["catalogue.json"]

    monkeypatch.setenv("STOREFRONT_DATABASE_URL", "sqlite:///data/shop.db")
    code, _, err = run(capsys, elsewhere, "clients", "list")
    assert code == 2
    assert f"no database at {elsewhere / 'data' / 'shop.db'} (STOREFRONT_DATABASE_URL " in err
    assert not (elsewhere / "data").exists()

    code, _, err = run(capsys, elsewhere, "db", "upgrade")
    assert code == 0, err
    assert (elsewhere / "data" / "shop.db").exists()
    assert not (elsewhere / "data" / "shop-keys").exists()  # db upgrade makes no secrets
    code, _, err = run(capsys, elsewhere, "clients", "list")
    assert code == 0, err
    assert not (elsewhere / "data" / "shop-keys").exists()  # a command that needs none
    code, _, err = run(capsys, elsewhere, "clients", "create", "--name", "x")
    assert code == 0, err
    assert (elsewhere / "data" / "shop-keys" / "pepper.key").exists()


def test_commands_refuse_a_database_without_tables(
    empty_database: str,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", empty_database)
    code, _, err = run(capsys, elsewhere, "clients", "create", "--name", "x")
    assert code == 2
    line = refusal(err)
    assert line.startswith("storefront: the database at ")
    assert line.endswith(
        "has no Storefront tables: create it with 'storefront db upgrade', or set "
        "STOREFRONT_DATABASE_URL to the database the server uses"
    )
    assert "sqlite" not in line  # a file's path, or a URL without its password
    assert table_names(empty_database) == []


# --- the real command, from a second working directory ------------------------------------


def test_the_storefront_command_from_a_second_directory(tmp_path: Path) -> None:
    shop, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    shop.mkdir()
    elsewhere.mkdir()
    relative = clean_env()  # the default: ./storefront.db, in the directory of the command
    absolute = clean_env(STOREFRONT_DATABASE_URL=f"sqlite:///{shop / 'storefront.db'}")

    assert run_storefront(relative, "db", "upgrade", cwd=shop).returncode == 0
    client = storefront_json(absolute, "clients", "create", "--name", "shop", cwd=elsewhere)
    # The keys are beside the database: a server started in the shop's directory uses them.
    assert sorted(p.name for p in shop.iterdir()) == ["storefront-keys", "storefront.db"]
    assert list(elsewhere.iterdir()) == []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(shop)
        assert token_status(load_settings(_env_file=None), client) == 200

    # The server refuses another pepper before it listens, in one line.
    wrong = absolute | {"STOREFRONT_PEPPER": OTHER_PEPPER}
    done = run_storefront(wrong, "serve", "--port", str(free_port()), cwd=elsewhere)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("storefront: STOREFRONT_PEPPER is not the pepper this database")
    assert done.stdout == ""


def test_a_server_started_by_uvicorn_itself_refuses_too(
    database: str,
    shop: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = run(capsys, shop, "clients", "create", "--name", "x")
    assert code == 0, err
    monkeypatch.chdir(shop)
    monkeypatch.setenv("STOREFRONT_JWT_SECRET", OTHER_JWT_SECRET)
    # What `uvicorn --factory storefront.app:create_app_from_env` calls.
    with pytest.raises(SystemExit) as exited:
        create_app_from_env()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "STOREFRONT_JWT_SECRET is not the JWT signing key this database" in err
