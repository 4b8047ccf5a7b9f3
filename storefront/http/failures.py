"""Failed authentications, counted in one place whichever layer refused the credential.

Connexion's security layer raises "no credentials" itself, our security functions raise bad
tokens and keys, and the token grant raises ``invalid_client``. All of them pass through this
middleware on their way to the error mapper, which therefore only maps. It sits after routing
and before security (``MiddlewarePosition.BEFORE_SECURITY``) on both stacks, so it also wraps
the token endpoint's handler.
"""

from __future__ import annotations

from connexion.exceptions import OAuthScopeProblem
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import OAuthError
from storefront.access.ratelimit import record_failure, refuse_scope
from storefront.access.services import from_scope


def presented_credentials(scope: Scope) -> bool:
    """Whether the request carried a bearer credential (or a DPoP-bound token) or an API key."""
    bearer = x_api_key = False
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            bearer = value.partition(b" ")[0].lower() in (b"bearer", b"dpop")
        elif name == b"x-api-key":
            x_api_key = True
    return bearer or x_api_key


class AuthFailureMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except OAuthScopeProblem:
            refuse_scope(scope)
            raise
        except OAuthError as exc:
            if exc.code == "invalid_client":
                await self._failed(scope, "invalid_client", exc.client_id)
            raise
        except HTTPException as exc:
            if exc.status_code == 401:
                reason = "invalid_credentials" if presented_credentials(scope) else "no_credentials"
                await self._failed(scope, reason, None)
            raise

    @staticmethod
    async def _failed(scope: Scope, reason: str, client_id: str | None) -> None:
        """Count the failure; past the budget a RateLimited replaces the original error."""
        await record_failure(from_scope(scope).limiter, scope, reason=reason, client_id=client_id)
