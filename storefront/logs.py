"""Logging: readable lines by default, JSON objects with STOREFRONT_LOG_FORMAT=json.

The access log is ours (one line per request: method, path template, status, latency, who,
request id); uvicorn's is turned off because it prints raw URLs, query strings included.
Nothing here ever formats a header, a body or a query string.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from storefront.settings import Settings

access_log = logging.getLogger("storefront.access")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Fields every JSON line carries; the access log adds its own through ``extra``.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(settings: Settings) -> None:
    """Route every logger (ours, uvicorn's, Connexion's) through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    # No format here names a thread or a process: not collecting them for every record is
    # logging's own documented optimisation (multiprocessing's lookup is the dearest).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Its lines carry raw URLs (query strings and all); storefront.access replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic narrates every migration step at INFO; operators need only its problems.
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
