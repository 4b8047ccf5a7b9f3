"""The outermost layer of every request: its id, its headers, its log line.

- ``X-Request-ID`` is kept when the client sends a sensible one, made up otherwise, and
  returned on every response.
- The rate-limit decision the access layer published is written as headers.
- ``X-Content-Type-Options: nosniff`` and friends go on every response.
- One access-log line and the request metrics are recorded when the response starts, and
  the response is counted in its caller's usage (``storefront.access.usage``; never a
  metrics label: a series per client would grow without bound).
- A WebSocket connection, which only a server with a WebSocket protocol delivers
  (``storefront serve`` has none: there an upgrade is an HTTP request, refused with a 400 by
  storefront.http.limits), is refused with the same 400 where the server lets the app answer
  in HTTP (the ASGI "WebSocket denial response" extension), else closed before it opens.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import metrics
from storefront.access.ratelimit import rate_limit_of
from storefront.access.state import auth_failure_of, caller_of, request_state
from storefront.access.usage import Usage
from storefront.http.access_log import log_access
from storefront.http.state import REQUEST_ID, publish_scope, route_of

REQUEST_ID_FORMAT = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
#: Headers the app must never send (a server version helps nobody but an attacker).
DROPPED = {b"server", b"x-powered-by"}

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
NO_WEBSOCKET = json.dumps(
    {
        "error": "Bad Request",
        "message": "This API does not accept WebSocket connections: send plain HTTP requests.",
    }
).encode()


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if REQUEST_ID_FORMAT.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # as random as uuid4().hex, at a fraction of the cost


class RequestMiddleware:
    def __init__(self, app: ASGIApp, usage: Usage | None = None) -> None:
        self.app = app
        self.usage = usage
        #: (method, path, status) -> its request counter and latency histogram, looked up once.
        self.series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self.refuse_websocket(scope, send)
                return
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        publish_scope(scope)
        rid = request_id(scope)
        request_state(scope)[REQUEST_ID] = rid

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in DROPPED
                ]
                present = {name.lower() for name, _ in headers}
                extra = [(b"x-request-id", rid.encode()), *SECURITY_HEADERS]
                decision = rate_limit_of(scope)
                if decision is not None:
                    extra += [
                        (name.lower().encode(), value.encode())
                        for name, value in decision.headers().items()
                    ]
                headers += [(n, v) for n, v in extra if n not in present]
                message["headers"] = headers
                self.record(scope, rid, message["status"], time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_wrapped)

    async def refuse_websocket(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        rid = request_id(scope)
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403
            self.record(scope, rid, 403, time.perf_counter() - started, method="GET")
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(NO_WEBSOCKET)).encode()),
            (b"x-request-id", rid.encode()),
            *SECURITY_HEADERS,
        ]
        await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": NO_WEBSOCKET})
        self.record(scope, rid, 400, time.perf_counter() - started, method="GET")

    def record(
        self, scope: Scope, rid: str, status: int, seconds: float, method: str | None = None
    ) -> None:
        method, path = method or scope["method"], route_of(scope)
        if method not in METHODS:  # any token is a method to HTTP: keep the labels bounded
            method = "OTHER"
        key = (method, path, status)
        series = self.series.get(key)
        if series is None:
            labels = (method, path, str(status))
            series = (metrics.REQUESTS.labels(*labels), metrics.LATENCY.labels(*labels))
            self.series[key] = series
        series[0].inc()
        series[1].observe(seconds)
        decision = rate_limit_of(scope)
        if status == 429 and decision is not None:
            metrics.RATE_LIMITED.labels(policy=decision.policy).inc()
        failure = auth_failure_of(scope)
        if failure is not None:
            metrics.AUTH_FAILURES.labels(reason=failure).inc()
        caller = caller_of(scope)
        if caller is not None and self.usage is not None:
            self.usage.record(caller, status)
        log_access(
            method=method,
            path=path,
            status=status,
            seconds=seconds,
            client_id=caller.client_id if caller else None,
            key_id=caller.key_id if caller else None,
            request_id=rid,
        )
