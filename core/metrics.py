"""Prometheus metrics. With several workers, set PROMETHEUS_MULTIPROC_DIR (``storefront
serve --workers N`` does) and every worker's samples are summed at scrape time."""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "storefront_requests_total", "HTTP requests answered.", ["method", "path", "status"]
)
LATENCY = Histogram(
    "storefront_request_duration_seconds",
    "Time from the request's arrival to its response's start.",
    ["method", "path", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter(
    "storefront_rate_limited_total", "Requests refused with 429, by policy.", ["policy"]
)
TOKENS_ISSUED = Counter("storefront_tokens_issued_total", "Access tokens issued.")
AUTH_FAILURES = Counter(
    "storefront_auth_failures_total", "Failed authentications, by reason.", ["reason"]
)
HTTP_REFUSED = Counter(
    "storefront_http_refused_total",
    "Requests and connections the server process refused itself, before the app: by reason "
    "and status (none: closed without an answer).",
    ["reason", "status"],
)

#: Prometheus reads plain text without a version as its classic text format (0.0.4), which is
#: what generate_latest writes; Connexion checks the response's type against the spec's
#: media type to the letter, so no parameters.
CONTENT_TYPE = "text/plain"


def registry() -> CollectorRegistry:
    """This process' registry, or one that sums every worker's (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return combined
    return REGISTRY


def exposition() -> bytes:
    """The current samples in Prometheus' text format."""
    return generate_latest(registry())
