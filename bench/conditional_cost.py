"""What Idempotency-Key costs on POST /users, and what ETag costs on GET /users/{id}, under wrk
(-t1 -c32), alternating runs. Prints figures; asserts nothing.

    apt-get install wrk
    .venv/bin/python bench/conditional_cost.py [--seconds 5] [--rounds 3] [--baseline REV]

- POST /users without a key, then with a new key per request (the key is claimed in one more
  transaction before the password is hashed, and the response stored with the user);
- GET /users/{id} as it is now (it reads the version and sends an ETag), with a matching
  If-None-Match (a 304: no body), and, with --baseline, the same GET on the code of revision REV
  (default: the merge base with main, before ETags), served from a copy of that revision
  (``git archive``) on a database of its own.

Every server is `storefront serve` (one worker) on SQLite with production settings, as in
bench/compare_peers.py, whose helpers this uses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from compare_peers import (
    ROOT,
    USER_ID,
    Load,
    Result,
    lua_string,
    machine_state,
    project_token,
    seed_project,
    serving,
    write_script,
    wrk,
)

#: POST /users bodies: a new email per request (no 409), a new key per request when keyed.
CREATE_LUA = """
prefix = {prefix}
init = function(args)
  prefix = prefix .. "-" .. os.time() .. "-" .. math.floor(os.clock() * 1000000)
end
n = 0
keyed = {keyed}
request = function()
  n = n + 1
  local headers = {{}}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = {authorization}
  if keyed then headers["Idempotency-Key"] = prefix .. "-" .. n end
  local body = string.format(
    '{{"name":"Bench User %d","email":"bench-%s-%d@example.com","password":"bench-pw-%d"}}',
    n, prefix, n, n)
  return wrk.format("POST", nil, headers, body)
end
"""


#: Seconds to wait after a POST /users run (its p99 under this load is about 3 s).
SETTLE = 6.0


def create_load(directory: Path, base: str, writer: str, *, keyed: bool) -> Load:
    source = CREATE_LUA.format(
        prefix=lua_string(uuid.uuid4().hex[:12]),
        keyed="true" if keyed else "false",
        authorization=lua_string(f"Bearer {writer}"),
    )
    name = "create_keyed" if keyed else "create_plain"
    return Load(f"{base}/users", script=write_script(directory, name, source))


def merge_base() -> str:
    done = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@contextmanager
def baseline_server(revision: str, directory: Path) -> Iterator[tuple[str, str]]:
    """``storefront serve`` running revision's code (its own migrations, its own database):
    (its base URL, a read token)."""
    code = directory / "code"
    code.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    data = directory / "data"
    data.mkdir()
    env = {**seed_project_at(code, data), "PYTHONPATH": str(code)}
    with serving(env) as (_, base):
        yield base, project_token(env, base, "read")


def seed_project_at(code: Path, data: Path) -> dict[str, str]:
    """seed_project, with ``code`` first on the path (so that revision's migrations run)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(code)
    try:
        return seed_project(data)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline",
        nargs="?",
        const="merge-base",
        default=None,
        help="also serve GET /users/{id} from this revision's code (default: the merge base)",
    )
    parser.add_argument(
        "--no-create",
        action="store_true",
        help="GET only: no POST /users runs, whose inserts grow the database (and its WAL)",
    )
    args = parser.parse_args()
    machine_state("start")
    runs: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        directory = Path(tmp)
        (directory / "now").mkdir()
        env = seed_project(directory / "now")
        _, base = stack.enter_context(serving(env))
        reader = {"Authorization": f"Bearer {project_token(env, base, 'read')}"}
        writer = project_token(env, base, "read write")
        etag = '"1"'  # the seeded users' version
        loads = {
            "GET /users/{id} (ETag)": Load(f"{base}/users/{USER_ID}", reader),
            "GET /users/{id} If-None-Match (304)": Load(
                f"{base}/users/{USER_ID}", {**reader, "If-None-Match": etag}
            ),
        }
        if not args.no_create:
            loads["POST /users"] = create_load(directory, base, writer, keyed=False)
            loads["POST /users + Idempotency-Key"] = create_load(
                directory, base, writer, keyed=True
            )
        if args.baseline is not None:
            revision = merge_base() if args.baseline == "merge-base" else args.baseline
            (directory / "baseline").mkdir()
            old_base, token = stack.enter_context(baseline_server(revision, directory / "baseline"))
            loads[f"GET /users/{{id}} at {revision[:7]} (no ETag)"] = Load(
                f"{old_base}/users/{USER_ID}", {"Authorization": f"Bearer {token}"}
            )
        for load in loads.values():  # warm up: imports, caches, the first hashes
            wrk(load, 1)
        for round_ in range(args.rounds):
            for label, load in loads.items():
                runs.setdefault(label, []).append(wrk(load, args.seconds))
                if label.startswith("POST"):
                    # wrk stops with hashes still queued in the server: let them finish, or
                    # the next run would share the CPU with them.
                    time.sleep(SETTLE)
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    machine_state("end")
    print()
    print(f"{'scenario':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   (medians of rounds)")
    for label, results in runs.items():
        rps = statistics.median(r.rps for r in results)
        p50 = statistics.median(r.p50_ms for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        print(f"{label:44} {rps:8.0f} {p50:8.2f} {p99:8.2f}")


if __name__ == "__main__":
    main()
