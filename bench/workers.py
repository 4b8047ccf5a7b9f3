"""One worker against two, on PostgreSQL + Redis: what a second worker on a second core buys.

    .venv/bin/python bench/workers.py [--seconds 5] [--rounds 3] [--connections 64]

The data, settings and stores of ``bench/compare_peers.py --engine postgresql`` (PostgreSQL at
STOREFRONT_BENCH_POSTGRES_URL, a Redis of the bench's own); two servers on the same database
and Redis, ``storefront serve --workers 1`` and ``--workers 2``, loaded alternately on each
route by ``wrk -t1`` with more connections than compare_peers (64: two workers share them).
Prints req/s, p50, p99 and server CPU µs per request (all workers) per route, and the ratio
two workers / one, the median of per-round ratios. wrk, PostgreSQL and Redis run on the same
cores: on a 2-core machine the second worker competes with them, so read the ratio as what
this machine gives, not what a server with cores to spare would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # bench/ is not a package

SCENARIOS = ["users-id", "users-list", "products-search", "auth-token"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    cp.machine_state("start")
    results: dict[tuple[str, int], list[cp.Result]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        directory = Path(tmp)
        redis_url = stack.enter_context(cp.redis_server(directory))
        url = stack.enter_context(cp.postgres_database(f"sf_bench_workers_{os.getpid()}"))
        env, _ = cp.seed_project_postgres(directory, url, redis_url)
        servers = {n: stack.enter_context(cp.serving(env, "--workers", str(n))) for n in (1, 2)}
        loads = {
            n: {
                name: replace(load, pid=process.pid)
                for name, load in cp.project_loads(directory, env, base, SCENARIOS).items()
            }
            for n, (process, base) in servers.items()
        }
        for n in (1, 2):
            for load in loads[n].values():
                # Warm every worker; a cold search that many requests start at once may run out
                # of its budget under this load (a 422), which is not what is measured here.
                cp.wrk(load, 3, connections=args.connections, check_status=False)
        for round_ in range(args.rounds):
            for name in SCENARIOS:
                for n in (1, 2):
                    result = cp.wrk(loads[n][name], args.seconds, connections=args.connections)
                    results.setdefault((name, n), []).append(result)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    cp.machine_state("end")
    print(
        f"\nwrk -t1 -c{args.connections}, {args.seconds}s x {args.rounds} alternating rounds, "
        "medians; PostgreSQL direct, limits in Redis; one server process tree per row"
    )
    print(f"{'scenario':28} {'workers':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs':>7}")
    for name in SCENARIOS:
        for n in (1, 2):
            runs = results[(name, n)]
            print(
                f"{cp.SCENARIOS[name]:28} {n:7d} {statistics.median(r.rps for r in runs):8.0f}"
                f" {statistics.median(r.p50_ms for r in runs):8.2f}"
                f" {statistics.median(r.p99_ms for r in runs):8.2f}"
                f" {statistics.median(r.cpu_us for r in runs):7.0f}"
            )
        ratios = [
            b.rps / a.rps for a, b in zip(results[(name, 1)], results[(name, 2)], strict=True)
        ]
        print(f"{'':28} two workers / one: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
