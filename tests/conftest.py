"""Fixtures: an app per test on its own freshly migrated database.

Every test that uses ``settings`` runs twice: on SQLite with in-memory rate limits (the
embedded default) and on PostgreSQL with Redis (the services on 127.0.0.1). Each PostgreSQL
test gets its own database, cloned from one migrated template, and each its own Redis key
prefix, so runs never collide. ``STOREFRONT_TEST_BACKENDS=sqlite`` runs one backend only.

A third backend, ``pgbouncer``, is the PostgreSQL one reached through a PgBouncer in
transaction mode that the run starts itself (``tests/pgbouncer.py``). It costs a second run of
whatever it applies to, so it applies only to tests marked ``pgbouncer``: a representative
part of the HTTP suite (``@pytest.mark.pgbouncer`` adds it to a test's platforms,
``@pytest.mark.pgbouncer(only=True)`` runs the test there alone).

Connexion's stock stack (the platform ``sqlite-connexion``) runs only the tests marked
``stock_stack``: those of what differs between the two stacks (middleware order, validation,
security, error mapping, body parsing, limits). Every other route and error is compared
across the stacks by tests/http/test_stacks.py, so a third run of a handler's test there
proves nothing more. docs/development.md states the rule.

Hypothesis runs under the profile named by ``HYPOTHESIS_PROFILE``: ``default`` (a bounded
number of examples, for every run) or ``thorough`` (ten times as many, for a deeper look).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import connexion
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from core.crypto import SecretDigester
from core.settings import Settings
from persistence.migrate import upgrade
from storefront import admin
from storefront.app import create_app
from tests.pgbouncer import PgBouncer, pgbouncer
from tests.spec_validation import validate_each_document_once

#: How many requests schemathesis sent, reported at the end of the run.
SCHEMATHESIS_CASES = pytest.StashKey[int]()
#: Per operation of the spec, how many of its requests were answered 2xx, 4xx, 5xx: an
#: operation that never answers 2xx is tested only at its gate.
SCHEMATHESIS_OPERATIONS = pytest.StashKey[dict[str, Counter[str]]]()

JWT_SECRET = "test-jwt-signing-key-0123456789abcdef0123456789"
PEPPER = "test-pepper-0123456789abcdef0123456789abcdef"

# Read before _clean_environment hides every STOREFRONT_* variable from the tests.
BACKENDS = os.environ.get("STOREFRONT_TEST_BACKENDS", "sqlite,postgresql,pgbouncer").split(",")
POSTGRES_URL = os.environ.get(
    "STOREFRONT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("STOREFRONT_TEST_REDIS_URL", "redis://127.0.0.1:6379")
#: Names this run's databases and keys apart from any other run's.
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
_DATABASES = count()


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_service(url: str, default_port: int) -> None:
    """Skip when a service is down on a developer's machine; fail under CI, which starts it."""
    if not reachable(url, default_port):
        message = f"{url} is not reachable"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run should have started it")
        pytest.skip(message)


def require_program(name: str, package: str) -> None:
    """Skip when a program is not installed on a developer's machine; fail under CI, whose
    .ci/run installs it."""
    if shutil.which(name) is None:
        message = f"{name} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run should have installed it")
        pytest.skip(message)


def postgres_admin(*statements: str) -> None:
    """Run statements on the server's maintenance connection (CREATE/DROP DATABASE)."""

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def postgres_database_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the configuration they set, never the developer's."""
    for name in list(os.environ):
        if name.startswith("STOREFRONT_"):
            monkeypatch.delenv(name)


#: Where the HTTP tests run: the compiled stack on every backend, Connexion's stock stack on
#: SQLite for the tests marked ``stock_stack`` (both stacks must answer alike;
#: tests/http/test_stacks.py compares them directly).
PLATFORMS = [
    (backend, stack)
    for backend, stack in [
        ("sqlite", "compiled"),
        ("postgresql", "compiled"),
        ("sqlite", "connexion"),
    ]
    if backend in BACKENDS
]
#: The platform of tests marked ``pgbouncer``.
POOLED = ("pgbouncer", "compiled")
#: The platform that only tests marked ``stock_stack`` run on.
STOCK_STACK = ("sqlite", "connexion")

#: Hypothesis' example counts. ``default``: what every run affords (the property tests and
#: schemathesis take their counts from it). ``thorough``: ten times as many, for a deeper run
#: (``HYPOTHESIS_PROFILE=thorough .venv/bin/pytest tests/http/test_no_server_errors.py``).
#: No deadline: a request's time depends on the machine's load, not on the input. CI replays
#: one fixed sequence, so that a red build can be reproduced; developers' runs explore new
#: examples every time (and Hypothesis keeps what fails in .hypothesis/).
hypothesis_settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "thorough", hypothesis_settings.get_profile("default"), max_examples=250
)
# Also under CI, where Hypothesis would otherwise load its own ``ci`` profile.
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# One validation of openapi.yaml a run, not one per app built (tests/spec_validation.py).
validate_each_document_once()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pgbouncer(only=False): also run (or, with only=True, run only) through PgBouncer",
    )
    config.addinivalue_line(
        "markers",
        "stock_stack: also run on Connexion's stock stack (sqlite-connexion): for tests of what "
        "the stacks do differently (middleware, validation, security, errors, bodies, limits)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that needs a backend runs on each; those that talk to the app (``api`` /
    ``app``) run on the compiled stack of every backend above, on the stock stack when marked
    ``stock_stack``, and through PgBouncer when marked ``pgbouncer``."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("pgbouncer")
    only = marker is not None and bool(marker.kwargs.get("only"))
    pooled = [POOLED] if marker is not None and POOLED[0] in BACKENDS else []
    if {"api", "app"} & set(metafunc.fixturenames) and "http_stack" in metafunc.fixturenames:
        stock = metafunc.definition.get_closest_marker("stock_stack") is not None
        unpooled = [p for p in PLATFORMS if stock or p != STOCK_STACK]
        platforms = pooled if only else unpooled + pooled
        metafunc.parametrize(
            ["backend", "http_stack"],
            platforms,
            indirect=["backend"],
            ids=[b if s == "compiled" else f"{b}-{s}" for b, s in platforms],
            scope="session",
        )
    else:
        unpooled = [b for b in BACKENDS if b != POOLED[0]]
        backends = ([] if only else unpooled) + [b for b, _ in pooled]
        metafunc.parametrize("backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def http_stack() -> str:
    """The stack of tests that do not talk to the app over HTTP."""
    return "compiled"


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name in {"postgresql", "pgbouncer"}:
        require_service(POSTGRES_URL, 5432)
        require_service(REDIS_URL, 6379)
    if name == "pgbouncer":
        require_program("pgbouncer", "pgbouncer")
        require_program("runuser", "util-linux")
    return name


@pytest.fixture(scope="session")
def pgbouncer_server() -> Iterator[PgBouncer]:
    """One PgBouncer (transaction mode) for the run, in front of the test PostgreSQL."""
    with pgbouncer(POSTGRES_URL) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def database_template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per backend, cloned for each test: cheaper than migrating."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        upgrade(f"sqlite:///{path}")
        yield str(path)
        return
    name = f"sf_{RUN_ID}_template"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        upgrade(postgres_database_url(name))
        yield name
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def cloned_database(backend: str, template: str, directory: Path) -> Iterator[str]:
    """A copy of the migrated ``template`` until the block ends: its direct URL."""
    if backend == "sqlite":
        database = directory / "storefront.db"
        shutil.copy(template, database)
        yield f"sqlite:///{database}"
        return
    name = f"sf_{RUN_ID}_{next(_DATABASES)}"
    postgres_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield postgres_database_url(name)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def direct_database_url(backend: str, database_template: str, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database of this test's own, reached directly (what migrations use
    when the server goes through PgBouncer)."""
    with cloned_database(backend, database_template, tmp_path) as url:
        yield url


def settings_for(backend: str, direct_url: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The database settings of this backend for a database, by field name (``STOREFRONT_`` +
    upper case): the server reaches it through PgBouncer on that backend."""
    if backend != "pgbouncer":
        return {"database_url": direct_url}
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer_server")
    return {
        "database_url": bouncer.url_for(direct_url),
        "database_pooler": "pgbouncer",
        "migration_database_url": direct_url,
    }


def as_env(values: dict[str, str]) -> dict[str, str]:
    """Settings by field name as environment variables, for ``storefront`` processes."""
    return {f"STOREFRONT_{name.upper()}": value for name, value in values.items()}


@pytest.fixture
def database_settings(
    backend: str, direct_database_url: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    """The database settings of this backend, by field name (``STOREFRONT_`` + upper case)."""
    return settings_for(backend, direct_database_url, request)


@pytest.fixture
def database_url(database_settings: dict[str, str]) -> str:
    """The URL the server is given: the test's database, through PgBouncer on that backend."""
    return database_settings["database_url"]


@pytest.fixture
def database_env(database_settings: dict[str, str]) -> dict[str, str]:
    """The same settings as environment variables, for ``storefront`` processes."""
    return as_env(database_settings)


@pytest.fixture(scope="module")
def module_database_env(
    backend: str,
    database_template: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    """``database_env`` of one database that a module's tests share: for servers that they
    share too (each test then uses data of its own: its own client, key, emails)."""
    directory = tmp_path_factory.mktemp("database")
    with cloned_database(backend, database_template, directory) as url:
        yield as_env(settings_for(backend, url, request))


@pytest.fixture
def rate_limit_storage_url(backend: str) -> str:
    return "memory://" if backend == "sqlite" else REDIS_URL


@pytest.fixture
def settings(
    database_settings: dict[str, str], rate_limit_storage_url: str, tmp_path: Path, http_stack: str
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        **database_settings,  # type: ignore[arg-type]
        rate_limit_storage_url=rate_limit_storage_url,
        rate_limit_key_prefix=f"test-{RUN_ID}-{secrets.token_hex(4)}",
        key_dir=tmp_path / "keys",
        jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        pepper=PEPPER,  # type: ignore[arg-type]
        validate_responses=True,
        http_stack=http_stack,
        # Short, so that tests of disabling and revoking wait little (tests/core/test_cache.py
        # covers the cache itself).
        auth_cache_ttl=0.2,
        # Budgets far beyond what a test spends; tests/access/test_ratelimit.py sets its own.
        rate_limit="1000000/minute",
        auth_failure_limit="1000000/minute",
    )


@pytest.fixture
def app(settings: Settings) -> connexion.AsyncApp:
    return create_app(settings)


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
def make_api_key(settings: Settings, digester: SecretDigester) -> Callable[..., admin.NewApiKey]:
    """A new API key of the client ``client_id``, expiring after ``expires_in`` when given."""

    def make(client_id: str, expires_in: timedelta | None = None) -> admin.NewApiKey:
        return admin.run(
            settings,
            lambda s: admin.create_api_key(s, digester, client_id=client_id, expires_in=expires_in),
        )

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


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's schemathesis figures to the controller,
    which prints the summary (``pytest_testnodedown`` below)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["schemathesis"] = json.dumps(
            {
                "cases": session.config.stash.get(SCHEMATHESIS_CASES, 0),
                "operations": session.config.stash.get(SCHEMATHESIS_OPERATIONS, {}),
            }
        )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the pytest-xdist controller: add a finished worker's schemathesis figures."""
    sent = getattr(node, "workeroutput", {}).get("schemathesis")
    if sent is None:
        return
    figures = json.loads(sent)
    stash = node.config.stash
    stash[SCHEMATHESIS_CASES] = stash.get(SCHEMATHESIS_CASES, 0) + figures["cases"]
    answers = stash.setdefault(SCHEMATHESIS_OPERATIONS, {})
    for label, counts in figures["operations"].items():
        answers.setdefault(label, Counter()).update(counts)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    cases = config.stash.get(SCHEMATHESIS_CASES, 0)
    if cases:
        terminalreporter.write_line(f"schemathesis: {cases} generated requests checked")
    for label, answers in sorted(config.stash.get(SCHEMATHESIS_OPERATIONS, {}).items()):
        classes = ", ".join(f"{n} {kind}" for kind, n in sorted(answers.items()))
        terminalreporter.write_line(f"  {label}: {answers.total()} ({classes})")
