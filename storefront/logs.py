"""Logging: readable lines by default, JSON objects with STOREFRONT_LOG_FORMAT=json.

The access log is ours (one line per request: method, path template, status, latency, who,
request id); uvicorn's is turned off because it prints raw URLs, query strings included.
Nothing here ever formats a header, a body or a query string.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from core.settings import Settings

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
