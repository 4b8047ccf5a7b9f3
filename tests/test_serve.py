"""The README's first command, for real: ``storefront serve --demo`` over HTTP on a socket."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storefront.cli import DEMO_USERS
from tests.servers import (
    STOREFRONT,
    Server,
    clean_env,
    demo_server,
    free_port,
    run_storefront,
    storefront,
    storefront_json,
    wait_until_up,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with demo_server(tmp_path) as running:
        yield running


def test_demo_server_serves_the_api_over_http(server: Server, tmp_path: Path) -> None:
    curl = re.search(r"^\s*(curl .*/auth/token.*)$", server.output, re.MULTILINE)
    assert curl, server.output
    # The printed curl line, run as printed, yields a token.
    fetched = subprocess.run(
        ["bash", "-c", curl.group(1)], capture_output=True, text=True, timeout=30, check=True
    )
    token = httpx.Response(200, content=fetched.stdout).json()
    assert token["token_type"] == "bearer"
    assert token["scope"] == "read write"
    assert token["expires_in"] == 3600

    with httpx.Client(base_url=server.base, timeout=10) as http:
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        products = http.get("/products", params={"category": "electronics"}, headers=auth)
        assert products.status_code == 200
        assert any(p["name"] == "Gadget Pro" for p in products.json())

        created = http.post(
            "/users",
            headers=auth,
            json={
                "name": "Charlie Chaplin",
                "email": "charlie@example.com",
                "password": "pw-12345",
            },
        )
        assert created.status_code == 201
        location = created.headers["Location"]
        assert location == f"/users/{created.json()['id']}"  # relative: no public URL is set
        assert http.get(location, headers=auth).json() == created.json()

        missing = http.get("/users/user_doesnotexist", headers=auth)
        assert missing.status_code == 404
        assert missing.json() == {
            "error": "User not found",
            "message": "The specified user ID does not exist.",
        }
        assert http.get("/nowhere").json()["error"] == "Not Found"
        assert "server" not in http.get("/users", headers=auth).headers

        # An API key made by the command works against the running server, in both headers.
        client_id = re.search(r"client_id:\s+(\S+)", server.output)
        assert client_id, server.output
        made = storefront_json(
            server.env, "keys", "create", "--client-id", client_id.group(1), cwd=tmp_path
        )
        api_key = made["api_key"]
        for headers in ({"X-API-Key": api_key}, {"Authorization": f"Bearer {api_key}"}):
            assert http.get("/products", headers=headers).status_code == 200
            refused = http.post("/users", headers={**headers, "Content-Type": "text/plain"})
            assert refused.status_code == 415  # authenticated, scope write, then the body

        ui = http.get("/ui/")
        assert ui.status_code == 200
        assert "swagger" in ui.text.lower()
        spec = http.get("/openapi.json").json()
        assert "clientCredentials" in spec["components"]["securitySchemes"]["OAuth2"]["flows"]

    # Secrets are generated once and kept for the next start.
    assert (tmp_path / "storefront-keys" / "jwt-signing.key").stat().st_mode & 0o077 == 0
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    # One argon2id hash at a time: twelve sign-ups take the better part of a second.
    env = clean_env(STOREFRONT_PASSWORD_HASH_CONCURRENCY="1", STOREFRONT_SHUTDOWN_GRACE="30")
    storefront(env, "db", "upgrade", cwd=tmp_path)
    client = storefront_json(env, "clients", "create", "--name", "slow", cwd=tmp_path)
    process = subprocess.Popen(
        [STOREFRONT, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)
        form = {"grant_type": "client_credentials", **client}
        token = httpx.post(f"{base}/auth/token", data=form).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def sign_ups() -> list[int]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                requests = [
                    http.post(
                        "/users",
                        headers=auth,
                        json={
                            "name": f"U{i}",
                            "email": f"u{i}@example.com",
                            "password": "pw-123456",
                        },
                    )
                    for i in range(12)
                ]
                pending = asyncio.gather(*requests)
                await asyncio.sleep(0.3)  # all twelve are in flight, most still queued
                process.send_signal(signal.SIGTERM)
                return [r.status_code for r in await pending]

        statuses = asyncio.run(sign_ups())
        assert statuses == [201] * 12
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        log = process.stderr.read()
        assert "Shutting down" in log
        assert "Traceback" not in log
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr is not None:
            process.stderr.close()


def test_the_demo_has_a_few_users_and_a_restart_adds_none(tmp_path: Path) -> None:
    """A demo's first GET /users is a page of people, not []: and only once, however often
    the demo starts (the catalogue, likewise, is imported again without copies)."""
    demo_users = json.loads(DEMO_USERS.read_text(encoding="utf-8"))
    for start in range(2):
        with demo_server(tmp_path) as server:
            client_id = re.search(r"client_id:\s+(\S+)", server.output)
            secret = re.search(r"client_secret:\s+(\S+)", server.output)
            assert client_id, server.output
            assert secret, server.output
            with httpx.Client(base_url=server.base, timeout=10) as http:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": client_id.group(1),
                    "client_secret": secret.group(1),
                }
                token = http.post("/auth/token", data=form).json()["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                listed = http.get("/users", headers=auth)
                assert listed.status_code == 200
                assert [(u["name"], u["email"]) for u in listed.json()] == [
                    (person["name"], person["email"]) for person in demo_users
                ], f"start {start + 1}"
                assert listed.headers["X-Total-Count"] == "5"
                if start == 0:
                    # One deleted comes back at the next start; nothing else is touched.
                    gone = listed.json()[0]["id"]
                    assert http.delete(f"/users/{gone}", headers=auth).status_code == 204
                    demo_users = [*demo_users[1:], demo_users[0]]


def test_start_up_prints_no_warnings(server: Server) -> None:
    # Python's warnings ("…: StarletteDeprecationWarning: …"), and log warnings other than the
    # first start's news that it made its keys.
    python_warnings = re.findall(r"^.*\w+Warning: .*$", server.output, re.MULTILINE)
    assert python_warnings == []
    logged = [line for line in server.lines if " WARNING " in line]
    assert all("generated a new" in line for line in logged), logged


def test_starlettes_test_client_finds_httpx2_in_a_plain_install() -> None:
    # Connexion imports starlette.testclient at import time; found with httpx alone, it warns
    # (StarletteDeprecationWarning, a UserWarning: shown) on every start. This venv has the
    # test extras, so only the declared dependencies can show the warning is avoided.
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert any(d.startswith("httpx2") for d in project["project"]["dependencies"])


def test_a_port_out_of_range_is_one_line(tmp_path: Path) -> None:
    done = run_storefront(clean_env(), "serve", "--port", "99999", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr == (
        "storefront serve: argument --port: must be from 1 to 65535, got 99999"
        " (see storefront serve --help)\n"
    )
    assert not (tmp_path / "storefront.db").exists()  # stopped before anything else


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_storefront(clean_env(), "serve", "--port", str(port), cwd=tmp_path)

    assert done.returncode == 1
    assert done.stderr == (
        f"storefront: cannot listen on 127.0.0.1:{port}: port {port} is in use by another"
        " program; stop it, or choose another port with --port\n"
    )


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (
            "postgresql://shop:hunter2hunter2@db.invalid:5432/shop",
            "cannot reach the database at host db.invalid, port 5432"
            " (STOREFRONT_DATABASE_URL=postgresql://shop:***@db.invalid:5432/shop): ",
        ),
        (
            # serve creates a missing directory; a file standing where it should be is an error
            "sqlite:///{tmp}/a-file/shop.db",
            "cannot open the database file {tmp}/a-file/shop.db"
            " (STOREFRONT_DATABASE_URL=sqlite:///{tmp}/a-file/shop.db): ",
        ),
    ],
    ids=["postgresql", "sqlite"],
)
def test_an_unreachable_database_is_one_line_naming_the_setting(
    tmp_path: Path, url: str, named: str
) -> None:
    tmp = tmp_path.resolve()
    (tmp / "a-file").write_text("not a directory\n")
    env = clean_env(STOREFRONT_DATABASE_URL=url.format(tmp=tmp))
    done = run_storefront(env, "serve", "--port", str(free_port()), cwd=tmp_path)

    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("storefront: " + named.format(tmp=tmp)), line
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize(("fail_open", "mode"), [("true", "open"), ("false", "closed")])
def test_an_unreachable_rate_limit_store_is_a_warning_at_start(
    tmp_path: Path, fail_open: str, mode: str
) -> None:
    url = f"redis://:hunter2hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    env = clean_env(
        STOREFRONT_RATE_LIMIT_STORAGE_URL=url, STOREFRONT_RATE_LIMIT_FAIL_OPEN=fail_open
    )
    with demo_server(tmp_path, env) as server:
        started = server.output

    [warning] = [line for line in started.splitlines() if "rate-limit store" in line]
    assert " WARNING " in warning
    assert "STOREFRONT_RATE_LIMIT_STORAGE_URL=redis://:***@127.0.0.1:" in warning
    assert f"failing {mode} (STOREFRONT_RATE_LIMIT_FAIL_OPEN={fail_open})" in warning
    assert "hunter2" not in started
