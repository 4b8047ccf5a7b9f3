"""What the request limits cost per request: the ASGI check and the counting protocol.

Times, in this process, without a network or the app behind them:

1. ``RequestLimitsMiddleware`` in front of a no-op app, for a request like a client's
   ``GET /users/{id}`` (eight header fields, no body);
2. the same request's bytes fed through uvicorn's ``HttpToolsProtocol`` and through
   ``BoundedHttpToolsProtocol`` (which counts header fields and bytes as they are parsed),
   up to the scope and request cycle the app would get.

Print microseconds per request for each, and the difference the protocol makes. Compare
with the time of a whole ``GET /users/{id}`` (bench/compare_peers.py): the limits cost is
what is left after subtracting, and should be within the noise of that figure.

    .venv/bin/python bench/limits_cost.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

REQUEST = (
    b"GET /users/user_abcdefghijkl HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: python-httpx/0.28.1\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\n"
    b"Authorization: Bearer " + b"e" * 400 + b"\r\n"
    b"X-Request-ID: req-0123456789\r\n"
    b'If-None-Match: "abc"\r\n\r\n'
)
ROUNDS = 20_000


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


class Transport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in {"sockname", "peername"} else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def per_request_protocol(cls: type[HttpToolsProtocol], loop: asyncio.AbstractEventLoop) -> float:
    """Parse the request and build its scope and cycle; the app is not run (its cost is the
    same under both classes, and the event loop's noise would hide the difference)."""
    config = Config(app=ok, log_config=None, access_log=False, timeout_keep_alive=3600)
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    protocol.connection_made(Transport())
    protocol._start_asgi_task = lambda cycle, app: None  # type: ignore[method-assign]
    started = time.perf_counter()
    for _ in range(ROUNDS):
        protocol.data_received(REQUEST)
        protocol.cycle.response_complete = True  # as if answered: the next is not pipelined
    return (time.perf_counter() - started) / ROUNDS * 1e6


async def per_request_middleware() -> float:
    from storefront.http.limits import RequestLimitsMiddleware

    async def noop(scope: Any, receive: Any, send: Any) -> None:
        pass

    limits = RequestLimitsMiddleware(
        noop, max_body_bytes=2**20, max_header_count=100, max_header_bytes=16384
    )
    headers = [tuple(line.split(b": ", 1)) for line in REQUEST.split(b"\r\n")[1:] if b": " in line]
    scope = {
        "type": "http",
        "method": "GET",
        "raw_path": b"/users/user_abcdefghijkl",
        "query_string": b"",
        "headers": [(name.lower(), value) for name, value in headers],
    }
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await limits(scope, None, None)  # type: ignore[arg-type]
    middleware = (time.perf_counter() - started) / ROUNDS * 1e6
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await noop(scope, None, None)
    return middleware - (time.perf_counter() - started) / ROUNDS * 1e6


def main() -> None:
    from storefront.server import BoundedHttpToolsProtocol

    loop = asyncio.new_event_loop()
    middleware = loop.run_until_complete(per_request_middleware())
    print(f"RequestLimitsMiddleware: {middleware:.2f} us per request")
    # Alternate, best of five each: the machine's noise is larger than the difference.
    plain, bounded = [], []
    for _ in range(5):
        plain.append(per_request_protocol(HttpToolsProtocol, loop))
        bounded.append(per_request_protocol(BoundedHttpToolsProtocol, loop))
    print(f"HttpToolsProtocol:        {min(plain):.2f} us per request (parse, scope, cycle)")
    print(f"BoundedHttpToolsProtocol: {min(bounded):.2f} us per request")
    print(f"counting costs:           {min(bounded) - min(plain):+.2f} us per request")


if __name__ == "__main__":
    main()
