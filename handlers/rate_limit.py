"""GET /rate_limit: the caller's budgets, read where the limiter counts them."""

from __future__ import annotations

import math
import time

from core.errors import RateLimitUnavailable
from handlers._common import PRIVATE, Body
from storefront.access.ratelimit import Decision
from storefront.http.deps import rate_limit_report


def _limit(decision: Decision, *, per: str, ident: str, now: float) -> Body:
    return {
        "policy": decision.policy,
        "per": per,
        "id": ident,
        "quota": decision.limit,
        "window": decision.window,
        "used": decision.limit - decision.remaining,
        "remaining": decision.remaining,
        "reset": math.ceil(decision.reset),
        "reset_in": decision.seconds_left(now),
    }


def _uses(decision: Decision, refill: str | None, *, now: float) -> Body:
    return {
        "policy": decision.policy,
        "quota": decision.limit,
        "used": decision.limit - decision.remaining,
        "remaining": decision.remaining,
        "refill": refill,
        "reset": math.ceil(decision.reset) if refill else None,
        "reset_in": decision.seconds_left(now) if refill else None,
    }


async def get_rate_limit() -> tuple[Body, int, dict[str, str]]:
    report = rate_limit_report()
    if report is None:  # the store is unreachable and the server serves without limits
        raise RateLimitUnavailable()
    now = time.time()
    body = {
        "limits": [
            _limit(decision, per=report.kind, ident=report.ident, now=now)
            for decision in report.limits
        ],
        "uses": None if report.uses is None else _uses(report.uses, report.refill, now=now),
        "rate_limit_reads": _limit(report.reads, per=report.kind, ident=report.ident, now=now),
    }
    return body, 200, dict(PRIVATE)
