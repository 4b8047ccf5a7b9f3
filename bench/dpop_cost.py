"""What a DPoP proof (RFC 9449) costs on GET /users/{id}, beside a bearer token and beside
hand-written Starlette's bearer figure, under wrk (-t1 -c32), alternating runs. Prints
figures; asserts nothing.

    apt-get install wrk
    .venv/bin/python bench/dpop_cost.py [--seconds 3] [--rounds 3] [--alg ES256]

Per round, three runs of GET /users/{id}, each right after the other:

- storefront, bearer: ``Authorization: Bearer <token>``, the same token every request;
- storefront, DPoP: ``Authorization: DPoP <bound token>`` and a new proof per request (signed
  beforehand by this script with PyJWT, as a client would, a few seconds before the run: each
  proof is used once, so every request pays the server's whole check: one signature
  verification, one replay look-up);
- starlette_ref, bearer: bench/peers/starlette_ref.py, as bench/compare_peers.py starts it.

Every server is one process on SQLite with production settings, as in bench/compare_peers.py
(whose helpers this uses); the project's proofs' jtis are remembered in memory (memory://).
Printed: requests/s and server CPU µs per request (medians over the rounds), and the ratios
DPoP / Starlette's bearer (the target: at least 0.75), in req/s and in CPU per request (which
hardly moves when other processes compete for the cores), and DPoP / bearer. Most of the
proof's cost is its signature: ``--alg`` picks the client's (an RS256 verification is a
fifth of an ES256 or EdDSA one).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from compare_peers import (
    USER_ID,
    Load,
    Result,
    create_client,
    lua_string,
    machine_state,
    peer_loads,
    project_token,
    seed_project,
    serving,
    wait_until_up,
    write_script,
    wrk,
)

#: The URL the project is told it is reached at: the proofs name it (never the Host).
PUBLIC = "https://api.bench.test"
TARGET = 0.75

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dpop_client import DPoPKey  # noqa: E402 - after the path is set


def bound_token(base: str, client: dict[str, str], key: DPoPKey) -> str:
    answer = httpx.post(
        f"{base}/auth/token",
        data={"grant_type": "client_credentials", **client},
        headers={"DPoP": key.proof("POST", f"{PUBLIC}/auth/token")},
    )
    answer.raise_for_status()
    assert answer.json()["token_type"] == "DPoP", answer.text
    token: str = answer.json()["access_token"]
    return token


def dpop_script(
    directory: Path, key: DPoPKey, token: str, count: int, path: str = f"/users/{USER_ID}"
) -> Path:
    """A wrk script sending ``count`` new proofs to GET ``path``, one per request, in order."""
    url = f"{PUBLIC}{path}"
    proofs = directory / "proofs.txt"
    proofs.write_text("\n".join(key.proof("GET", url, token=token) for _ in range(count)) + "\n")
    source = f"""
local proofs = {{}}
for line in io.lines({lua_string(str(proofs))}) do proofs[#proofs + 1] = line end
local authorization = {lua_string(f"DPoP {token}")}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", {lua_string(path)},
    {{["Authorization"] = authorization, ["DPoP"] = proofs[n]}})
end
"""
    return write_script(directory, "dpop", source)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alg", default="ES256", choices=["ES256", "EdDSA", "RS256", "PS256"])
    args = parser.parse_args()
    machine_state("start")
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        env = seed_project(directory) | {"STOREFRONT_PUBLIC_URL": PUBLIC}
        try:
            starlette = peer_loads(directory, processes)["users-id"]["starlette_ref"]
            with serving(env) as (server, base):
                url = f"{base}/users/{USER_ID}"
                bearer = Load(
                    url, {"Authorization": f"Bearer {project_token(env, base)}"}, pid=server.pid
                )
                key = DPoPKey(args.alg)
                token = bound_token(base, create_client(env, "read"), key)
                wait_until_up(starlette.url, starlette.headers)
                for load in (bearer, starlette):
                    wrk(load, 1)  # warm
                results: dict[str, list[Result]] = {"bearer": [], "dpop": [], "starlette": []}
                for round_ in range(args.rounds):
                    results["bearer"].append(wrk(bearer, args.seconds))
                    # Twice the fastest pace seen, so that no proof is used twice (a 401 would
                    # stop the run); signed just before the run,
                    # well within their iat window (STOREFRONT_DPOP_PROOF_WINDOW).
                    fastest = max(r.rps for runs in results.values() for r in runs)
                    count = int(fastest * args.seconds * 2) + 2000
                    started = time.monotonic()
                    script = dpop_script(directory, key, token, count)
                    signing = time.monotonic() - started
                    dpop = Load(url, script=script, pid=server.pid)
                    results["dpop"].append(wrk(dpop, args.seconds))
                    results["starlette"].append(wrk(starlette, args.seconds))
                    print(
                        f"round {round_ + 1}: bearer {results['bearer'][-1].rps:.0f}/s, "
                        f"DPoP {results['dpop'][-1].rps:.0f}/s ({count} proofs signed in "
                        f"{signing:.1f} s), starlette_ref {results['starlette'][-1].rps:.0f}/s",
                        flush=True,
                    )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=15)
    machine_state("end")

    def median(name: str, what: str) -> float:
        return statistics.median(float(getattr(r, what)) for r in results[name])

    print(f"\nGET /users/{{id}}, SQLite, wrk -t1 -c32, {args.seconds} s runs, {args.rounds} rounds")
    print(f"{'':<34}{'req/s':>10}{'CPU µs/req':>12}{'p50 ms':>9}{'p99 ms':>9}")
    rows = (
        ("storefront, Bearer", "bearer"),
        (f"storefront, DPoP ({args.alg} proof)", "dpop"),
        ("starlette_ref, Bearer", "starlette"),
    )
    for label, name in rows:
        print(
            f"{label:<34}{median(name, 'rps'):>10.0f}{median(name, 'cpu_us'):>12.0f}"
            f"{median(name, 'p50_ms'):>9.2f}{median(name, 'p99_ms'):>9.2f}"
        )
    pairs = list(zip(results["dpop"], results["starlette"], results["bearer"], strict=True))
    vs_starlette = statistics.median(d.rps / s.rps for d, s, _ in pairs)
    vs_bearer = statistics.median(d.rps / b.rps for d, _, b in pairs)
    extra_cpu = statistics.median(d.cpu_us - b.cpu_us for d, _, b in pairs)
    # CPU time per request hardly moves when other processes compete for the cores; req/s does.
    cpu_vs_starlette = statistics.median(s.cpu_us / d.cpu_us for d, s, _ in pairs)
    verdict = "meets" if vs_starlette >= TARGET else "misses"
    cpu_verdict = "meets" if cpu_vs_starlette >= TARGET else "misses"
    print(
        f"\nDPoP / starlette_ref bearer: {vs_starlette:.2f}x req/s ({verdict} the {TARGET}x "
        f"target), {cpu_vs_starlette:.2f}x in CPU per request ({cpu_verdict} it); DPoP / "
        f"bearer: {vs_bearer:.2f}x req/s; the proof's check: {extra_cpu:.0f} µs CPU per request"
    )


if __name__ == "__main__":
    main()
