"""The ``storefront`` command, run in process (and once as a real process)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from persistence.revisions import head_revision
from storefront.app import create_app
from storefront.cli import _parser, main
from tests.helpers import db_rows
from tests.servers import clean_env, serving


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
    assert out.startswith(f"already at {head_revision()} (")  # the fixture's is migrated
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
    assert set(key) == {"key_id", "api_key", "expires_at"}
    assert key["api_key"].startswith("sk_")
    assert key["expires_at"] is None  # without --expires-in a key never expires

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


def test_clients_take_resource_scopes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scopes = "products:read users:write products:read introspect"
    created = run_json(capsys, "clients", "create", "--name", "n", "--scopes", scopes, "--json")
    [listed] = run_json(capsys, "clients", "list", "--json")
    assert listed["client_id"] == created["client_id"]
    # Stored once each, in the vocabulary's order: the string a token carries by default.
    assert listed["scopes"] == "users:write products:read introspect"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["clients", "create", "--name", "x", "--scopes", "admin"], "unknown scope 'admin'"),
        (
            ["clients", "create", "--name", "x", "--scopes", "users:read user:write"],
            "unknown scope 'user:write' (did you mean 'users:write'?); scopes must be some of: "
            "read write users:read users:write products:read products:write introspect",
        ),
        (["clients", "create", "--name", "x", "--scopes", " "], "scopes must be some of: read"),
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


def test_set_limit_keeps_several_limits_on_a_client_and_on_a_key(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(capsys, "clients", "create", "--name", "many", "--json")
    client_id = created["client_id"]
    code, out, _ = run(capsys, "clients", "set-limit", client_id, "100/minute", "10000/day")
    assert (code, out.strip()) == (0, f"client {client_id}: rate limits 100/minute, 10000/day")
    assert run_json(capsys, "clients", "list", "--json")[0]["rate_limit"] == "100/minute;10000/day"

    key = run_json(capsys, "keys", "create", "--client-id", client_id, "--json")
    code, out, _ = run(capsys, "keys", "set-limit", key["key_id"], "2/second;50/hour", "900/day")
    assert (code, out.strip()) == (
        0,
        f"API key {key['key_id']}: rate limits 2/second, 50/hour, 900/day",
    )
    [listed] = run_json(capsys, "keys", "list", "--json")
    assert listed["rate_limit"] == "2/second;50/hour;900/day"
    code, out, _ = run(capsys, "keys", "set-limit", key["key_id"], "default")
    assert (code, out.strip()) == (0, f"API key {key['key_id']}: rate limit its client's")
    assert run_json(capsys, "keys", "list", "--json")[0]["rate_limit"] is None

    for argv, message in [
        (("1/minute", "2/minute"), "two limits with one window (per-minute)"),
        (("default", "2/minute"), "'default' stands alone"),
        (("lots",), "not a rate limit like '500/minute': 'lots'"),
    ]:
        code, _, err = run(capsys, "clients", "set-limit", client_id, *argv)
        assert code == 1, argv
        assert message in err
    code, _, err = run(capsys, "keys", "set-limit", "key_nope", "1/minute")
    assert code == 1
    assert "No API key with id 'key_nope'" in err


def test_keys_with_uses_are_created_and_listed_with_what_is_left(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(capsys, "clients", "create", "--name", "metered", "--json")
    client_id = created["client_id"]
    code, out, _ = run(
        capsys, "keys", "create", "--client-id", client_id, "--uses", "3", "--refill", "5/day"
    )
    assert code == 0
    assert re.search(r"^uses:\s+3$", out, re.M)
    assert re.search(r"^uses_refill:\s+5/day$", out, re.M)
    once = run_json(capsys, "keys", "create", "--client-id", client_id, "--uses", "2", "--json")
    assert (once["uses"], once["uses_refill"]) == (2, None)

    app = create_app(Settings(_env_file=None, validate_responses=True))  # type: ignore[call-arg]
    with TestClient(app) as api:
        keyed = {"X-API-Key": once["api_key"]}
        assert [api.get("/products", headers=keyed).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]

    listed = {k["key_id"]: k for k in run_json(capsys, "keys", "list", "--json")}
    assert listed[once["key_id"]]["uses_remaining"] == 0
    refilled = next(k for k in listed.values() if k["uses_refill"] == "5/day")
    assert (refilled["uses"], refilled["uses_remaining"]) == (3, 3)
    _, out, _ = run(capsys, "keys", "list")
    assert "3 (refills 5/day)" in out
    assert out.splitlines()[2].split()[-1] == "0"

    for argv, message in [
        (("--uses", "0"), "--uses must be between 1 and"),
        (("--refill", "5/day"), "--refill needs --uses"),
        (("--uses", "5", "--refill", "often"), "--refill must be uses per period"),
    ]:
        code, _, err = run(capsys, "keys", "create", "--client-id", client_id, *argv)
        assert code == 1, argv
        assert message in err


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


def _commands() -> list[list[str]]:
    """Every command line that has options of its own: ["serve"], ["clients", "create"], …"""
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            found.append(path)
        for group in groups:
            for name, child in group.choices.items():
                walk(child, [*path, name])

    walk(_parser(), [])
    return found


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _entries(text: str, section: str) -> list[tuple[str, str]]:
    """(invocation, help) of each entry of a --help section, help wrapped onto one line."""
    if f"\n{section}:\n" not in text:
        return []
    body = text.split(f"\n{section}:\n", 1)[1].split("\n\n", 1)[0]
    entries = re.split(r"\n(?=  \S)", body)
    found = []
    for entry in entries:
        first, _, rest = entry.strip().partition("\n")
        # A long invocation has its help on the next line; a short one, beside it.
        invocation, _, beside = first.partition("  ")
        explained = f"{beside} {rest}"
        found.append((invocation.strip(), re.sub(r"\s+", " ", explained).strip()))
    return found


@pytest.mark.parametrize("argv", _commands(), ids=" ".join)
def test_every_option_says_what_it_does_and_its_default(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    text = help_of(capsys, *argv)
    options = [e for e in _entries(text, "options") if not e[0].startswith("-h, --help")]
    for invocation, explained in options:
        said = explained.rpartition(" (")[0]
        assert re.search(r"[a-z]{3,} [a-z]+", said), f"{argv} {invocation}: no help"
        assert re.search(r"\((default: .+|required)\)$", explained), f"{argv} {invocation}"
    for invocation, explained in _entries(text, "positional arguments"):
        assert re.search(r"[a-z]{3,} [a-z]+", explained), f"{argv} {invocation}: no help"
    assert options or "positional arguments:" in text or argv == ["db", "upgrade"]


def test_keys_revoke_help_and_the_docs_say_how_soon_a_key_stops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What the code does: a server remembers a checked key for STOREFRONT_AUTH_CACHE_TTL
    # (test_client_lifecycle_and_api_keys waits that long for the 401).
    ttl = Settings.model_fields["auth_cache_ttl"].default
    assert ttl == 1.0
    text = " ".join(help_of(capsys, "keys", "revoke").split())
    assert "within STOREFRONT_AUTH_CACHE_TTL seconds (1 by default)" in text
    assert "at once" not in text
    listed = " ".join(help_of(capsys, "keys").split())
    assert "revoke an API key; it stops working within STOREFRONT_AUTH_CACHE_TTL (1 s)" in listed
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text("utf-8")
    row = next(line for line in operations.splitlines() if "`storefront keys revoke" in line)
    assert "it stops working within `STOREFRONT_AUTH_CACHE_TTL` (1 s)" in row


def test_products_import_help_describes_both_formats_and_the_id_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(capsys, "products", "import")
    assert "JSON  an array of objects" in text
    assert "id,name,description,price,category" in text
    assert "an id is 'prod_' and 1 to 59 letters, digits, '_' or '-'" in text
    assert "derived from its name and category" in text
    assert "inserted, updated and already stored unchanged" in text


def test_lists_are_tables_with_a_header_and_json_for_scripts(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = run_json(capsys, "clients", "create", "--name", "shop", "--json")["client_id"]
    other = run_json(capsys, "clients", "create", "--name", "other", "--scopes", "read", "--json")
    new_keys = [run_json(capsys, "keys", "create", "--client-id", shop, "--json") for _ in "ab"]
    kept, gone = (key["key_id"] for key in new_keys)
    theirs = run_json(capsys, "keys", "create", "--client-id", other["client_id"], "--json")
    run(capsys, "keys", "revoke", gone)

    code, out, _ = run(capsys, "clients", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "CLIENT",
        "ID",
        "STATUS",
        "SCOPES",
        "RATE",
        "LIMIT",
        "DPOP",
        "CREATED",
        "NAME",
    ]
    assert [row.split()[:3] for row in rows] == [
        [shop, "active", "read"],
        [other["client_id"], "active", "read"],
    ]
    assert [row.split()[-3] for row in rows] == ["optional", "optional"]  # DPOP
    assert rows[0].endswith("  shop")
    # Columns line up under their header.
    assert {row.index(" active") for row in rows} == {header.index(" STATUS")}

    code, out, _ = run(capsys, "keys", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        *("KEY", "ID", "PREFIX", "CLIENT", "ID", "STATUS"),
        *("CREATED", "EXPIRES", "LAST", "USED", "USES", "LEFT"),
    ]
    assert [[cells[0], cells[2], cells[3]] for cells in map(str.split, rows)] == [
        [kept, shop, "active"],
        [gone, shop, "revoked"],
        [theirs["key_id"], other["client_id"], "active"],
    ]
    assert rows[0].split()[-3:] == ["never", "never", "-"]  # no expiry, never used, no uses

    listed = run_json(capsys, "keys", "list", "--client-id", shop, "--json")
    assert [(k["key_id"], k["revoked_at"] is None) for k in listed] == [(kept, True), (gone, False)]
    assert set(listed[0]) == {
        *("key_id", "prefix", "client_id", "status", "created_at"),
        *("expires_at", "last_used_at", "revoked_at"),
        *("rate_limit", "uses", "uses_refill", "uses_remaining"),
    }
    # Keys are shown once, at creation: the list has only their first characters.
    assert [k["prefix"] for k in listed] == [key["api_key"][:11] for key in new_keys]
    assert [row.split()[1] for row in rows[:2]] == [key["api_key"][:11] for key in new_keys]
    for key in new_keys:
        assert key["api_key"][11:] not in out + json.dumps(listed)

    strict = run_json(capsys, "clients", "create", "--name", "strict", "--require-dpop", "--json")
    listed_clients = run_json(capsys, "clients", "list", "--json")
    assert [c["require_dpop"] for c in listed_clients] == [False, False, True]
    _, out, _ = run(capsys, "clients", "list")
    last = out.splitlines()[-1].split()
    assert (last[0], last[-3], last[-1]) == (strict["client_id"], "required", "strict")

    code, _, err = run(capsys, "keys", "list", "--client-id", "cli_nope")
    assert code == 1
    assert "No client with id 'cli_nope'" in err


#: How every command prints a time, in tables and JSON alike.
RFC3339_SECONDS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_every_command_prints_times_one_way_in_tables_and_json(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = run_json(capsys, "clients", "create", "--name", "shop", "--json")["client_id"]
    key = run_json(capsys, "keys", "create", "--client-id", shop, "--expires-in", "90d", "--json")
    rotated = run_json(capsys, "clients", "rotate-secret", shop, "--grace", "1h", "--json")
    signing = run_json(capsys, "keys", "rotate-signing", "--json")

    client = run_json(capsys, "clients", "list", "--json")[0]
    listed_key = run_json(capsys, "keys", "list", "--json")[0]
    signing_keys = run_json(capsys, "keys", "list-signing", "--json")
    json_times = [
        client["created_at"],
        client["previous_secret_expires_at"],
        rotated["previous_secret_expires_at"],
        key["expires_at"],
        listed_key["created_at"],
        listed_key["expires_at"],
        signing["activates_at"],
        *(p["retires_at"] for p in signing["previous"]),
        *(row[name] for row in signing_keys for name in ("created_at", "activates_at")),
    ]
    for moment in json_times:
        assert re.fullmatch(RFC3339_SECONDS, moment), moment

    # The tables show the very strings --json gives.
    _, out, _ = run(capsys, "clients", "list")
    assert client["created_at"] in out.splitlines()[1].split()
    _, out, _ = run(capsys, "keys", "list")
    assert out.splitlines()[1].split()[4:6] == [listed_key["created_at"], listed_key["expires_at"]]
    _, out, _ = run(capsys, "keys", "list-signing")
    for row, line in zip(signing_keys, out.splitlines()[1:], strict=True):
        assert line.split()[3] == row["activates_at"]
    _, out, _ = run(capsys, "keys", "create", "--client-id", shop, "--expires-in", "1d")
    assert re.search(rf"^expires_at: +{RFC3339_SECONDS}$", out, re.MULTILINE), out
    _, out, _ = run(capsys, "keys", "rotate-signing")
    assert re.search(rf"signs from {RFC3339_SECONDS}$", out.splitlines()[0]), out


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"storefront {metadata.version('storefront-api')}\n"


def failed_authentications(base: str, forwarded_for: list[str]) -> list[int]:
    """The statuses of one request per address, each with a wrong API key, from 127.0.0.1."""
    with httpx.Client(base_url=base, timeout=10) as http:
        return [
            http.get(
                "/products",
                headers={"X-API-Key": "sk_wrong", "X-Forwarded-For": address},
            ).status_code
            for address in forwarded_for
        ]


#: Eight addresses, as a local process rotating X-Forwarded-For would claim them.
ROTATING = [f"203.0.113.{i}" for i in range(1, 9)]
#: uvicorn's own variable, set to trust everyone: the server must ignore it.
FAILURES_LIMITED = {"STOREFRONT_AUTH_FAILURE_LIMIT": "5/minute", "FORWARDED_ALLOW_IPS": "*"}


def test_forwarded_for_from_an_unlisted_address_is_ignored(tmp_path: Path) -> None:
    # uvicorn alone believes X-Forwarded-For from 127.0.0.1: a local process naming a new
    # address on each request would get a fresh failure budget each time, and never a 429.
    with serving(tmp_path, clean_env(**FAILURES_LIMITED)) as server:
        statuses = failed_authentications(server.base, ROTATING)
    assert statuses == [401] * 5 + [429] * 3  # all counted against 127.0.0.1


def test_forwarded_for_from_a_listed_proxy_names_the_client(tmp_path: Path) -> None:
    env = clean_env(**FAILURES_LIMITED, STOREFRONT_FORWARDED_ALLOW_IPS="127.0.0.1, ::1")
    with serving(tmp_path, env) as server:
        # Each forwarded address has a budget of its own...
        assert failed_authentications(server.base, ROTATING) == [401] * 8
        # ...which one address spends, and then it alone is refused.
        assert failed_authentications(server.base, ["198.51.100.7"] * 7) == [401] * 5 + [429] * 2
        assert failed_authentications(server.base, ["198.51.100.8"]) == [401]


def test_a_client_without_a_secret_can_be_required_to_use_dpop(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RFC 9700's client: no shared secret (private_key_jwt) and sender-constrained tokens."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    public = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    key_set = env / "jwks.json"
    key_set.write_text(json.dumps({"keys": [public]}))
    created = run_json(
        capsys, "clients", "create", "--name", "agent", "--jwks", str(key_set), "--require-dpop",
        "--json",
    )  # fmt: skip
    (listed,) = run_json(capsys, "clients", "list", "--json")
    assert listed["client_id"] == created["client_id"]
    assert (listed["auth_methods"], listed["require_dpop"]) == (["private_key_jwt"], True)
