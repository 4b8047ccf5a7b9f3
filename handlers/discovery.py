"""/.well-known/: the documents another service reads to trust this server's tokens."""

from __future__ import annotations

from handlers._common import Body
from storefront.http.deps import services

#: A resource server refetches the key set at most this often; a new key (a new
#: STOREFRONT_JWT_SECRET or algorithm) reaches it within this time after a restart.
JWKS_MAX_AGE = 300


async def jwks() -> tuple[Body, int, dict[str, str]]:
    headers = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
    return services().tokens.jwks(), 200, headers
