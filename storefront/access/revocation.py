"""Token revocation (RFC 7009) and introspection (RFC 7662), for authenticated clients.

Who may do what:
- a client revokes only its own tokens; another client's token, an unknown, expired or forged
  one is answered the same 200 and left alone, so that the endpoint tells nobody whether a
  token is valid (RFC 7009 §2.2);
- a client introspects its own tokens; a client holding the ``introspect`` scope (a resource
  server) introspects any. Every other token is ``{"active": false}``, whether it exists or
  not (RFC 7662 §2.2).
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from core import scopes
from core.crypto import LEEWAY, InvalidToken
from core.errors import OAuthError
from persistence import clients, revocations
from storefront.access.oauth import ClientCredentials, authenticate_client
from storefront.access.ratelimit import admit_client
from storefront.access.services import Services
from storefront.access.state import Caller, publish_caller

INACTIVE: dict[str, Any] = {"active": False}


async def is_revoked(svc: Services, claims: dict[str, Any]) -> bool:
    """Whether the (verified) token was revoked: asked of the database at most once every
    STOREFRONT_AUTH_CACHE_TTL seconds per token, so a revocation reaches every instance
    within that time while a busy token costs no read per request."""
    jti = str(claims["jti"])
    return await svc.revoked.get(jti, lambda: svc.db.read(revocations.is_revoked, jti=jti))


async def _client(
    svc: Services, asgi_scope: Scope, creds: ClientCredentials, token: str | None
) -> tuple[clients.ClientRow, str]:
    client = await authenticate_client(svc, asgi_scope, creds)
    publish_caller(asgi_scope, Caller(client.id))
    await admit_client(
        svc.limiter, asgi_scope, client_id=client.id, override=client.rate_limit, charge=True
    )
    if not token:
        raise OAuthError("invalid_request", "'token' is a required parameter.")
    return client, token


async def revoke(
    svc: Services, asgi_scope: Scope, *, creds: ClientCredentials, token: str | None
) -> None:
    # token_type_hint is not needed: only access tokens can be revoked here (there are no
    # refresh tokens, and API keys are revoked with `storefront keys revoke`).
    client, token = await _client(svc, asgi_scope, creds, token)
    try:
        claims = await svc.signing.verify(token)
    except InvalidToken:
        return  # nothing that could be used: nothing to revoke
    if claims["client_id"] != client.id:
        return
    # Kept as long as the signature check would still accept the token.
    expires_at = int(claims["exp"]) + LEEWAY + 1
    await svc.db.write(
        revocations.revoke, jti=str(claims["jti"]), client_id=client.id, expires_at=expires_at
    )
    svc.revoked.discard(str(claims["jti"]))  # this instance: at once; the others within the TTL


async def introspect(
    svc: Services, asgi_scope: Scope, *, creds: ClientCredentials, token: str | None
) -> dict[str, Any]:
    client, token = await _client(svc, asgi_scope, creds, token)
    try:
        claims = await svc.signing.verify(token)
    except InvalidToken:
        return INACTIVE
    own = claims["client_id"] == client.id
    if not own and scopes.INTROSPECT not in client.scopes.split():
        return INACTIVE
    if await is_revoked(svc, claims):
        return INACTIVE
    owner = str(claims["client_id"])
    active, _ = await svc.client_status.get(
        owner, lambda: clients.active_client_limit(svc.db, client_id=owner)
    )
    if not active:
        return INACTIVE
    answer = {
        "active": True,
        "token_type": "Bearer",
        **{name: claims[name] for name in ("scope", "client_id", "sub", "exp", "iat", "iss")},
        "aud": claims["aud"],
        "jti": claims["jti"],
    }
    if "cnf" in claims:  # RFC 9449 §6.2: the key a DPoP-bound token is bound to
        answer["token_type"] = "DPoP"  # noqa: S105 - a token type, not a password
        answer["cnf"] = claims["cnf"]
    return answer
