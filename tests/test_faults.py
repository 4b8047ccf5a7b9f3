"""PostgreSQL going away and coming back, under a real server: 503s, then service resumes.

The test runs its own PostgreSQL (initdb + pg_ctl on a spare port, in a temporary directory)
so that it can stop and start it without touching the shared one.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    STOREFRONT,
    clean_env,
    free_port,
    storefront,
    storefront_json,
    wait_until_up,
)

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
TIMEOUT = 2  # STOREFRONT_DATABASE_TIMEOUT for the server under test


def as_postgres(tool: str, *args: str) -> None:
    """Run one of PostgreSQL's server tools as the postgres user (initdb refuses root)."""
    assert PG_BIN is not None
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Postgres:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        as_postgres("pg_ctl", "-D", str(self.directory / "data"), "-w", *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._pg_ctl("-o", options, "-l", str(self.directory / "log"), "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if PG_BIN is None or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL's server binaries and runuser")
    # Not under pytest's tmp_path: the postgres user must be able to reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="storefront-pg-"))
    shutil.chown(directory, "postgres")
    as_postgres("initdb", "-D", str(directory / "data"), "-A", "trust", "-U", "postgres")
    server = Postgres(directory, free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [STOREFRONT, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_up(f"http://127.0.0.1:{port}")
    return process


def test_database_outage_is_503_then_service_resumes(postgres: Postgres, tmp_path: Path) -> None:
    env = clean_env(
        STOREFRONT_DATABASE_URL=postgres.url,
        STOREFRONT_DATABASE_TIMEOUT=str(TIMEOUT),
        STOREFRONT_KEY_DIR=str(tmp_path / "keys"),
        STOREFRONT_LOG_LEVEL="warning",
    )
    storefront(env, "db", "upgrade")
    client = storefront_json(env, "clients", "create", "--name", "ops")
    port = free_port()
    server = _serve(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            form = {"grant_type": "client_credentials", **client}
            token = http.post("/auth/token", data=form).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            user = http.post(
                "/users",
                headers=auth,
                json={"name": "Before", "email": "before@example.com", "password": "pw-123456"},
            ).json()

            postgres.stop()
            for method, path, body in [
                ("GET", f"/users/{user['id']}", None),
                ("GET", "/users", None),
                (
                    "POST",
                    "/users",
                    {"name": "Lost", "email": "lost@example.com", "password": "pw-123456"},
                ),
            ]:
                started = time.monotonic()
                response = http.request(method, path, headers=auth, json=body)
                elapsed = time.monotonic() - started
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"] == "Service Unavailable"
                assert set(response.json()) == {"error", "message"}
                assert "Retry-After" in response.headers
                assert elapsed < TIMEOUT + 3, f"{path} took {elapsed:.1f} s"
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert "database" in ready.json()["message"]

            postgres.start()
            deadline = time.monotonic() + 20
            while (status := http.get(f"/users/{user['id']}", headers=auth).status_code) != 200:
                assert status == 503, f"{status} while PostgreSQL was starting"
                assert time.monotonic() < deadline, "service did not resume"
                time.sleep(0.05)
            assert http.get("/readyz").status_code == 200
            emails = [u["email"] for u in http.get("/users", headers=auth).json()]
            assert emails == ["before@example.com"]  # nothing lost, nothing half-written
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
