"""What several rate limits and a use-counted key cost per request, beside a plain key.

    .venv/bin/python bench/quota_cost.py [--seconds 3] [--rounds 3] [--sample 200]

One ``storefront serve`` (SQLite, one worker) with its rate limits in a Redis of the bench's
own (so that the commands Redis sees are only this server's), and three API keys of one client:

- ``1 limit``: the server's ``STOREFRONT_RATE_LIMIT`` only;
- ``3 limits``: a key with its own per-minute, per-hour and per-day limits;
- ``uses``: a key with the server's limit and a number of uses (``keys create --uses``).

Every limit is huge: counted, never reached. For each key, alternating, ``rounds`` runs of
``wrk -t1 -c32`` on ``GET /users/{id}`` for ``seconds`` each: requests per second and the
server's CPU time per request (median of the rounds), and Redis's commands per request from
``INFO commandstats`` (those the script runs inside Redis included). Then ``sample`` requests
one after another under Redis ``MONITOR``: the commands the server *sent* (round trips) per
request, each named — one ``EVALSHA`` per request, whatever the number of limits.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_peers import BIN, HUGE, Load, redis_server, seed_project, serving, wrk

KEYS = {
    "1 limit": [],
    "3 limits": ["set-limit", "1000000000/minute", "1000000000/hour", "1000000000/day"],
    "uses": ["--uses", "2000000000"],
}
PATH = "/users/user_000001"


def storefront_json(env: dict[str, str], *argv: str) -> dict[str, str]:
    import json

    done = subprocess.run(
        [BIN / "storefront", *argv, "--json"], env=env, capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found


def make_keys(env: dict[str, str]) -> dict[str, str]:
    """The three keys of one read-only client: name -> the API key."""
    client = storefront_json(env, "clients", "create", "--name", "bench", "--scopes", "read")
    made = {}
    for name, options in KEYS.items():
        uses = options if options[:1] == ["--uses"] else []
        key = storefront_json(env, "keys", "create", "--client-id", client["client_id"], *uses)
        if options[:1] == ["set-limit"]:
            subprocess.run(
                [BIN / "storefront", "keys", "set-limit", key["key_id"], *options[1:]],
                env=env,
                check=True,
                capture_output=True,
            )
        made[name] = key["api_key"]
    return made


def commandstats(url: str) -> dict[str, int]:
    import redis

    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def reset_stats(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        client.config_resetstat()


def sent_per_request(url: str, base: str, api_key: str, sample: int) -> tuple[float, Counter[str]]:
    """``sample`` requests one after another under MONITOR: the commands the server sent
    (not those its scripts ran inside Redis) per request, and which."""
    import httpx
    import redis

    seen: Counter[str] = Counter()
    ready, stop = threading.Event(), threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(url) as client, client.monitor() as monitor:
            ready.set()
            for event in monitor.listen():
                command = str(event["command"])
                if command.startswith("PING") and "monitor-stop" in command:
                    return
                if event.get("client_type") == "lua" or "lua" in str(event.get("client_address")):
                    continue
                seen[command.split()[0].upper()] += 1
                if stop.is_set():
                    return

    time.sleep(1)  # the last wrk run's requests in flight are done
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(5)
    with httpx.Client(base_url=base, headers={"X-API-Key": api_key}) as api:
        for _ in range(sample):
            api.get(PATH).raise_for_status()
    stop.set()
    with redis.Redis.from_url(url) as client:
        client.echo("monitor-stop")  # wakes the watcher; itself not counted below
    watcher.join(5)
    seen.pop("ECHO", None)
    return sum(seen.values()) / sample, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        env = seed_project(Path(tmp)) | {
            "STOREFRONT_RATE_LIMIT_STORAGE_URL": url,
            "STOREFRONT_RATE_LIMIT": HUGE,
            "STOREFRONT_LOG_LEVEL": "warning",
        }
        keys = make_keys(env)
        with serving(env) as (process, base):
            rps: dict[str, list[float]] = {name: [] for name in keys}
            cpu: dict[str, list[float]] = {name: [] for name in keys}
            commands: dict[str, list[float]] = {name: [] for name in keys}
            for api_key in keys.values():  # warm each key's path once
                wrk(Load(base + PATH, {"X-API-Key": api_key}), 1)
            for _ in range(args.rounds):
                for name, api_key in keys.items():
                    reset_stats(url)
                    load = Load(base + PATH, {"X-API-Key": api_key}, pid=process.pid)
                    result = wrk(load, args.seconds)
                    stats = commandstats(url)
                    ran = sum(n for cmd, n in stats.items() if cmd not in {"config|resetstat"})
                    rps[name].append(result.rps)
                    cpu[name].append(result.cpu_us)
                    commands[name].append(ran / result.requests)
            sent = {name: sent_per_request(url, base, k, args.sample) for name, k in keys.items()}

    print(
        f"GET {PATH}, one server (SQLite, 1 worker), Redis of its own; wrk -t1 -c32, "
        f"{args.rounds} rounds of {args.seconds} s per key, medians"
    )
    print(
        f"{'key':10} {'req/s':>8} {'CPU µs/req':>11} {'Redis cmds/req':>15} "
        f"{'sent/req':>9}  sent (MONITOR, {args.sample} requests)"
    )
    for name in keys:
        per, seen = sent[name]
        print(
            f"{name:10} {statistics.median(rps[name]):8.0f} {statistics.median(cpu[name]):11.0f} "
            f"{statistics.median(commands[name]):15.1f} {per:9.2f}  "
            + ", ".join(f"{cmd} {n}" for cmd, n in seen.most_common())
        )
    print(
        "Redis cmds/req counts what the script runs inside Redis (GET, INCRBY, PTTL… per "
        "key); sent/req is the round trips: one EVALSHA per request."
    )


if __name__ == "__main__":
    main()
