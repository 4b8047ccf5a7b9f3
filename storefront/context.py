"""What one request learns about itself on the way in, for the layers that answer it.

The outer middleware puts a ``RequestContext`` in the ASGI scope; the security functions fill
in who is calling, the rate limiter its decision, the error mapper why authentication failed.
The object (not the scope dict, which Connexion copies) is what travels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from storefront.ratelimit import Decision

SCOPE_KEY = "storefront.context"


@dataclass
class RequestContext:
    request_id: str
    #: The spec's path this request matched (``/users/{id}``), set by the operations layer.
    route: str = "unmatched"
    client_id: str | None = None
    key_id: str | None = None
    decision: Decision | None = None
    #: Why authentication failed, when it did (a metrics label).
    auth_failure: str | None = None


def context(scope: Scope) -> RequestContext | None:
    found: RequestContext | None = scope.get(SCOPE_KEY)
    return found


def identify(scope: Scope, *, client_id: str, key_id: str | None = None) -> None:
    """Record who is calling (for the access log)."""
    ctx = context(scope)
    if ctx is not None:
        ctx.client_id, ctx.key_id = client_id, key_id


def failed_authentication(scope: Scope, reason: str) -> None:
    ctx = context(scope)
    if ctx is not None:
        ctx.auth_failure = reason
