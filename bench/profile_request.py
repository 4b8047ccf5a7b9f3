"""Where the time of one request goes: the server profiled (cProfile) under wrk load.

Runs the app in this process under uvicorn, exactly as ``storefront serve`` configures it
(production settings, SQLite, access log on but written to /dev/null, the heap frozen after
start-up), loads one route with ``wrk -t1 -c32`` from a second process, and prints the
profiled time per request by package and the most expensive functions. cProfile slows Python
code more than C code, so read the shares, not the absolute microseconds.

    .venv/bin/python bench/profile_request.py                      # GET /users/{id}, 5 s
    .venv/bin/python bench/profile_request.py --seconds 8 --path '/users?limit=20'
    .venv/bin/python bench/profile_request.py --token     # POST /auth/token (client_credentials)
    .venv/bin/python bench/profile_request.py --dpop ES256   # a DPoP-bound token, a proof each
    .venv/bin/python bench/profile_request.py --engine postgresql   # PostgreSQL + Redis

``--engine postgresql`` serves a database of its own on the PostgreSQL of
STOREFRONT_BENCH_POSTGRES_URL with the limits in a Redis it starts, as
``bench/compare_peers.py --engine postgresql`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import logging
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # bench/ is not a package


def where(filename: str, function: str) -> str:
    """A function's owner: a package, a module of this project, the stdlib, or a builtin."""
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    root = str(cp.ROOT) + "/"
    if filename.startswith(root):
        return filename[len(root) :]
    if filename == "~":
        return "builtin " + function.strip("<>").split(" of ")[0]
    return "stdlib " + filename.rsplit("/", 1)[-1]


def report(stats: pstats.Stats, requests: int, top: int) -> None:
    by_owner: collections.Counter[str] = collections.Counter()
    functions = []
    total = 0.0
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        owner = where(filename, function)
        by_owner[owner] += own
        total += own
        functions.append((own, cumulative, calls, f"{owner}:{line} {function}"))
    per = 1e6 / requests
    print(f"\n{requests} requests, {total * per:.0f} µs profiled per request\n")
    print(f"{'µs/req':>8} {'share':>6}  owner")
    for owner, own in by_owner.most_common(top):
        print(f"{own * per:8.1f} {own / total:6.1%}  {owner}")
    print(f"\n{'own µs':>8} {'cum µs':>8} {'calls':>6}  function")
    for own, cumulative, calls, name in sorted(functions, reverse=True)[:top]:
        print(f"{own * per:8.1f} {cumulative * per:8.1f} {calls / requests:6.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/users/user_000042")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--token", action="store_true", help="profile POST /auth/token instead of a GET"
    )
    parser.add_argument(
        "--dpop",
        choices=["ES256", "EdDSA", "RS256", "PS256"],
        help="send a DPoP-bound token and a new proof of this algorithm per request",
    )
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stores:
        profile_one(args, stores)


def profile_one(args: argparse.Namespace, stores: contextlib.ExitStack) -> None:
    import uvicorn
    import uvloop

    directory = Path(tempfile.mkdtemp(prefix="storefront-profile-"))
    if args.engine == "sqlite":
        env = cp.seed_project(directory)
        cp.seed_products(directory)
    else:
        redis_url = stores.enter_context(cp.redis_server(directory))
        url = stores.enter_context(cp.postgres_database(f"sf_profile_{os.getpid()}"))
        env, _ = cp.seed_project_postgres(directory, url, redis_url)
    if args.dpop:
        import dpop_cost

        env["STOREFRONT_PUBLIC_URL"] = dpop_cost.PUBLIC
    os.environ.update(env)
    from storefront.app import create_app_from_env

    app = create_app_from_env()
    for handler in logging.getLogger().handlers:  # the access log, written nowhere
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as we do
    port = cp.free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_config=None, access_log=False, server_header=False)
    )
    warm = threading.Event()
    result: list[cp.Result] = []

    def load() -> None:
        base = f"http://127.0.0.1:{port}"
        cp.wait_until_up(f"{base}/healthz", {})
        if args.token:
            form = cp.urlencode(
                {"grant_type": "client_credentials", **cp.create_client(env, "read")}
            )
            script = cp.write_script(directory, "token", cp.token_lua(form))
            target = cp.Load(f"{base}/auth/token", script=script)
        elif args.dpop:
            import dpop_cost

            key = dpop_cost.DPoPKey(args.dpop)
            token = dpop_cost.bound_token(base, cp.create_client(env, "read"), key)
            # A new proof per request (each wrk run starts its list again: two lists), for
            # the unprofiled warm-up's pace.
            loads = []
            for name, seconds in (("warm", 2), ("run", args.seconds)):
                (directory / name).mkdir()
                script = dpop_cost.dpop_script(
                    directory / name, key, token, 5000 * seconds, path=args.path
                )
                loads.append(cp.Load(base + args.path, script=script))
            warmup, target = loads
        else:
            token = cp.project_token(env, base)
            target = cp.Load(base + args.path, {"Authorization": f"Bearer {token}"})
        cp.wrk(warmup if args.dpop else target, 2)  # warm up, unprofiled
        warm.set()
        result.append(cp.wrk(target, args.seconds))
        server.should_exit = True

    # CPU time, not wall time: on a shared machine a preempted function would otherwise be
    # charged for the time other processes ran.
    profile = cProfile.Profile(time.process_time)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        await asyncio.get_running_loop().run_in_executor(None, warm.wait)
        profile.enable()
        await task
        profile.disable()

    threading.Thread(target=load, daemon=True).start()
    uvloop.run(serve())
    run = result[0]
    what = "POST /auth/token" if args.token else f"GET {args.path}"
    if args.dpop:
        what += f" with DPoP ({args.dpop} proofs)"
    print(f"{what}: {run.rps:.0f} req/s under the profiler, p50 {run.p50_ms} ms")
    report(pstats.Stats(profile), run.requests, args.top)


if __name__ == "__main__":
    main()
