"""What the access layer learns about a request, published for the layers above it.

Per-request state lives in the ASGI scope's ``state`` dict (Starlette's ``request.state``): the
server gives each request its own, and every copy of the scope (Connexion's routing makes one)
shares it, so what an inner layer publishes the outer middleware can read. Each key has one
writer, the function below that sets it; the layers above only read.

- ``storefront.caller``: who is calling, once a credential is proven (``publish_caller``,
  called by the security functions and the token grant).
- ``storefront.rate_limit``: the budget decision to report in the response headers (written,
  and read through ``rate_limit_of``, by ``storefront.access.ratelimit`` only).
- ``storefront.rate_limit_report``: the caller's budgets as GET /rate_limit shows them
  (written by ``storefront.access.ratelimit.report``, read through ``rate_limit_report_of``).
- ``storefront.auth_failure``: why authentication failed, a metrics label (written only by
  ``storefront.access.ratelimit.record_failure`` and ``refuse_scope``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

CALLER = "storefront.caller"
RATE_LIMIT = "storefront.rate_limit"
RATE_LIMIT_REPORT = "storefront.rate_limit_report"
AUTH_FAILURE = "storefront.auth_failure"


@dataclass(frozen=True, slots=True)
class Caller:
    """A proven credential: its OAuth client, and the API key when one was used."""

    client_id: str
    key_id: str | None = None


def request_state(scope: Scope) -> dict[str, Any]:
    """This request's state dict (created when a server or test gives none)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def publish_caller(scope: Scope, caller: Caller) -> None:
    request_state(scope)[CALLER] = caller


def caller_of(scope: Scope) -> Caller | None:
    found: Caller | None = scope.get("state", {}).get(CALLER)
    return found


def auth_failure_of(scope: Scope) -> str | None:
    found: str | None = scope.get("state", {}).get(AUTH_FAILURE)
    return found
