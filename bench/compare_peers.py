"""Storefront under wrk, every route beside the reference servers, alternating, on either engine.

Prints requests/s, p50 and p99 latency, server CPU per request and ratios; asserts nothing.
Absolute figures drift on a shared machine, so each peer's run is taken right after a run of
the project on the same route, and the ratio (project / peer) is the median over rounds of
those pairs.

Scenarios (the reference servers, hand-written Starlette and idiomatic FastAPI, do the same
work over the same data; plain Connexion serves GET /users/{id} only; see the peers' README):
users-id (GET /users/{id}), users-list (GET /users?limit=20&offset=0), products-search
(GET /products?search=walnut over a bulk-seeded catalogue), auth-token (POST /auth/token,
client_credentials in the form body), and users-create (POST /users, a fresh email per
request: argon2id-bound, project only, run last). The project on Connexion's stock stack
(STOREFRONT_HTTP_STACK=connexion) is measured beside it on every route, and a bare ASGI app
under the same uvicorn gives the ceiling of the stack.

    apt-get install wrk
    .venv/bin/pip install -e '.[bench]'        # FastAPI, for the FastAPI reference
    .venv/bin/python bench/compare_peers.py [--engine {sqlite,postgresql}] [--seconds 5]
        [--rounds 3] [--scenarios users-id,users-list,products-search,auth-token,users-create]
        [--no-peers] [--no-stock] [--no-count] [--jwt-algorithm {HS256,EdDSA,ES256}]
        [--record docs/pictures/benchmark.json]

``--engine sqlite`` (the default): the embedded default, SQLite and limits counted in memory,
beside ``starlette_ref`` / ``fastapi_ref`` / ``connexion_ref``.

``--engine postgresql``: the topology of a deployment that outgrew one machine. The project's
database and the peers' are two databases on the PostgreSQL at STOREFRONT_BENCH_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432), reached directly; every server counts its
limit in one Redis that this script starts for itself (``redis-server`` on a free port, so
that what it counts is only the servers'). The peers are ``starlette_pg`` (asyncpg pool) and
``fastapi_pg`` (SQLAlchemy async session). Before the timed rounds, each server is started
once more with statement logging on its database, and one short wrk run per route counts
what it sends to each store, per request:

- PostgreSQL round trips: the lines PostgreSQL itself logs for the server's database
  (``log_min_duration_statement = 0``, set on the database alone): each simple-protocol
  ``statement``, each ``bind`` (a Bind/Execute/Sync of a prepared statement) and each
  ``parse`` (asyncpg prepares in a round trip of its own). The log is PostgreSQL's stderr
  file (Debian: /var/log/postgresql/postgresql-<version>-main.log; or
  STOREFRONT_BENCH_POSTGRES_LOG); where it cannot be read the counts are skipped, said so.
- Redis round trips: the commands clients sent, as Redis's MONITOR shows them (commands a
  Lua script runs inside Redis are shown apart and not counted as round trips).

The project runs with production settings: `storefront serve` (one uvicorn worker), request
validation on, response validation off (the default), the rate limit and the
failed-authentication limit counted but set far above what the load reaches, the access log on
(sent to /dev/null). Any non-2xx response or socket error in a run stops the script.
``--jwt-algorithm`` sets STOREFRONT_JWT_ALGORITHM for the project's servers (default: the
server's own default); the header names the algorithm the project's tokens were signed with.
The peers always sign and verify HS256.

``--record FILE`` also writes the engine's figures into FILE (its other engine's are kept):
each server's median req/s per route and the ratios, with the date and the command. The
benchmark chart of docs/performance.md is drawn from docs/pictures/benchmark.json; after
recording there, ``python docs/pictures/build.py`` draws it again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
#: The reference servers (bench/peers/README.md); STOREFRONT_BENCH_PEERS names another copy.
PEERS = Path(os.environ.get("STOREFRONT_BENCH_PEERS", ROOT / "bench" / "peers"))
BIN = Path(sys.executable).parent
HUGE = "1000000000/minute"
WRK_TIMEOUT = "10s"  # argon2 queues: a POST /users may wait well past wrk's default 2 s
USER_ID = "user_000042"
SEARCH_TERM = "walnut"
#: The reference servers of each engine (the peers' README): the first is the hand-written
#: Starlette, the second the idiomatic FastAPI, whose ratios carry the targets.
PEER_NAMES = {
    "sqlite": ("starlette_ref", "fastapi_ref", "connexion_ref"),
    "postgresql": ("starlette_pg", "fastapi_pg"),
}
POSTGRES = os.environ.get("STOREFRONT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
#: The project itself on Connexion's stock middleware stack, measured like a peer.
STOCK = "storefront_stock_stack"

#: Scenario name -> what it requests. users-id is always measured: it is every ratio's base.
SCENARIOS = {
    "users-id": "GET /users/{id}",
    "users-list": "GET /users?limit=20",
    "products-search": f"GET /products?search={SEARCH_TERM}",
    "auth-token": "POST /auth/token",
    "users-create": "POST /users",
}
#: Seconds to wait after a scenario's run before the next run starts (default 1).
SETTLE = {"users-create": 3.0}
#: The targets, printed beside the figures (information only): on every scenario the project
#: serves at least this share of the hand-written Starlette's and of the idiomatic FastAPI's
#: requests per second...
FLOOR = {"starlette": 1.0, "fastapi": 1.5}
#: ...and its p99 latency stays within this multiple of its p50.
TAIL = 3.0


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    #: The server's CPU time (user + system) per request, in microseconds: unlike req/s, it
    #: hardly moves when other processes compete for the cores.
    cpu_us: float = float("nan")
    #: PostgreSQL's CPU time (the server's database backends) and Redis's, per request.
    postgres_cpu_us: float = float("nan")
    redis_cpu_us: float = float("nan")
    output: str = field(default="", repr=False)


@dataclass(frozen=True)
class Load:
    """One wrk target: a URL, request headers, optionally a Lua script shaping the requests."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    script: Path | None = None
    #: The server process, whose CPU time each run reads (None: not measured).
    pid: int | None = None
    #: The server's PostgreSQL database and its Redis: the CPU time each run takes there is
    #: read too (its database's backends, from pg_stat_activity, and the redis-server).
    database: str | None = None
    redis_pid: int | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its living children (a server's workers) have
    used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return own + sum(cpu_seconds(int(kid)) for kid in kids)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, headers: dict[str, str]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.1)


def millis(text: str) -> float:
    """wrk's durations ("812.00us", "3.21ms", "1.02s", "2.00m") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _find(pattern: str, out: str) -> str:
    match = re.search(pattern, out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
    return match.group(1)


def wrk(load: Load, seconds: int, *, check_status: bool = True, connections: int = 32) -> Result:
    """One `wrk -t1 -c32` run; a socket error, or a non-2xx with check_status, is fatal."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
    ]
    for name, value in load.headers.items():
        command += ["-H", f"{name}: {value}"]
    if load.script is not None:
        command += ["-s", str(load.script)]
    backends = postgres_backends(load.database) if load.database else []
    stores_before = _cpu_of(backends), _cpu_of([load.redis_pid] if load.redis_pid else [])
    cpu_before = cpu_seconds(load.pid) if load.pid is not None else None
    done = subprocess.run([*command, load.url], capture_output=True, text=True, check=False)
    cpu = (
        cpu_seconds(load.pid) - cpu_before
        if load.pid is not None and cpu_before is not None
        else None
    )
    stores_after = _cpu_of(backends), _cpu_of([load.redis_pid] if load.redis_pid else [])
    out = done.stdout
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and any(int(n) for n in errors.groups()):
        raise RuntimeError(f"{load.url}: socket errors under load:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if check_status and non2xx:
        raise RuntimeError(f"{load.url}: {non2xx.group(1)} non-2xx responses:\n{out}")
    requests = int(_find(r"(\d+) requests in", out))
    return Result(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=millis(_find(r"\s50%\s+(\S+)", out)),
        p99_ms=millis(_find(r"\s99%\s+(\S+)", out)),
        requests=requests,
        cpu_us=cpu / requests * 1e6 if cpu is not None and requests else float("nan"),
        postgres_cpu_us=(stores_after[0] - stores_before[0]) / requests * 1e6
        if backends and requests
        else float("nan"),
        redis_cpu_us=(stores_after[1] - stores_before[1]) / requests * 1e6
        if load.redis_pid and requests
        else float("nan"),
        output=out,
    )


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with suppress(OSError):  # gone meanwhile
            total += cpu_seconds(pid)
    return total


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL server processes serving ``database`` now (the servers' pools are full
    once warmed, so the same processes serve a whole run)."""
    import asyncio

    import asyncpg

    async def find() -> list[int]:
        connection = await asyncpg.connect(f"{POSTGRES}/postgres")
        try:
            rows = await connection.fetch(
                "select pid from pg_stat_activity where datname = $1", database
            )
            return [int(row["pid"]) for row in rows]
        finally:
            await connection.close()

    return asyncio.run(find())


def lua_string(text: str) -> str:
    """A Lua string literal holding text."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_script(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(source)
    return path


def machine_state(when: str) -> None:
    """Load average, CPUs and CPU model: figures from a busy or small machine read differently."""
    load1, load5, load15 = os.getloadavg()
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine at {when}: loadavg {load1:.2f} {load5:.2f} {load15:.2f}, "
        f"nproc {usable} (of {os.cpu_count()}), CPU {model}",
        flush=True,
    )


def project_env(directory: Path, jwt_algorithm: str | None = None) -> dict[str, str]:
    """The server's settings: production defaults, SQLite, limits counted but never reached;
    the token signing algorithm when one is given (else the server's default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    algorithm = {"STOREFRONT_JWT_ALGORITHM": jwt_algorithm} if jwt_algorithm else {}
    return env | {
        "STOREFRONT_DATABASE_URL": f"sqlite:///{directory / 'storefront.db'}",
        "STOREFRONT_KEY_DIR": str(directory / "keys"),
        "STOREFRONT_RATE_LIMIT": HUGE,
        # Failed authentications (a bad token in bench/memory.py) have their own budget.
        "STOREFRONT_AUTH_FAILURE_LIMIT": HUGE,
        **algorithm,
    }


def seed_project(directory: Path, jwt_algorithm: str | None = None) -> dict[str, str]:
    """A migrated SQLite database with the peers' 1,000 users, and the server's settings."""
    env = project_env(directory, jwt_algorithm)
    subprocess.run([BIN / "storefront", "db", "upgrade"], env=env, check=True, capture_output=True)
    with sqlite3.connect(directory / "storefront.db") as con:  # bulk, not through the API
        con.executemany(
            "insert into users (id, name, email, password_hash, created_at) values (?,?,?,?,?)",
            [
                (
                    f"user_{i:06d}",
                    f"User {i}",
                    f"user{i}@example.com",
                    "x",
                    "2023-10-27 10:00:00.000000",
                )
                for i in range(1000)
            ],
        )
    return env


def peers_common() -> ModuleType:
    """The peers' ``common.py`` (bench/peers): their data, client and token."""
    if str(PEERS) not in sys.path:
        sys.path.insert(0, str(PEERS))
    import common

    return common


def catalogue(count: int = 3000) -> tuple[list[tuple[str, str, str, str, str]], int]:
    """The peers' catalogue (``products()`` in bench/peers/common.py), with prices as the
    project's tables take them (text, two decimals), and how many match SEARCH_TERM: the same
    rows for every server by construction.

    One product in 100 mentions the term, alternately in its name and its description, so a
    search matches a modest number of rows (30 of 3,000) and has to scan them all.
    """
    rows = [
        (product_id, name, description, f"{price:.2f}", category)
        for product_id, name, description, price, category in peers_common().products(
            count, SEARCH_TERM
        )
    ]
    matching = sum(
        SEARCH_TERM in f"{name} {description}".lower() for _, name, description, *_ in rows
    )
    return rows, matching


def seed_products(directory: Path, count: int = 3000) -> int:
    """catalogue() into the SQLite database, in bulk; returns how many match SEARCH_TERM."""
    rows, matching = catalogue(count)
    with sqlite3.connect(directory / "storefront.db") as con:
        con.executemany(
            "insert into products (id, name, description, price, category) values (?,?,?,?,?)",
            rows,
        )
    return matching


def postgres(database: str, *statements: str) -> None:
    """Run ``statements`` on ``database`` of the bench's PostgreSQL, each on its own."""
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(f"{POSTGRES}/{database}")
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A new, empty database on the bench's PostgreSQL until the block ends: its URL."""
    postgres(
        "postgres", f'drop database if exists "{name}" with (force)', f'create database "{name}"'
    )
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        postgres("postgres", f'drop database if exists "{name}" with (force)')


def seed_project_postgres(
    directory: Path, url: str, redis_url: str, jwt_algorithm: str | None = None
) -> tuple[dict[str, str], int]:
    """The project's PostgreSQL database migrated and holding what seed_project and
    seed_products put in SQLite (the same rows); the server's settings with its limits in
    Redis; how many products match SEARCH_TERM."""
    import asyncio

    import asyncpg

    env = project_env(directory, jwt_algorithm) | {
        "STOREFRONT_DATABASE_URL": url,
        "STOREFRONT_RATE_LIMIT_STORAGE_URL": redis_url,
        "STOREFRONT_RATE_LIMIT_KEY_PREFIX": f"bench-{os.getpid()}",
    }
    subprocess.run([BIN / "storefront", "db", "upgrade"], env=env, check=True, capture_output=True)
    rows, matching = catalogue()

    async def load() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.executemany(
                "insert into users (id, name, email, password_hash, created_at)"
                " values ($1, $2, $3, 'x', '2023-10-27 10:00:00+00')",
                [(f"user_{i:06d}", f"User {i}", f"user{i}@example.com") for i in range(1000)],
            )
            await connection.executemany(
                "insert into products (id, name, description, price, category)"
                " values ($1, $2, $3, $4::numeric, $5)",
                rows,
            )
            await connection.execute("analyze")
        finally:
            await connection.close()

    asyncio.run(load())
    return env, matching


#: The process of each Redis redis_server() started, by URL.
REDIS_PIDS: dict[str, int] = {}


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A Redis of the bench's own on a free port, keeping nothing on disk: its URL. Its own,
    so that the commands it sees are only the servers' under test."""
    import redis

    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench's redis-server did not come up") from None
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        REDIS_PIDS[url] = process.pid
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=15)


def create_client(env: dict[str, str], scopes: str) -> dict[str, str]:
    """A new OAuth client: {"client_id", "client_secret"}."""
    made = subprocess.run(
        [BIN / "storefront", "clients", "create", "--name", "bench", "--scopes", scopes, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    client: dict[str, str] = json.loads(made.stdout)
    return client


def fetch_token(base: str, client: dict[str, str]) -> str:
    import httpx

    form = {"grant_type": "client_credentials", **client}
    answer = httpx.post(f"{base}/auth/token", data=form)
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def project_token(env: dict[str, str], base: str, scopes: str = "read") -> str:
    return fetch_token(base, create_client(env, scopes))


def signing_algorithm(load: Load) -> str:
    """The algorithm in the header of the bearer token a load sends."""
    import jwt

    token = load.headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.get_unverified_header(token)["alg"])


@contextmanager
def serving(env: dict[str, str], *argv: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`storefront serve ARGV` on a free port: (its process, its base URL), stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [BIN / "storefront", "serve", "--port", str(port), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", {})
        yield process, base
    finally:
        process.terminate()
        process.wait(timeout=30)


def hashing_parameters(env: dict[str, str]) -> str:
    """The server's argon2id parameters and hash concurrency, as the server would set them."""
    from core.crypto import PasswordHashing
    from core.settings import Settings

    variable = "STOREFRONT_PASSWORD_HASH_CONCURRENCY"
    default = Settings.model_fields["password_hash_concurrency"].default
    concurrency = int(env.get(variable, default))
    parameters = PasswordHashing(concurrency=concurrency).parameters
    return f"{parameters}; {variable}={concurrency}"


def project_loads(
    directory: Path, env: dict[str, str], base: str, scenarios: list[str]
) -> dict[str, Load]:
    """The wrk target of each chosen scenario (users-id always)."""
    reader = project_token(env, base, "read")
    bearer = {"Authorization": f"Bearer {reader}"}
    loads = {"users-id": Load(f"{base}/users/{USER_ID}", bearer)}
    if "users-list" in scenarios:
        loads["users-list"] = Load(f"{base}/users?limit=20&offset=0", bearer)
    if "products-search" in scenarios:
        loads["products-search"] = Load(f"{base}/products?search={SEARCH_TERM}", bearer)
    if "auth-token" in scenarios:
        form = urlencode({"grant_type": "client_credentials", **create_client(env, "read")})
        loads["auth-token"] = Load(
            f"{base}/auth/token", script=write_script(directory, "auth_token", token_lua(form))
        )
    if "users-create" in scenarios:
        writer = project_token(env, base, "read write")
        # A random prefix per bench run, the wrk run's start time (the script is reused every
        # round), a thread id and a counter: every email is new (no 409).
        script = f"""
prefix = {lua_string(uuid.uuid4().hex[:12])}
init = function(args)
  prefix = prefix .. "-" .. os.time() .. "-" .. math.floor(os.clock() * 1000000)
end
threads = 0
tid = 0
n = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {lua_string(f"Bearer {writer}")}
request = function()
  n = n + 1
  local body = string.format(
    '{{"name":"Bench User %d","email":"bench-%s-%d-%d@example.com","password":"bench-pw-%d"}}',
    n, prefix, tid, n, n)
  return wrk.format(nil, nil, nil, body)
end
"""
        loads["users-create"] = Load(
            f"{base}/users", script=write_script(directory, "users_create", script)
        )
    return loads


def peer_env(directory: Path, engine: str, stores: dict[str, str]) -> dict[str, str]:
    """The peers' settings: their SQLite file, or their PostgreSQL database and Redis."""
    if engine == "sqlite":
        return os.environ | {"PEER_DB": str(directory / "peers.sqlite3")}
    return os.environ | {"PEER_PG": stores["peer_database"], "PEER_REDIS": stores["redis"]}


def start_peers(
    directory: Path, engine: str, env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> dict[str, dict[str, Load]]:
    """Start the reference servers of ``engine`` (their data already made); scenario -> peer
    name -> its wrk target (a peer serves only the scenarios its README lists: plain Connexion
    answers GET /users/{id} alone)."""
    common = peers_common()  # the peers' client id, secret and token

    bearer = {"Authorization": f"Bearer {common.token()}"}
    form = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": common.CLIENT_ID,
            "client_secret": common.CLIENT_SECRET,
        }
    )
    token_script = write_script(directory, "peer_token", token_lua(form))
    loads: dict[str, dict[str, Load]] = {name: {} for name in SCENARIOS}
    for name in PEER_NAMES[engine]:
        port = free_port()
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    f"{name}:app",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=PEERS,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        base, pid = f"http://127.0.0.1:{port}", processes[-1].pid
        loads["users-id"][name] = Load(f"{base}/users/{USER_ID}", bearer, pid=pid)
        if name == "connexion_ref":
            continue
        loads["users-list"][name] = Load(f"{base}/users?limit=20&offset=0", bearer, pid=pid)
        loads["products-search"][name] = Load(
            f"{base}/products?search={SEARCH_TERM}", bearer, pid=pid
        )
        loads["auth-token"][name] = Load(f"{base}/auth/token", script=token_script, pid=pid)
    for load in loads["users-id"].values():
        wait_until_up(load.url, load.headers)
    return loads


def seed_peers(engine: str, env: dict[str, str]) -> None:
    """(Re)create the peers' data: their SQLite file, or their PostgreSQL tables."""
    script = "common.py" if engine == "sqlite" else "pg_common.py"
    subprocess.run(
        [sys.executable, script], cwd=PEERS, env=env, capture_output=True, text=True, check=True
    )


def peer_loads(
    directory: Path, processes: list[subprocess.Popen[bytes]]
) -> dict[str, dict[str, Load]]:
    """The SQLite peers, their data made and their servers started (other benches use this)."""
    env = peer_env(directory, "sqlite", {})
    seed_peers("sqlite", env)
    return start_peers(directory, "sqlite", env, processes)


#: What PostgreSQL logs of each message it runs (log_min_duration_statement = 0), after the
#: log line prefix that names user@database (Debian's default: '%m [%p] %q%u@%d ').
_LOGGED = re.compile(r"@(\S+) LOG:  duration: [\d.]+ ms  (statement|parse|bind)\b")
#: MONITOR's line: time, [db client-address-or-"lua"], then the command's quoted arguments.
_MONITORED = re.compile(r'^[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"')


@dataclass
class Trips:
    """What one server sent to the stores per request, as the stores saw it."""

    requests: int
    #: kind (statement, parse, bind) -> per request; None when the log could not be read.
    postgres: dict[str, float] | None
    #: command -> per request, sent by clients (each a round trip, none pipelined here).
    redis: dict[str, float]
    #: command -> per request, run by Lua scripts inside Redis (no round trip of their own).
    redis_scripted: dict[str, float]

    @property
    def postgres_round_trips(self) -> float | None:
        return None if self.postgres is None else sum(self.postgres.values())

    @property
    def redis_round_trips(self) -> float:
        return sum(self.redis.values())


def postgres_log() -> tuple[Path | None, str]:
    """PostgreSQL's log file (its stderr, as Debian's pg_ctlcluster writes it), or why not."""
    configured = os.environ.get("STOREFRONT_BENCH_POSTGRES_LOG")
    candidates = (
        [Path(configured)]
        if configured
        else sorted(Path("/var/log/postgresql").glob("postgresql-*-main.log"))
    )
    for path in candidates:
        try:
            with path.open("rb"):
                return path, ""
        except OSError as exc:
            return None, f"{path}: {exc.strerror}"
    return None, "no PostgreSQL log found (set STOREFRONT_BENCH_POSTGRES_LOG)"


class StoreCounter:
    """Counts, for one run at a time, what a server's database sees in PostgreSQL's log and
    what Redis receives (MONITOR)."""

    def __init__(self, directory: Path, redis_url: str) -> None:
        self.directory = directory
        self.redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        self.log, self.why_not = postgres_log()

    def count(self, database: str, run: Callable[[], Result]) -> tuple[Result, Trips]:
        offset = self.log.stat().st_size if self.log is not None else 0
        monitored = self.directory / "monitor.txt"
        with monitored.open("wb") as out:
            monitor = subprocess.Popen(
                ["redis-cli", "-p", str(self.redis_port), "monitor"], stdout=out
            )
            time.sleep(0.3)  # MONITOR is listening before the load starts
            try:
                result = run()
            finally:
                time.sleep(0.5)  # the last replies and log lines land
                monitor.terminate()
                monitor.wait(timeout=10)
        sent: dict[str, int] = {}
        scripted: dict[str, int] = {}
        for line in monitored.read_text(errors="replace").splitlines():
            match = _MONITORED.match(line)
            if match is None:
                continue
            where, command = match.groups()
            tally = scripted if where == "lua" else sent
            tally[command.lower()] = tally.get(command.lower(), 0) + 1
        logged: dict[str, int] | None = None
        if self.log is not None:
            logged = {}
            with self.log.open("rb") as handle:
                handle.seek(offset)
                for raw in handle:
                    found = _LOGGED.search(raw.decode("utf-8", "replace"))
                    if found is not None and found.group(1) == database:
                        logged[found.group(2)] = logged.get(found.group(2), 0) + 1
        n = max(1, result.requests)
        return result, Trips(
            requests=result.requests,
            postgres=None if logged is None else {k: v / n for k, v in logged.items()},
            redis={k: v / n for k, v in sent.items()},
            redis_scripted={k: v / n for k, v in scripted.items()},
        )


def count_round_trips(
    directory: Path,
    scenarios: list[str],
    project: dict[str, str],
    peers: dict[str, str] | None,
    databases: dict[str, str],
    seconds: int,
) -> dict[tuple[str, str], Trips]:
    """Start every server again with PostgreSQL logging each statement of its database, run
    each scenario once under wrk, and count what each sent to PostgreSQL and Redis."""
    counter = StoreCounter(directory, project["STOREFRONT_RATE_LIMIT_STORAGE_URL"])
    if counter.log is None:
        print(f"PostgreSQL round trips not counted: {counter.why_not}", flush=True)
    names = list(databases.values())
    postgres(
        "postgres", *(f'alter database "{n}" set log_min_duration_statement = 0' for n in names)
    )
    trips: dict[tuple[str, str], Trips] = {}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # New servers: a setting of the database reaches only connections opened after it.
        with serving(project) as (_server, base):
            loads = project_loads(directory, project, base, scenarios)
            others = {} if peers is None else start_peers(directory, "postgresql", peers, processes)
            for name, load in loads.items():
                if name == "users-create":
                    continue
                targets = [("storefront", load, databases["storefront"])] + [
                    (peer, peer_load, databases["peers"])
                    for peer, peer_load in others.get(name, {}).items()
                ]
                for server_name, target, database in targets:
                    wrk(target, 1)  # warm: pools filled, statements prepared, caches loaded
                    _, found = counter.count(database, lambda t=target: wrk(t, seconds))
                    trips[(name, server_name)] = found
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        postgres(
            "postgres", *(f'alter database "{n}" reset log_min_duration_statement' for n in names)
        )
    return trips


BARE_ASGI = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status": "ok"}'})
"""


def bare_asgi(directory: Path, processes: list[subprocess.Popen[bytes]]) -> Load:
    """The ceiling: an ASGI app that does nothing, under the uvicorn the project runs on."""
    (directory / "bare_asgi.py").write_text(BARE_ASGI)
    port = free_port()
    processes.append(
        subprocess.Popen(
            [
                BIN / "uvicorn",
                "bare_asgi:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--no-server-header",
            ],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    load = Load(f"http://127.0.0.1:{port}/", pid=processes[-1].pid)
    wait_until_up(load.url, {})
    return load


def token_lua(form: str) -> str:
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f"wrk.body = {lua_string(form)}\n"
    )


def parse_scenarios(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    # Catalogue order, so POST /users (which adds rows) always runs last in a round.
    return [name for name in SCENARIOS if name in chosen]


@dataclass
class Series:
    """One row of the final table: its runs, and per pair of runs the ratio project / this
    server in requests per second, and in CPU time per request (this server's / ours)."""

    results: list[Result] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(float(getattr(r, name)) for r in self.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--engine",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="sqlite: the embedded default (limits in memory); postgresql: PostgreSQL direct "
        "with limits in Redis, beside the _pg peers",
    )
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, default all: {','.join(SCENARIOS)}",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the reference servers")
    parser.add_argument(
        "--no-stock",
        action="store_true",
        help="skip the project on Connexion's stock stack (STOREFRONT_HTTP_STACK=connexion)",
    )
    parser.add_argument(
        "--no-count",
        action="store_true",
        help="postgresql: skip counting each server's PostgreSQL and Redis round trips",
    )
    parser.add_argument(
        "--jwt-algorithm",
        choices=["HS256", "EdDSA", "ES256"],
        help="STOREFRONT_JWT_ALGORITHM of the project's servers (default: the server's default)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also write this engine's req/s and ratios per route into FILE (JSON), e.g. "
        "docs/pictures/benchmark.json, which the chart in docs/performance.md is drawn from",
    )
    args = parser.parse_args()
    if args.record is not None and args.no_peers:
        parser.error("--record needs the peers: it records Storefront beside them")
    scenarios = parse_scenarios(args.scenarios)

    machine_state("start")
    #: (scenario, server) -> its runs; (scenario, peer) -> ratios project / peer, per pair.
    runs: dict[tuple[str, str], Series] = {}
    trips: dict[tuple[str, str], Trips] = {}
    # Stores last: the servers stop (inner blocks) before their databases are dropped.
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stores:
        directory = Path(tmp)
        if args.engine == "sqlite":
            env = seed_project(directory, args.jwt_algorithm)
            matching = seed_products(directory)
            peers_env = peer_env(directory, "sqlite", {})
        else:
            redis_url = stores.enter_context(redis_server(directory))
            tag = f"sf_bench_{os.getpid()}"
            project_url = stores.enter_context(postgres_database(tag))
            peer_url = stores.enter_context(postgres_database(f"{tag}_peers"))
            env, matching = seed_project_postgres(
                directory, project_url, redis_url, args.jwt_algorithm
            )
            peers_env = peer_env(
                directory, "postgresql", {"peer_database": peer_url, "redis": redis_url}
            )
        if not args.no_peers:
            seed_peers(args.engine, peers_env)
        if args.engine == "postgresql" and not args.no_count:
            trips = count_round_trips(
                directory,
                scenarios,
                env,
                None if args.no_peers else peers_env,
                {"storefront": tag, "peers": f"{tag}_peers"},
                seconds=2,
            )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            peers = (
                {} if args.no_peers else start_peers(directory, args.engine, peers_env, processes)
            )
            ceiling = None if args.no_peers else bare_asgi(directory, processes)
            with serving(env) as (server, base), ExitStack() as stock:
                loads = {
                    name: replace(load, pid=server.pid)
                    for name, load in project_loads(directory, env, base, scenarios).items()
                }
                algorithm = signing_algorithm(loads["users-id"])
                if args.engine == "postgresql":
                    # What each run costs PostgreSQL and Redis is read beside the server's CPU.
                    stores = {"redis_pid": REDIS_PIDS[redis_url]}
                    loads = {n: replace(load, database=tag, **stores) for n, load in loads.items()}
                    peers = {
                        scenario: {
                            n: replace(load, database=f"{tag}_peers", **stores)
                            for n, load in by_peer.items()
                        }
                        for scenario, by_peer in peers.items()
                    }
                others: dict[str, dict[str, Load]] = {
                    name: dict(peers.get(name, {})) for name in loads
                }
                if not args.no_stock:
                    # The same app, data and credentials on Connexion's stock middleware stack.
                    stock_server, stock_base = stock.enter_context(
                        serving(env | {"STOREFRONT_HTTP_STACK": "connexion"})
                    )
                    for name, load in loads.items():
                        if name != "users-create":
                            others[name][STOCK] = replace(
                                load,
                                url=load.url.replace(base, stock_base, 1),
                                pid=stock_server.pid,
                            )
                # Every server warmed on every route first (pools filled, statements prepared,
                # a repeated search remembered): the rounds measure the steady state.
                for name, load in loads.items():
                    if name != "users-create":
                        for target in [load, *others[name].values()]:
                            wrk(target, 1)
                for round_ in range(args.rounds):
                    if ceiling is not None:
                        runs.setdefault(("ceiling", "bare_asgi"), Series()).results.append(
                            wrk(ceiling, args.seconds)
                        )
                    for name, load in loads.items():
                        # Project and each peer alternate: every ratio compares two runs taken
                        # one after the other.
                        for peer, peer_load in others[name].items() or [(None, None)]:
                            ours = wrk(load, args.seconds)
                            runs.setdefault((name, "storefront"), Series()).results.append(ours)
                            time.sleep(SETTLE.get(name, 1.0))
                            if peer is None or peer_load is None:
                                continue
                            theirs = wrk(peer_load, args.seconds)
                            series = runs.setdefault((name, peer), Series())
                            series.results.append(theirs)
                            series.ratios.append(ours.rps / theirs.rps)
                            series.cpu_ratios.append(theirs.cpu_us / ours.cpu_us)
                            time.sleep(1.0)
                    print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=15)
    machine_state("end")
    report(runs, args, matching, algorithm, env if "users-create" in scenarios else None)
    if trips:
        report_trips(trips)
    if args.record is not None:
        record(args.record, runs, args)
        print(f"\nrecorded in {args.record}; draw the chart again: python docs/pictures/build.py")


#: How each engine is named in the recorded figures (and the chart's panels).
ENGINE_TITLES = {"sqlite": "SQLite, limits in memory", "postgresql": "PostgreSQL + Redis"}


def record(path: Path, runs: dict[tuple[str, str], Series], args: argparse.Namespace) -> None:
    """Write this run's figures for its engine into ``path``, keeping the other engine's:
    per route, each server's median req/s and the median ratios (ours / theirs)."""
    starlette, fastapi = PEER_NAMES[args.engine][:2]
    servers = {"storefront": "storefront", "starlette": starlette, "fastapi": fastapi}
    req_s: dict[str, dict[str, int]] = {}
    ratio: dict[str, dict[str, float]] = {}
    for scenario, label in SCENARIOS.items():
        if scenario == "users-create" or (scenario, "storefront") not in runs:
            continue
        req_s[label] = {
            kind: round(runs[(scenario, server)].median("rps"))
            for kind, server in servers.items()
            if (scenario, server) in runs
        }
        ratio[label] = {
            kind: round(statistics.median(runs[(scenario, server)].ratios), 2)
            for kind, server in servers.items()
            if kind != "storefront" and (scenario, server) in runs
        }
    # The command as given, without --record and its file: what reproduces the figures.
    argv, shown = sys.argv[1:], []
    while argv:
        word = argv.pop(0)
        if word == "--record":
            argv = argv[1:]
        elif not word.startswith("--record="):
            shown.append(word)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    engines = data.setdefault("engines", {})
    engines[args.engine] = {
        "title": ENGINE_TITLES[args.engine],
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["bench/compare_peers.py", *shown]),
        "peers": {"starlette": starlette, "fastapi": fastapi},
        "req_s": req_s,
        "ratio": ratio,
        "note": "each server's req/s is the median of its own runs; the ratio, the median of "
        "the per-round ratios",
    }
    # Engines in a fixed order, so that a recording changes only its own lines.
    data["engines"] = {name: engines[name] for name in ENGINE_TITLES if name in engines}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def report(
    runs: dict[tuple[str, str], Series],
    args: argparse.Namespace,
    matching: int,
    algorithm: str,
    env: dict[str, str] | None,
) -> None:
    print()
    where = (
        "SQLite, limits in memory"
        if args.engine == "sqlite"
        else "PostgreSQL direct, limits in Redis"
    )
    print(
        f"wrk -t1 -c32, {args.seconds}s runs x {args.rounds} rounds, medians; {where}; "
        f"1,000 users, 3,000 products ({matching} match {SEARCH_TERM!r}); "
        "ratio = project / server, from runs taken one after the other"
    )
    chosen = "--jwt-algorithm" if args.jwt_algorithm else "the server's default"
    print(f"project's tokens signed with {algorithm} ({chosen}); the peers' with HS256")
    if env is not None:
        print(f"POST /users hashes with {hashing_parameters(env)}")
    stores = args.engine == "postgresql"
    header = (
        f"{'scenario':28} {'server':24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'p99/p50':>8} {'CPU µs':>7} {'ratio':>7} {'CPU ratio':>9}"
        + (f" {'PG µs':>6} {'Redis µs':>8}" if stores else "")
    )
    print(header)
    print("-" * len(header))
    for (scenario, server), series in runs.items():
        ratio = f"{statistics.median(series.ratios):.2f}x" if series.ratios else ""
        cpu_ratio = f"{statistics.median(series.cpu_ratios):.2f}x" if series.cpu_ratios else ""
        p50, p99 = series.median("p50_ms"), series.median("p99_ms")
        label = "bare ASGI (ceiling)" if scenario == "ceiling" else SCENARIOS[scenario]
        spent = ""
        if stores and scenario != "ceiling":
            pg, redis = series.median("postgres_cpu_us"), series.median("redis_cpu_us")
            spent = f" {pg:6.0f} {redis:8.0f}"
        print(
            f"{label:28} {server:24} {series.median('rps'):8.0f} {p50:8.2f} {p99:8.2f}"
            f" {p99 / p50:8.1f} {series.median('cpu_us'):7.0f} {ratio:>7} {cpu_ratio:>9}"
            f"{spent}".rstrip()
        )
    if stores:
        print(
            "PG µs / Redis µs: CPU time per request of the server's database backends"
            " (pg_stat_activity) and of the redis-server, during the same runs"
        )
    print()
    print(
        "targets on req/s ratios (medians of per-round ratios); in brackets the CPU-per-request"
        " ratios (peer's CPU µs / ours), which a busy machine disturbs far less"
    )
    starlette, fastapi = PEER_NAMES[args.engine][:2]
    print(f"{'scenario':28} {'vs Starlette':>16} {'vs FastAPI':>16}  targets")
    for scenario in SCENARIOS:
        if (scenario, "storefront") not in runs or scenario == "users-create":
            continue
        ours = runs[(scenario, "storefront")]
        peers = {"starlette": starlette, "fastapi": fastapi}
        ratios = {
            kind: statistics.median(runs[(scenario, peer)].ratios)
            for kind, peer in peers.items()
            if (scenario, peer) in runs
        }
        if not ratios:
            continue
        cpu = {
            kind: statistics.median(runs[(scenario, peer)].cpu_ratios)
            for kind, peer in peers.items()
            if (scenario, peer) in runs
        }
        star, fast = ratios.get("starlette", 0.0), ratios.get("fastapi", 0.0)
        tail = ours.median("p99_ms") <= TAIL * ours.median("p50_ms")
        met = {True: "met", False: "NOT met"}
        print(
            f"{SCENARIOS[scenario]:28} {star:5.2f}x ({cpu.get('starlette', 0.0):.2f}x)"
            f" {fast:8.2f}x ({cpu.get('fastapi', 0.0):.2f}x)"
            f"  >= {FLOOR['starlette']:g}x Starlette {met[star >= FLOOR['starlette']]};"
            f" >= {FLOOR['fastapi']:g}x FastAPI {met[fast >= FLOOR['fastapi']]};"
            f" p99 <= {TAIL:g}x p50 {met[tail]}"
        )


def _tally(counts: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in sorted(counts.items())) or "-"


def report_trips(trips: dict[tuple[str, str], Trips]) -> None:
    print()
    print(
        "round trips per request, counted by the stores during a 2 s wrk run per scenario "
        "(PostgreSQL: its log's statement + parse + bind lines for the server's database; "
        "Redis: commands clients sent, from MONITOR; [in scripts] ran inside Redis)"
    )
    header = f"{'scenario':28} {'server':12} {'requests':>8} {'PG':>6} {'Redis':>6}  what"
    print(header)
    print("-" * len(header))
    for (scenario, server), found in trips.items():
        pg = found.postgres_round_trips
        shown_pg = "n/a" if pg is None else f"{pg:.2f}"
        what = f"PG {_tally(found.postgres or {})}; Redis {_tally(found.redis)}"
        if found.redis_scripted:
            what += f" [in scripts: {_tally(found.redis_scripted)}]"
        print(
            f"{SCENARIOS[scenario]:28} {server:12} {found.requests:8d} {shown_pg:>6}"
            f" {found.redis_round_trips:6.2f}  {what}"
        )


if __name__ == "__main__":
    main()
