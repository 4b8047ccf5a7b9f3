"""GET /.well-known/oauth-authorization-server: RFC 8414 metadata, never built from Host."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from storefront.app import create_app

ENDPOINTS = ("token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint")


def metadata(api: TestClient, **headers: str) -> dict[str, object]:
    response = api.get("/.well-known/oauth-authorization-server", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"].startswith("public, max-age=")
    body: dict[str, object] = response.json()
    return body


def test_metadata_without_a_public_url_uses_relative_references(api: TestClient) -> None:
    body = metadata(api, host="evil.example")
    assert body["issuer"] == "storefront-api"  # the tokens' iss, exactly
    assert {name: body[name] for name in ENDPOINTS} == {
        "token_endpoint": "/auth/token",
        "jwks_uri": "/.well-known/jwks.json",
        "revocation_endpoint": "/auth/revoke",
        "introspection_endpoint": "/auth/introspect",
    }
    assert body["grant_types_supported"] == ["client_credentials"]
    methods = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    algorithms = ["RS256", "PS256", "ES256", "EdDSA"]  # never none nor an HMAC
    for endpoint in ("token", "revocation", "introspection"):
        assert body[f"{endpoint}_endpoint_auth_methods_supported"] == methods
        assert body[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == algorithms
    assert body["scopes_supported"] == [
        "read",
        "write",
        "users:read",
        "users:write",
        "products:read",
        "products:write",
    ]
    assert "evil.example" not in str(body)


@pytest.mark.parametrize(
    ("changes", "base", "issuer"),
    [
        ({"public_url": "https://api.example.com"}, "https://api.example.com", "storefront-api"),
        ({"issuer": "https://auth.example.com/"}, "https://auth.example.com", None),
        (
            {"public_url": "https://api.example.com/v", "issuer": "https://auth.example.com"},
            "https://api.example.com/v",
            None,
        ),
    ],
)
def test_metadata_urls_come_from_the_settings_not_from_host(
    settings: Settings, changes: dict[str, str], base: str, issuer: str | None
) -> None:
    with create_app(settings.model_copy(update=changes)).test_client() as api:
        body = metadata(api, host="evil.example")
    assert body["issuer"] == (issuer or changes["issuer"])
    assert body["token_endpoint"] == f"{base}/auth/token"
    assert body["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert body["revocation_endpoint"] == f"{base}/auth/revoke"
    assert body["introspection_endpoint"] == f"{base}/auth/introspect"


def test_the_advertised_jwks_uri_serves_the_key_set(settings: Settings) -> None:
    changed = settings.model_copy(
        update={"public_url": "https://api.example.com", "jwt_algorithm": "EdDSA"}
    )
    with create_app(changed).test_client() as api:
        jwks_uri = str(metadata(api)["jwks_uri"])
        path = jwks_uri.removeprefix("https://api.example.com")
        keys = api.get(path).json()["keys"]
    assert [key["alg"] for key in keys] == ["EdDSA"]
