"""The authorization server metadata (RFC 8414): where a client or a resource server finds
the token endpoint, the keys and the rest, and what this server supports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from core.settings import Settings
from storefront.access.client_keys import ALGORITHMS
from storefront.access.dpop import ALGORITHMS as DPOP_ALGORITHMS
from storefront.access.oauth import GRANT_TYPE

JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/auth/token"  # noqa: S105 - a path, not a password
REVOCATION_PATH = "/auth/revoke"
INTROSPECTION_PATH = "/auth/introspect"


def base_url(settings: Settings) -> str:
    """The base of the advertised endpoints: STOREFRONT_PUBLIC_URL; without it the issuer when
    that is an http(s) URL (RFC 8414 §2 wants one); else nothing, and the endpoints are
    relative references, resolved against the URL the document was fetched from. Never the
    request's Host header: a client may send any host there, and a cache keeps the answer."""
    if settings.public_url:
        return settings.public_url
    parts = urlsplit(settings.issuer)
    if parts.scheme in {"http", "https"} and parts.hostname and not parts.query:
        return settings.issuer.rstrip("/")
    return ""


def server_metadata(settings: Settings, *, scopes: list[str]) -> dict[str, Any]:
    base = base_url(settings)
    methods = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    metadata: dict[str, Any] = {
        # Must be the tokens' iss exactly (RFC 8414 §3.3, RFC 9068 §4), so never rewritten.
        "issuer": settings.issuer,
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "revocation_endpoint": base + REVOCATION_PATH,
        "introspection_endpoint": base + INTROSPECTION_PATH,
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": [],  # no authorization endpoint: client credentials only
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
        "scopes_supported": scopes,
        **assertion_metadata(),
        **resource_metadata(settings),
    }
    if base:
        # RFC 9449 §5.1. Only with a base URL: a proof's htu is checked against it.
        metadata["dpop_signing_alg_values_supported"] = list(DPOP_ALGORITHMS)
    return metadata


def assertion_metadata() -> dict[str, Any]:
    """RFC 8414 §2: the algorithms a client assertion (``private_key_jwt``, RFC 7523) may be
    signed with, at each endpoint that authenticates clients."""
    return {
        f"{endpoint}_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS)
        for endpoint in ("token", "revocation", "introspection")
    }


def resource_metadata(settings: Settings) -> dict[str, Any]:
    """RFC 9728 §4: ``protected_resources``, the resources (RFC 8707) a token may be asked
    for with ``resource=``; absent when there are none (STOREFRONT_RESOURCES)."""
    if not settings.resources:
        return {}
    return {"protected_resources": list(settings.resources)}
