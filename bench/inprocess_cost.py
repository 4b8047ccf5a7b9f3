"""Where a request's CPU goes on PostgreSQL + Redis, measured in process. Prints figures.

The app (``create_app_from_env``, production settings, the access log written to /dev/null)
and the hand-written peer (``peers/starlette_pg.py``) run in this one process, on one uvloop
event loop, on the same PostgreSQL and a Redis of the bench's own: no server, no wrk, no
sockets of HTTP. Each variant serves ``--n`` requests from 32 tasks at once; the variants
alternate, round after round, and the median client CPU per request of each is printed. With
nothing but the stores beside it on the machine, the rounds of a variant agree within a few
per cent, where whole-server runs move by twenty.

A variant names what it removes from ``ours`` (a stub in its place), joined by ``-``:

- ``decision``: the rate-limit charge (one Redis round trip, its verdict and headers);
- ``read``: the user's read (``persistence.users.get_user``: the row is remembered once);
- ``log``: the access-log line; ``record``: the line, the metrics and the usage count;
- ``bound``: the decision's time bound (``Limiter._guard``'s ``asyncio.timeout``);
- ``headers``: the decision's publication, so its headers too (the decision is still made);
- ``peer-nolimit``: the peer without its limit (its Redis round trip).

With ``--token`` every variant serves ``POST /auth/token`` (client_credentials) instead, and
these stubs apply: ``client`` (the client's read: remembered once), ``admit`` (the client's
admission: its limit and the failure budget, one Redis round trip), ``sign`` (the token's
signature: the first token remembered and issued again).

    .venv/bin/python bench/inprocess_cost.py
    .venv/bin/python bench/inprocess_cost.py --variants peer,ours,ours-read,ours-decision-read
    .venv/bin/python bench/inprocess_cost.py --token --variants peer,ours,ours-bound
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # bench/ is not a package

CONCURRENCY = 32
Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def http_scope(state: dict[str, Any], method: str, target: str, headers: list[Any]) -> Scope:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),  # as uvicorn copies the lifespan's state into each request
        "extensions": {},
    }


# A call by hand rather than through httpx's ASGITransport: its client machinery costs more
# per request than the parts this measures.
async def call(app: App, scope: Scope, body: bytes = b"") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def start(app: App, state: dict[str, Any]) -> asyncio.Task[None]:
    """Run the app's lifespan startup; the task lives as long as the run."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    return task


async def cpu_per_request(app: App, make: Callable[[], Scope], body: bytes, requests: int) -> float:
    each = requests // CONCURRENCY

    async def client() -> None:
        for _ in range(each):
            status, answer = await call(app, make(), body)
            if status != 200:
                raise RuntimeError(f"{status}: {answer[:300]!r}")

    began = time.process_time()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return (time.process_time() - began) / (each * CONCURRENCY) * 1e6


def stubs() -> Callable[[set[str]], None]:
    """A function that puts the stubs of the named parts in place (and the others back)."""
    import starlette_pg

    import handlers.users
    import persistence.clients
    import persistence.users
    import storefront.access.authn as authn
    import storefront.access.oauth as oauth
    import storefront.access.ratelimit as ratelimit
    import storefront.http.middleware as middleware
    from core.crypto import TokenCodec

    record, log, spend = middleware.RequestMiddleware.record, middleware.log_access, authn._spend
    guard, publish = ratelimit.Limiter._guard, ratelimit._publish
    clients, admit, issue = oauth.clients, oauth.admit_client, TokenCodec.issue
    issued: dict[str, Any] = {}
    known: dict[str, Any] = {}

    async def remembered_client(db: Any, *, client_id: str) -> Any:
        if client_id not in known:
            known[client_id] = await persistence.clients.find_client(db, client_id=client_id)
        return known[client_id]

    def issued_once(codec: TokenCodec, **claims: Any) -> Any:
        if "token" not in issued:
            issued["token"] = issue(codec, **claims)
        return issued["token"]

    users, limit = handlers.users.users, starlette_pg.limit
    remembered: dict[str, Any] = {}

    async def no_charge(*_: Any, **__: Any) -> None:
        return None

    async def remembered_user(db: Any, *, user_id: str) -> Any:
        if user_id not in remembered:
            remembered[user_id] = await persistence.users.get_user(db, user_id=user_id)
        return remembered[user_id]

    async def unbounded(_: Any, work: Callable[[], Awaitable[Any]]) -> Any:
        return await work()

    class NoLimit:
        async def hit(self, *_: Any) -> bool:
            return True

    def put(parts: set[str]) -> None:
        middleware.RequestMiddleware.record = (  # type: ignore[method-assign]
            (lambda *_, **__: None) if "record" in parts else record
        )
        middleware.log_access = (lambda **_: None) if "log" in parts else log
        authn._spend = no_charge if "decision" in parts else spend
        handlers.users.users = (
            type("Users", (), {"get_user": staticmethod(remembered_user)})
            if "read" in parts
            else users
        )
        starlette_pg.limit = NoLimit() if "nolimit" in parts else limit
        ratelimit.Limiter._guard = unbounded if "bound" in parts else guard  # type: ignore[method-assign]
        ratelimit._publish = (lambda *_: None) if "headers" in parts else publish
        oauth.clients = (
            type("Clients", (), {"find_client": staticmethod(remembered_client)})
            if "client" in parts
            else clients
        )
        oauth.admit_client = no_charge if "admit" in parts else admit
        TokenCodec.issue = issued_once if "sign" in parts else issue  # type: ignore[method-assign]

    return put


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="peer,peer-nolimit,ours,ours-decision,ours-read")
    parser.add_argument("--path", default="/users/user_000042")
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--token", action="store_true", help="POST /auth/token instead")
    args = parser.parse_args()
    with contextlib.ExitStack() as stores:
        directory = Path(tempfile.mkdtemp(prefix="storefront-inprocess-"))
        redis_url = stores.enter_context(cp.redis_server(directory))
        peer_url = stores.enter_context(cp.postgres_database(f"sf_inproc_peer_{os.getpid()}"))
        cp.seed_peers("postgresql", cp.peer_env(directory, "postgresql", {
            "peer_database": peer_url, "redis": redis_url,
        }))  # fmt: skip
        os.environ.update({"PEER_PG": peer_url, "PEER_REDIS": redis_url})
        sys.path.insert(0, str(cp.PEERS))
        import common
        import starlette_pg

        url = stores.enter_context(cp.postgres_database(f"sf_inproc_{os.getpid()}"))
        env, _ = cp.seed_project_postgres(directory, url, redis_url)
        os.environ.update(env)
        client = cp.create_client(env, "read")
        from storefront.app import create_app_from_env

        ours = create_app_from_env()
        for handler in logging.getLogger().handlers:  # the access log, written nowhere
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as we do
        form = cp.urlencode({"grant_type": "client_credentials", **client}).encode()
        import uvloop

        peer_form = cp.urlencode({
            "grant_type": "client_credentials",
            "client_id": common.CLIENT_ID,
            "client_secret": common.CLIENT_SECRET,
        }).encode()  # fmt: skip
        uvloop.run(run(args, ours, starlette_pg.app, form, common.token(), peer_form))


async def run(
    args: argparse.Namespace, ours: App, peer: App, form: bytes, peer_token: str, peer_form: bytes
) -> None:
    ours_state: dict[str, Any] = {}
    peer_state: dict[str, Any] = {}
    await start(ours, ours_state)
    await start(peer, peer_state)

    def form_headers(body: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ]

    headers = form_headers(form)
    status, body = await call(ours, http_scope(ours_state, "POST", "/auth/token", headers), form)
    if status != 200:
        raise RuntimeError(f"no token: {body!r}")
    token = json.loads(body)["access_token"]

    def maker(variant: str) -> tuple[App, Callable[[], Scope], bytes]:
        app, state, bearer, posted = (
            (peer, peer_state, peer_token, peer_form)
            if variant.startswith("peer")
            else (ours, ours_state, token, form)
        )
        if args.token:
            sent = form_headers(posted)
            return app, lambda: http_scope(state, "POST", "/auth/token", list(sent)), posted
        sent = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {bearer}".encode())]
        return app, lambda: http_scope(state, "GET", args.path, list(sent)), b""

    put = stubs()
    variants = args.variants.split(",")
    for variant in variants:  # warm: statements prepared, caches filled
        put(set(variant.split("-")[1:]))
        await cpu_per_request(*maker(variant), 2000)
    gc.collect()
    gc.freeze()  # as storefront serve does after start-up
    figures: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for variant in variants:
            put(set(variant.split("-")[1:]))
            figures[variant].append(await cpu_per_request(*maker(variant), args.requests))
    put(set())
    what = "POST /auth/token" if args.token else f"GET {args.path}"
    print(f"{what}, client CPU per request, {CONCURRENCY} at once, in process")
    print(f"{'variant':<28} {'median µs':>10}  rounds")
    for variant in variants:
        rounds = " ".join(f"{x:.0f}" for x in figures[variant])
        print(f"{variant:<28} {statistics.median(figures[variant]):10.1f}  {rounds}")


if __name__ == "__main__":
    main()
