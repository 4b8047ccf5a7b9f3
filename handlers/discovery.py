"""/.well-known/: the documents another service reads to trust this server's tokens."""

from __future__ import annotations

import hashlib
import json

from core.scopes import API_SCOPES
from handlers._common import Body
from storefront.access.discovery import server_metadata
from storefront.http import conditional
from storefront.http.deps import header, services

#: A resource server refetches the metadata document at most this often: it changes only with
#: the settings.
METADATA_MAX_AGE = 300


async def jwks() -> tuple[Body | None, int, dict[str, str]]:
    svc = services()
    codec = await svc.signing.fresh()  # a new key is published before it signs
    body = codec.jwks()
    # Cached no longer than this server's own copy of the keys may be old (the refresh
    # window), and a new key is published for longer than that before it signs: a verifier
    # that honours max-age always holds a key before it meets a token signed with it. The
    # ETag makes refetching cheap (a 304).
    tag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    headers = {
        "Cache-Control": f"public, max-age={int(svc.signing.window)}",
        "ETag": f'"{tag}"',
    }
    if conditional.not_modified(header("if-none-match"), tag):
        return None, 304, headers
    return body, 200, headers


async def authorization_server_metadata() -> tuple[Body, int, dict[str, str]]:
    svc = services()
    # The API's scopes (core.scopes, equal to openapi.yaml's OAuth2 flow): the ones worth
    # requesting. introspect is a client's standing, not something a token is asked for.
    metadata = server_metadata(svc.settings, scopes=list(API_SCOPES))
    return metadata, 200, {"Cache-Control": f"public, max-age={METADATA_MAX_AGE}"}
