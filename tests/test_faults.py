"""PostgreSQL going away and coming back, under a real server: 503s, then service resumes;
directly, and through a PgBouncer in transaction mode (which can go away too).

The test runs its own PostgreSQL (initdb + pg_ctl on a spare port, in a temporary directory)
so that it can stop and start it without touching the shared one.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_program
from tests.pgbouncer import PgBouncer, pgbouncer
from tests.servers import (
    clean_env,
    free_port,
    start_server,
    stop_servers,
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


def _unavailable(http: httpx.Client, auth: dict[str, str], user_id: str) -> None:
    """Reads and writes are 503 in the error shape, with Retry-After, within the timeout."""
    for method, path, body in [
        ("GET", f"/users/{user_id}", None),
        ("GET", "/users", None),
        ("POST", "/users", {"name": "Lost", "email": "lost@example.com", "password": "pw-123456"}),
    ]:
        started = time.monotonic()
        response = http.request(method, path, headers=auth, json=body)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"] == "Service Unavailable"
        assert set(response.json()) == {"error", "message"}
        assert "Retry-After" in response.headers
        assert elapsed < TIMEOUT + 3, f"{path} took {elapsed:.1f} s"


#: PgBouncer retries a failed server login after server_login_retry (15 s by default, 1 s in
#: tests/pgbouncer.py): a bound with room for a busy machine.
RESUME_WITHIN = 30


def _resumes(http: httpx.Client, auth: dict[str, str], user_id: str, what: str) -> float:
    """Seconds until a read succeeds again; 503 until then, nothing else."""
    started = time.monotonic()
    while (status := http.get(f"/users/{user_id}", headers=auth).status_code) != 200:
        assert status == 503, f"{status} while {what} was starting"
        assert time.monotonic() - started < RESUME_WITHIN, "service did not resume"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("via", ["direct", "pgbouncer"])
def test_database_outage_is_503_then_service_resumes(
    postgres: Postgres, tmp_path: Path, via: str
) -> None:
    with contextlib.ExitStack() as stack:
        env = clean_env(
            STOREFRONT_DATABASE_URL=postgres.url,
            STOREFRONT_DATABASE_TIMEOUT=str(TIMEOUT),
            STOREFRONT_KEY_DIR=str(tmp_path / "keys"),
            STOREFRONT_LOG_LEVEL="warning",
        )
        bouncer = None
        if via == "pgbouncer":
            require_program("pgbouncer", "pgbouncer")
            bouncer = stack.enter_context(pgbouncer(postgres.url))
            env |= {
                "STOREFRONT_DATABASE_URL": bouncer.url_for(postgres.url),
                "STOREFRONT_DATABASE_POOLER": "pgbouncer",
                "STOREFRONT_MIGRATION_DATABASE_URL": postgres.url,
            }
        _outage(postgres, bouncer, env)


def _outage(postgres: Postgres, bouncer: PgBouncer | None, env: dict[str, str]) -> None:
    storefront(env, "db", "upgrade")  # only serve and db upgrade create a database
    client = storefront_json(env, "clients", "create", "--name", "ops")
    server, base = start_server(env)
    try:
        wait_until_up(base)
        with httpx.Client(base_url=base, timeout=30) as http:
            form = {"grant_type": "client_credentials", **client}
            token = http.post("/auth/token", data=form).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            user = http.post(
                "/users",
                headers=auth,
                json={"name": "Before", "email": "before@example.com", "password": "pw-123456"},
            ).json()

            postgres.stop()
            _unavailable(http, auth, user["id"])
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["message"].startswith("Not ready: database: ")

            postgres.start()
            took = _resumes(http, auth, user["id"], "PostgreSQL")
            print(f"\nPostgreSQL back: service resumed {took:.1f} s later")
            assert http.get("/readyz").status_code == 200
            if bouncer is not None:
                bouncer.stop()
                _unavailable(http, auth, user["id"])
                assert "pooler: connection refused" in http.get("/readyz").json()["message"]
                bouncer.start()
                took = _resumes(http, auth, user["id"], "PgBouncer")
                print(f"PgBouncer back: service resumed {took:.1f} s later")
            emails = [u["email"] for u in http.get("/users", headers=auth).json()]
            assert emails == ["before@example.com"]  # nothing lost, nothing half-written
    finally:
        stop_servers([server])
