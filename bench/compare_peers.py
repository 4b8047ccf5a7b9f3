"""GET /users/{id}: Storefront beside the reference servers, alternating, one wrk client.

Prints requests/s, p50 and p99 latency and the ratio project/peer; asserts nothing. Absolute
figures drift on a shared machine, so every peer is measured between two runs of the project
and the ratio is taken against the project's median of the same round.

    apt-get install wrk
    .venv/bin/pip install -e '.[bench]'        # FastAPI, for the FastAPI reference
    .venv/bin/python bench/compare_peers.py [--seconds 8] [--rounds 3]

The project runs with production settings: `storefront serve` (one uvicorn worker), SQLite,
request validation on, response validation off (the default), the rate limit counted but set
far above what the load reaches, the access log on (sent to /dev/null).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "bench" / "peers"
BIN = Path(sys.executable).parent
HUGE = "1000000000/minute"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


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


def wrk(url: str, token: str, seconds: int) -> Result:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = millis(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = millis(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx responses")
    return Result(rps, p50, p99)


def seed_project(directory: Path) -> dict[str, str]:
    """A migrated SQLite database with the peers' 1,000 users, and the server's settings."""
    database = directory / "storefront.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env |= {
        "STOREFRONT_DATABASE_URL": f"sqlite:///{database}",
        "STOREFRONT_KEY_DIR": str(directory / "keys"),
        "STOREFRONT_RATE_LIMIT": HUGE,
    }
    subprocess.run([BIN / "storefront", "db", "upgrade"], env=env, check=True)
    with sqlite3.connect(database) as con:  # bulk, not through the API
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


def project_token(env: dict[str, str], base: str) -> str:
    import json

    import httpx

    made = subprocess.run(
        [BIN / "storefront", "clients", "create", "--name", "bench", "--scopes", "read", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    client = json.loads(made.stdout)
    form = {"grant_type": "client_credentials", **client}
    token: str = httpx.post(f"{base}/auth/token", data=form).json()["access_token"]
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        peer_env = os.environ | {"PEER_DB": str(directory / "peers.sqlite3")}
        peer_token = subprocess.run(
            [sys.executable, "common.py"],
            cwd=PEERS,
            env=peer_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = seed_project(directory)

        processes = []
        servers: dict[str, tuple[str, str]] = {}
        try:
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [BIN / "storefront", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            base = f"http://127.0.0.1:{port}"
            wait_until_up(f"{base}/healthz", {})
            servers["storefront"] = (f"{base}/users/user_000042", project_token(env, base))
            for name in ("starlette_ref", "fastapi_ref", "connexion_ref"):
                port = free_port()
                processes.append(
                    subprocess.Popen(
                        [
                            BIN / "uvicorn",
                            f"{name}:app",
                            "--port",
                            str(port),
                            "--log-level",
                            "warning",
                            "--no-access-log",
                        ],
                        cwd=PEERS,
                        env=peer_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                servers[name] = (f"http://127.0.0.1:{port}/users/user_000042", peer_token)
            for url, token in servers.values():
                wait_until_up(url, {"Authorization": f"Bearer {token}"})

            project: list[Result] = []
            peers: dict[str, list[Result]] = {name: [] for name in servers if name != "storefront"}
            for round_ in range(args.rounds):
                for name in peers:
                    project.append(wrk(*servers["storefront"], args.seconds))
                    peers[name].append(wrk(*servers[name], args.seconds))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=15)

    def med(results: list[Result], field: str) -> float:
        return statistics.median(getattr(r, field) for r in results)

    print(f"GET /users/{{id}}, wrk -t1 -c32, {args.seconds}s x {args.rounds} rounds, medians")
    print(f"{'server':16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'project/peer':>13}")
    ours = med(project, "rps")
    print(
        f"{'storefront':16} {ours:9.0f} {med(project, 'p50_ms'):8.2f} {med(project, 'p99_ms'):8.2f}"
    )
    for name, results in peers.items():
        rps = med(results, "rps")
        print(
            f"{name:16} {rps:9.0f} {med(results, 'p50_ms'):8.2f} {med(results, 'p99_ms'):8.2f}"
            f" {ours / rps:12.2f}x"
        )


if __name__ == "__main__":
    main()
