"""The outermost layer of every request: its id, its headers, its log line.

- ``X-Request-ID`` is kept when the client sends a sensible one, made up otherwise, and
  returned on every response.
- The rate-limit decision the access layer published is written as headers.
- ``X-Content-Type-Options: nosniff`` and friends go on every response.
- One access-log line and the request metrics are recorded when the response starts.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import metrics
from storefront.access.ratelimit import rate_limit_of
from storefront.access.state import auth_failure_of, caller_of, request_state
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


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if REQUEST_ID_FORMAT.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # as random as uuid4().hex, at a fraction of the cost


class RequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: (method, path, status) -> its request counter and latency histogram, looked up once.
        self.series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
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

    def record(self, scope: Scope, rid: str, status: int, seconds: float) -> None:
        method, path = scope["method"], route_of(scope)
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
        log_access(
            method=method,
            path=path,
            status=status,
            seconds=seconds,
            client_id=caller.client_id if caller else None,
            key_id=caller.key_id if caller else None,
            request_id=rid,
        )
