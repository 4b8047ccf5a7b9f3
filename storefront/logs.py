"""Logging: readable lines by default, JSON objects with STOREFRONT_LOG_FORMAT=json.

The access log is ours (one line per request: method, path template, status, latency, who,
request id); uvicorn's is turned off because it prints raw URLs, query strings included.
Nothing here ever formats a header, a body or a query string.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from core.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Fields every JSON line carries; the access log adds its own through ``extra``.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _SecondStamp:
    """``logging.Formatter.formatTime`` with the date and time of the current second
    remembered: ``time.localtime`` and ``strftime`` ran for every access-log line, and a
    second's stamp is the same for every line logged within it. Only the default format
    (no ``datefmt``) is remembered; the milliseconds are added per line, as logging does."""

    default_time_format: str
    default_msec_format: str | None
    converter: Any
    _stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return str(time.strftime(datefmt, self.converter(record.created)))
        second = int(record.created)
        remembered, text = self._stamp
        if second != remembered:
            # localtime of the whole second: what localtime(created) gives, fraction dropped.
            text = time.strftime(self.default_time_format, self.converter(second))
            self._stamp = (second, text)  # one assignment: a thread never sees half of it
        if self.default_msec_format:
            return self.default_msec_format % (text, record.msecs)
        return text


class TextFormatter(_SecondStamp, logging.Formatter):
    pass


class JSONFormatter(_SecondStamp, JsonFormatter):
    pass


def configure_logging(settings: Settings) -> None:
    """Route every logger (ours, uvicorn's, Connexion's) through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(
            JSONFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
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
