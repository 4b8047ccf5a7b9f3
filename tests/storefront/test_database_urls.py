"""A database URL the commands cannot use is one line naming the setting, its password masked
wherever the URL holds it, and a non-zero exit status: real ``storefront`` processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.settings import masked_url, url_port
from tests.servers import clean_env, free_port, run_storefront

SECRET = "Pw-s3cr3t-42"
#: Nothing listens there: a refused connection.
CLOSED = free_port()
QUERY_PASSWORD = f"postgresql://127.0.0.1:{CLOSED}/db?user=u&password={SECRET}"
BAD_PORT = "the port must be a number from 1 to 65535"


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The command failed with exactly one line on stderr, naming ``needles``, and never
    printed the password or a traceback."""
    assert done.returncode != 0
    out, err = done.stdout, done.stderr
    assert SECRET not in out + err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if not line.startswith("INFO")]
    assert len(lines) == 1, err
    [line] = lines
    assert line.startswith("storefront: ")
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize("command", [["db", "upgrade"], ["clients", "list"]])
def test_a_password_in_the_query_is_masked(tmp_path: Path, command: list[str]) -> None:
    env = clean_env(STOREFRONT_DATABASE_URL=QUERY_PASSWORD)

    done = run_storefront(env, *command, cwd=tmp_path)

    line = one_line_error(
        done,
        f"cannot reach the database at host 127.0.0.1, port {CLOSED}",
        f"(STOREFRONT_DATABASE_URL=postgresql://127.0.0.1:{CLOSED}/db?user=u&password=***)",
    )
    assert done.returncode == 1, line


@pytest.mark.parametrize(
    ("command", "url", "port"),
    [
        (["db", "upgrade"], f"postgresql://u:{SECRET}@127.0.0.1:notaport/db", "notaport"),
        (["clients", "list"], f"postgresql://u:{SECRET}@127.0.0.1:99999/db", "99999"),
        (["serve"], f"postgresql://127.0.0.1:notaport/db?password={SECRET}", "notaport"),
        (["serve"], f"postgresql://u:{SECRET}@127.0.0.1:0/db", "0"),
    ],
)
def test_a_port_that_is_no_port_is_one_line_naming_the_setting(
    tmp_path: Path, command: list[str], url: str, port: str
) -> None:
    argv = [*command, "--port", str(free_port())] if command == ["serve"] else command
    env = clean_env(STOREFRONT_DATABASE_URL=url)

    done = run_storefront(env, *argv, cwd=tmp_path)

    one_line_error(done, f"invalid STOREFRONT_DATABASE_URL: {BAD_PORT}, got '{port}'")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing made: no keys, no database file


def test_the_migration_url_is_checked_and_named_too(tmp_path: Path) -> None:
    env = clean_env(
        STOREFRONT_DATABASE_URL=f"postgresql://u:{SECRET}@127.0.0.1:{CLOSED}/db",
        STOREFRONT_MIGRATION_DATABASE_URL=f"postgresql://u:{SECRET}@127.0.0.1:notaport/db",
    )
    one_line_error(
        run_storefront(env, "db", "upgrade", cwd=tmp_path),
        f"invalid STOREFRONT_MIGRATION_DATABASE_URL: {BAD_PORT}, got 'notaport'",
    )
    migrate = f"postgresql://127.0.0.1:{CLOSED}/migrate?password={SECRET}"
    env["STOREFRONT_MIGRATION_DATABASE_URL"] = migrate
    one_line_error(
        run_storefront(env, "db", "upgrade", cwd=tmp_path),
        f"(STOREFRONT_MIGRATION_DATABASE_URL={masked_url(migrate)})",
    )


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://h/db?user=u&password=pw", "postgresql://h/db?user=u&password=***"),
        (
            "postgresql://h/db?sslpassword=pw&PASSWORD=pw#x",
            "postgresql://h/db?sslpassword=***&PASSWORD=***#x",
        ),
        ("postgresql://u:p/w?@h/db", "postgresql://u:***@h/db"),  # unencoded, as make_url reads it
        ("postgresql://u:p@w@h/db", "postgresql://u:***@h/db"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///shop.db", "sqlite:///shop.db"),
    ],
)
def test_masked_url(url: str, masked: str) -> None:
    assert masked_url(url) == masked


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("postgresql://h:5432/db", "5432"),
        ("postgresql://u:p:w@h:x/db", "x"),  # the password's colon is not the port's
        ("postgresql://[::1]:6432/db", "6432"),
        ("postgresql://[::1]/db", None),
        ("postgresql://h:/db", ""),
        ("postgresql:///db?host=/run/postgresql&port=5433", None),
    ],
)
def test_url_port_reads_the_port_as_sqlalchemy_will(url: str, port: str | None) -> None:
    assert url_port(url) == port
