"""/healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from core.errors import NotFound, NotReady
from core.metrics import CONTENT_TYPE, exposition
from handlers._common import Body
from persistence.health import schema_revision
from persistence.migrate import head_revision
from storefront.access.authn import require_metrics_token
from storefront.http.deps import request, services

HEAD = head_revision()


async def healthz() -> Body:
    return {"status": "ok"}


async def readyz() -> Body:
    svc = services()
    problems = []
    checks: dict[str, str] = {}
    try:
        revision = await svc.db.read(schema_revision)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if revision == HEAD else f"at {revision}, code needs {HEAD}"
        if revision != HEAD:
            problems.append(f"the database schema is at {revision}, not {HEAD}")
    except Exception:
        checks["database"] = "unreachable"
        problems.append("the database is unreachable")
    if svc.limiter.shared:
        reachable = await svc.limiter.check()
        checks["rate_limit_store"] = "ok" if reachable else "unreachable"
        if not reachable:
            problems.append("the rate-limit store is unreachable")
    else:
        checks["rate_limit_store"] = "in process"
    if problems:
        raise NotReady("Not ready: " + "; ".join(problems) + ".")
    return {"status": "ready", "checks": checks}


async def metrics() -> tuple[bytes, int, dict[str, str]]:
    settings = services().settings
    if settings.metrics_access == "off":
        raise NotFound("No resource exists at this URL.")
    require_metrics_token(settings, request.headers.get("authorization"))
    return exposition(), 200, {"Content-Type": CONTENT_TYPE}
