"""What rate limiting costs per request, on each store. Prints figures; asserts nothing.

    .venv/bin/python bench/ratelimit_cost.py [--calls 20000] [--requests 2000]

1. The limiter alone: one ``Limiter.charge`` (hit + window stats, as a request does) per call,
   for every strategy, on memory:// and on the Redis at 127.0.0.1:6379.
2. In context: GET /products through the whole app (in process, SQLite) with each store,
   alternating runs, so the limiter's share of a request can be read as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr
from starlette.testclient import TestClient

from core.crypto import SecretDigester
from core.settings import Settings
from persistence.migrate import upgrade
from storefront import admin
from storefront.access.ratelimit import STRATEGIES, Limiter
from storefront.app import create_app

REDIS = "redis://127.0.0.1:6379"
HUGE = "1000000000/minute"  # counted, never tripped


async def limiter_cost(store: str, strategy: str, calls: int) -> float:
    limiter = Limiter(
        storage_url=store,
        strategy=strategy,
        default_limit=HUGE,
        auth_failure_limit=HUGE,
        key_prefix=f"bench-{uuid.uuid4().hex}",
        fail_open=False,
    )
    try:
        await limiter.charge(kind="key", ident="warm", override=None)
        start = time.perf_counter()
        for _ in range(calls):
            await limiter.charge(kind="key", ident="k", override=None)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        await limiter.close()


def request_cost(settings: Settings, api_key: str, requests: int) -> float:
    with TestClient(create_app(settings)) as api:
        headers = {"X-API-Key": api_key}
        api.get("/products", headers=headers)
        start = time.perf_counter()
        for _ in range(requests):
            api.get("/products", params={"limit": 5}, headers=headers)
        return (time.perf_counter() - start) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print("1. the limiter alone: microseconds per charge (hit + window stats)")
    print(f"   {'strategy':24} {'memory://':>10} {'redis://':>10}")
    for strategy in STRATEGIES:
        memory = asyncio.run(limiter_cost("memory://", strategy, args.calls))
        redis = asyncio.run(limiter_cost(REDIS, strategy, args.calls // 4))
        print(f"   {strategy:24} {memory:10.1f} {redis:10.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/bench.db"
        upgrade(database)
        base = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database,
            key_dir=Path(tmp) / "keys",
            rate_limit=HUGE,
        )
        base = base.model_copy(update={"pepper": SecretStr("p" * 40)})
        digester = SecretDigester(b"p" * 40)
        client = admin.run(
            base, lambda s: admin.create_client(s, digester, name="bench", scopes=["read"])
        )
        key = admin.run(
            base, lambda s: admin.create_api_key(s, digester, client_id=client.client_id)
        ).api_key
        print(f"\n2. GET /products in process: microseconds per request ({args.requests} each)")
        figures: dict[str, list[float]] = {"memory://": [], "redis://": []}
        for _ in range(args.rounds):
            for store, url in (("memory://", "memory://"), ("redis://", REDIS)):
                settings = base.model_copy(
                    update={
                        "rate_limit_storage_url": url,
                        "rate_limit_key_prefix": f"bench-{uuid.uuid4().hex}",
                    }
                )
                figures[store].append(request_cost(settings, key, args.requests))
        memory = statistics.median(figures["memory://"])
        redis = statistics.median(figures["redis://"])
        for store, median in (("memory://", memory), ("redis://", redis)):
            rounds = ", ".join(f"{v:.0f}" for v in figures[store])
            print(f"   {store:10} {median:8.0f}   (rounds: {rounds})")
        print(f"   redis/memory per request: {redis / memory:.2f}x")


if __name__ == "__main__":
    main()
