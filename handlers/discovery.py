"""/.well-known/: the documents another service reads to trust this server's tokens."""

from __future__ import annotations

from handlers._common import Body
from storefront.access.discovery import server_metadata
from storefront.http.deps import services

#: A resource server refetches the key set at most this often; a new key (a new
#: STOREFRONT_JWT_SECRET or algorithm) reaches it within this time after a restart.
JWKS_MAX_AGE = 300  # the metadata document too: it changes only with the settings


async def jwks() -> tuple[Body, int, dict[str, str]]:
    headers = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
    return services().tokens.jwks(), 200, headers


async def authorization_server_metadata() -> tuple[Body, int, dict[str, str]]:
    svc = services()
    # The scopes the operations ask for, read from openapi.yaml: the ones worth requesting.
    scopes = sorted({scope for needed in svc.required_scopes.values() for scope in needed})
    metadata = server_metadata(svc.settings, scopes=scopes)
    return metadata, 200, {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
