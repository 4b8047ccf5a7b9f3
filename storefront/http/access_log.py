"""The access log: one line per request (method, path template, status, latency, who, request
id). Nothing here ever formats a header, a body or a query string; ``storefront.logs`` decides
how lines look (text or JSON)."""

from __future__ import annotations

import logging

access_log = logging.getLogger("storefront.access")


def log_access(
    *,
    method: str,
    path: str,
    status: int,
    seconds: float,
    client_id: str | None,
    key_id: str | None,
    request_id: str,
) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    millis = round(seconds * 1000, 2)
    # Made and handled directly: Logger.info would first walk the stack to find the caller's
    # file and line (logging's findCaller), the dearest part of a log call, for a line whose
    # origin is always this function.
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.1fms client=%s key=%s request_id=%s",
        (method, path, status, millis, client_id or "-", key_id or "-", request_id),
        None,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": millis,
            "client_id": client_id,
            "key_id": key_id,
            "request_id": request_id,
        },
    )
    access_log.handle(record)
