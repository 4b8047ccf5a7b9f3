"""What PgBouncer in transaction mode costs, against a direct connection. Prints figures.

    apt-get install pgbouncer wrk
    .venv/bin/python bench/pgbouncer_cost.py [--seconds 8] [--rounds 3] [--store redis://…]

One database on the PostgreSQL at 127.0.0.1:5432 with 1,000 users, and a copy of it (so that
each server's connections can be counted apart); two ``storefront serve`` processes (one
worker each, rate limits counted in memory but never reached), one on the first database
directly and one on the copy through a PgBouncer (``pool_mode = transaction``, started here
as the tests start theirs, ``tests/pgbouncer.py``) with ``STOREFRONT_DATABASE_POOLER=pgbouncer``.
wrk -t1 -c32 on GET /users/{id} and GET /users?limit=20, alternating direct and pooled, so that
a machine whose load drifts weighs on both alike. Also printed: the PostgreSQL connections
each server holds under load, and each server's resident memory after the runs (the sizing
table of docs/operations.md). With ``--store redis://…`` the servers count in Redis, as
several instances must, and the Redis connections each holds under load are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import asyncpg  # noqa: E402
from compare_peers import (  # noqa: E402
    HUGE,
    POSTGRES,
    Load,
    machine_state,
    postgres,
    serving,
    wait_until_up,
    wrk,
)

from tests.pgbouncer import pgbouncer  # noqa: E402

BIN = Path(sys.executable).parent
USERS = 1000


async def seed(database: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        await connection.executemany(
            "insert into users (id, name, email, password_hash, created_at)"
            " values ($1, $2, $3, 'x', now())",
            [(f"user_{i:012d}", f"User {i}", f"user{i}@example.com") for i in range(USERS)],
        )
    finally:
        await connection.close()


async def backends(database: str) -> int:
    """Connections to ``database`` (a server's own, or PgBouncer's pool)."""
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        found = await connection.fetchval(
            "select count(*) from pg_stat_activity where datname = $1", database
        )
        return int(found)
    finally:
        await connection.close()


def sockets_to(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``port`` (from /proc, no tools)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                found += 1
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def storefront(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run([BIN / "storefront", *argv], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"storefront {' '.join(argv)}: {done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", default="memory://", help="STOREFRONT_RATE_LIMIT_STORAGE_URL")
    args = parser.parse_args()

    database = f"sf_bench_pgbouncer_{os.getpid()}"
    copy = f"{database}_copy"
    direct_url = f"{POSTGRES}/{database}"
    copy_url = f"{POSTGRES}/{copy}"
    postgres("postgres", f'create database "{database}"')
    try:
        # Servers stop (ExitStack) before the databases they use are dropped (finally).
        with (
            tempfile.TemporaryDirectory() as tmp,
            pgbouncer(direct_url) as bouncer,
            ExitStack() as servers,
        ):
            base_env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
            base_env |= {
                "STOREFRONT_DATABASE_URL": direct_url,
                "STOREFRONT_KEY_DIR": str(Path(tmp) / "keys"),
                "STOREFRONT_RATE_LIMIT": HUGE,
                "STOREFRONT_RATE_LIMIT_STORAGE_URL": args.store,
                "STOREFRONT_RATE_LIMIT_KEY_PREFIX": f"bench-{os.getpid()}",
                "STOREFRONT_LOG_LEVEL": "warning",
            }
            storefront(base_env, "db", "upgrade")
            asyncio.run(seed(database))

            client = json.loads(
                storefront(base_env, "clients", "create", "--name", "bench", "--json")
            )
            key = json.loads(
                storefront(base_env, "keys", "create", "--client-id", client["client_id"], "--json")
            )["api_key"]
            postgres("postgres", f'create database "{copy}" template "{database}"')
            databases = {"direct": database, "pgbouncer": copy}
            modes = {
                "direct": base_env | {"STOREFRONT_DATABASE_URL": direct_url},
                "pgbouncer": base_env
                | {
                    "STOREFRONT_DATABASE_URL": bouncer.url_for(copy_url),
                    "STOREFRONT_DATABASE_POOLER": "pgbouncer",
                    "STOREFRONT_MIGRATION_DATABASE_URL": copy_url,
                },
            }
            bases: dict[str, str] = {}
            pids: dict[str, int] = {}
            headers = {"X-API-Key": key}
            for mode, env in modes.items():
                process, bases[mode] = servers.enter_context(serving(env))
                pids[mode] = process.pid
                wait_until_up(f"{bases[mode]}/users/user_000000000001", headers)

            machine_state("start")
            routes = {
                "GET /users/{id}": "/users/user_000000000500",
                "GET /users?limit=20": "/users?limit=20&offset=100",
            }
            results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
            connections: dict[str, int] = {}
            redis_connections: dict[str, int] = {}
            for route, path in routes.items():
                for mode in modes:  # warm up each server's pool and caches
                    wrk(Load(bases[mode] + path, headers), 2)
                for _ in range(args.rounds):
                    for mode in modes:
                        result = wrk(Load(bases[mode] + path, headers), args.seconds)
                        results.setdefault((route, mode), []).append(
                            (result.rps, result.p50_ms, result.p99_ms)
                        )
            # Connections while a server is under load: sampled during one more short run.
            for mode in modes:
                url = bases[mode] + routes["GET /users?limit=20"]
                runner = subprocess.Popen(
                    ["wrk", "-t1", "-c32", "-d3s", "-H", f"X-API-Key: {key}", url],
                    stdout=subprocess.DEVNULL,
                )
                time.sleep(1.5)
                connections[mode] = asyncio.run(backends(databases[mode]))
                if args.store.startswith("redis://"):
                    redis_port = int(args.store.rsplit(":", 1)[1].split("/")[0])
                    redis_connections[mode] = sockets_to(pids[mode], redis_port)
                runner.wait()
            machine_state("end")

            print(f"\nwrk -t1 -c32 -d{args.seconds}s, {args.rounds} alternating rounds; medians")
            print(
                f"{'route':22} {'mode':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
                f" {'vs direct':>10}"
            )
            for route in routes:
                direct_rps = statistics.median(r[0] for r in results[(route, "direct")])
                for mode in modes:
                    runs = results[(route, mode)]
                    rps = statistics.median(r[0] for r in runs)
                    p50 = statistics.median(r[1] for r in runs)
                    p99 = statistics.median(r[2] for r in runs)
                    print(
                        f"{route:22} {mode:10} {rps:8.0f} {p50:8.2f} {p99:8.2f}"
                        f" {rps / direct_rps:9.0%}"
                    )
            print("\nPostgreSQL connections under load (pg_stat_activity):")
            print(f"  direct server:            {connections['direct']}")
            print(f"  through PgBouncer (pool): {connections['pgbouncer']} (default_pool_size)")
            for mode, count in redis_connections.items():
                print(f"  Redis connections of the {mode} server: {count}")
            print("\nresident memory after the runs:")
            for mode, pid in pids.items():
                print(f"  {mode:10} {rss_mib(pid):6.1f} MiB")
    finally:
        for name in (copy, database):
            postgres("postgres", f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    main()
