"""What counting usage per day costs per request. Prints figures; asserts nothing.

    .venv/bin/python bench/usage_cost.py [--calls 1000000] [--requests 2000] [--rounds 5]

1. ``Usage.record`` alone (what the request path does: a dict increment), against the rest
   of the outer middleware's per-response bookkeeping (``RequestMiddleware.record``: metrics
   and the access-log call) with usage counted and without.
2. In context: GET /products with an API key through the whole app (in process, SQLite),
   with usage counted and without (the middleware given no recorder, as before usage
   existed), in alternating runs, so that the difference reads as a ratio on a noisy machine.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr

from core.crypto import SecretDigester
from core.settings import Settings
from persistence.migrate import upgrade
from storefront import admin
from storefront import app as app_module
from storefront.access.state import CALLER, Caller
from storefront.access.usage import Usage
from storefront.app import create_app
from storefront.http.middleware import RequestMiddleware

HUGE = "1000000000/minute"  # counted, never tripped


class NoUsageMiddleware(RequestMiddleware):
    """The outer middleware as it was before usage: no recorder."""

    def __init__(self, app: Any, usage: Usage | None = None) -> None:
        super().__init__(app, usage=None)


async def record_cost(calls: int) -> dict[str, float]:
    usage = Usage(None, interval=3600)  # type: ignore[arg-type]  # never writes here
    caller = Caller("cli_bench", "key_bench")
    scope = {"method": "GET", "state": {CALLER: caller}}
    figures: dict[str, float] = {}
    plain: dict[str, int] = {}
    start = time.perf_counter()
    for _ in range(calls):
        plain["x"] = plain.get("x", 0) + 1
    figures["a bare dict increment (for scale)"] = (time.perf_counter() - start) / calls * 1e9
    start = time.perf_counter()
    for _ in range(calls):
        usage.record(caller, 200)
    figures["Usage.record"] = (time.perf_counter() - start) / calls * 1e9
    for name, recorder in (("without usage", None), ("with usage", usage)):
        middleware = RequestMiddleware(None, usage=recorder)  # type: ignore[arg-type]
        start = time.perf_counter()
        for _ in range(calls // 10):
            middleware.record(scope, "rid", 200, 0.001)
        figures[f"RequestMiddleware.record {name}"] = (
            (time.perf_counter() - start) / (calls // 10) * 1e9
        )
    return figures


def request_cost(settings: Settings, key: str, requests: int, *, counted: bool) -> float:
    original = app_module.RequestMiddleware
    if not counted:
        app_module.RequestMiddleware = NoUsageMiddleware  # type: ignore[misc]
    try:
        app = create_app(settings)
    finally:
        app_module.RequestMiddleware = original  # type: ignore[misc]
    headers = {"X-API-Key": key}
    with app.test_client() as api:
        for _ in range(50):
            api.get("/products", params={"limit": 5}, headers=headers)
        start = time.perf_counter()
        for _ in range(requests):
            api.get("/products", params={"limit": 5}, headers=headers)
        return (time.perf_counter() - start) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    print("1. nanoseconds per call")
    for name, ns in asyncio.run(record_cost(args.calls)).items():
        print(f"   {name:45} {ns:8.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/bench.db"
        upgrade(database)
        base = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database,
            key_dir=Path(tmp) / "keys",
            rate_limit=HUGE,
            rate_limit_key_prefix=f"bench-{uuid.uuid4().hex}",
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
        figures: dict[str, list[float]] = {"without usage": [], "with usage": []}
        for _ in range(args.rounds):
            for name, counted in (("without usage", False), ("with usage", True)):
                figures[name].append(request_cost(base, key, args.requests, counted=counted))
        medians = {name: statistics.median(values) for name, values in figures.items()}
        for name, values in figures.items():
            rounds = ", ".join(f"{v:.0f}" for v in values)
            print(f"   {name:14} {medians[name]:8.0f}   (rounds: {rounds})")
        print(
            f"   with/without per request: {medians['with usage'] / medians['without usage']:.3f}x"
        )


if __name__ == "__main__":
    main()
