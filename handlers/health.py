"""/healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import asyncio
import time
from typing import Literal, TypedDict

from core.errors import NotFound, NotReady
from core.metrics import CONTENT_TYPE, exposition
from handlers._common import Body
from persistence.health import describe_failure, pooler_answers, schema_revision
from persistence.revisions import head_revision
from storefront.access.authn import require_metrics_token
from storefront.access.services import Services
from storefront.http.deps import header, services

HEAD = head_revision()


class Check(TypedDict):
    """One dependency in /readyz: ``ok`` or ``down``, and why."""

    status: Literal["ok", "down"]
    reason: str


async def healthz() -> Body:
    return {"status": "ok"}


def _ok(reason: str) -> Check:
    return {"status": "ok", "reason": reason}


def _down(reason: str) -> Check:
    return {"status": "down", "reason": reason}


async def _database(svc: Services) -> tuple[Check, Check]:
    """The database (a query through the pooler, when there is one) and its schema."""
    timeout = svc.settings.database_timeout
    started = time.perf_counter()
    try:
        revision = await svc.db.read(schema_revision)
    except Exception as exc:  # whatever it is, the database is not there for requests
        reason = describe_failure(exc, timeout)
        return _down(reason), _down("not checked: the database is down")
    took = (time.perf_counter() - started) * 1000
    database = _ok(f"answered in {took:.0f} ms")
    if revision != HEAD:
        return database, _down(f"at {revision}, this code needs {HEAD}")
    return database, _ok(f"at {HEAD}, as this code expects")


async def _pooler(svc: Services) -> Check | None:
    """Whether the pooler accepts connections; None when there is none."""
    settings = svc.settings
    if settings.database_pooler == "none":
        return None
    problem = await pooler_answers(settings.database_url, settings.database_timeout)
    return (
        _ok(f"{settings.database_pooler} accepts connections")
        if problem is None
        else _down(problem)
    )


async def readyz() -> Body:
    svc = services()
    settings = svc.settings
    checks: dict[str, Check] = {}
    # At once: a probe waits for the slowest dependency, not for the sum of them.
    database, pooler, store = await asyncio.gather(
        _database(svc), _pooler(svc), svc.limiter.check()
    )
    checks["database"], checks["migrations"] = database
    if pooler is not None:
        checks["pooler"] = pooler
    if not svc.limiter.shared:
        checks["rate_limit_store"] = _ok("in process: each process counts on its own")
    elif store is None:
        checks["rate_limit_store"] = _ok("answered PING")
    elif settings.rate_limit_fail_open:
        # Fail-open: requests are served, uncounted. Taking the instance out of rotation
        # would turn a Redis outage into an outage of the API.
        checks["rate_limit_store"] = _down(f"{store}; serving without limits")
    else:
        checks["rate_limit_store"] = _down(f"{store}; requests are refused with 503")
    down = {name: c for name, c in checks.items() if c["status"] != "ok"}
    serving_anyway = settings.rate_limit_fail_open and set(down) == {"rate_limit_store"}
    if down and not serving_anyway:
        listed = "; ".join(f"{name}: {c['reason']}" for name, c in down.items())
        raise NotReady(f"Not ready: {listed}.")
    return {"status": "degraded" if down else "ready", "checks": checks}


async def metrics() -> tuple[bytes, int, dict[str, str]]:
    settings = services().settings
    if settings.metrics_access == "off":
        raise NotFound("No resource exists at this URL.")
    # Repeated fields joined (", "): two Authorization fields never match the one token.
    require_metrics_token(settings, header("authorization"))
    return exposition(), 200, {"Content-Type": CONTENT_TYPE}
