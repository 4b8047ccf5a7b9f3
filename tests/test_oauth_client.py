"""A real OAuth 2.0 client library, authlib, against a real ``storefront serve`` over HTTP.

The client knows the issuer and its own credentials, nothing else: it reads the endpoints from
the RFC 8414 document (which authlib's own validator accepts), fetches a token with
client_credentials, uses it, introspects it (RFC 7662), revokes it (RFC 7009) and sees it
refused afterwards; once with each client authentication method the document advertises
(``client_secret_basic``, ``client_secret_post``). On SQLite and PostgreSQL, with tokens
signed with an asymmetric key (EdDSA, published in the JWKS) and with a shared secret (HS256).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from tests.servers import Server, clean_env, free_port, serving, storefront_json

AUDIENCE = "orders-api"
TOKEN_TTL = 3600  # the default STOREFRONT_TOKEN_TTL
METHODS = ("client_secret_basic", "client_secret_post")


@pytest.fixture(params=["EdDSA", "HS256"])
def algorithm(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def server(database_env: dict[str, str], algorithm: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose issuer is its own URL, so that its metadata is a conforming RFC 8414
    document (an http(s) issuer, absolute endpoint URLs derived from it)."""
    port = free_port()
    env = clean_env(
        **database_env,
        STOREFRONT_JWT_ALGORITHM=algorithm,
        STOREFRONT_ISSUER=f"http://127.0.0.1:{port}",
        STOREFRONT_AUDIENCE=AUDIENCE,
        STOREFRONT_KEY_DIR=str(tmp_path / "keys"),
    )
    with serving(tmp_path, env, port=port) as running:
        yield running


def discover(issuer: str) -> AuthorizationServerMetadata:
    """RFC 8414 §3: the metadata sits at the issuer's /.well-known/oauth-authorization-server."""
    answer = httpx.get(f"{issuer}/.well-known/oauth-authorization-server")
    assert answer.status_code == 200, answer.text
    metadata = AuthorizationServerMetadata(answer.json())
    # authlib's RFC 8414 checks (https or loopback URLs, the required members), all but one:
    # authlib takes the empty response_types_supported (no authorization endpoint, so no
    # response type) for a missing one. The member is there; what it holds is pinned here.
    assert metadata["response_types_supported"] == []
    for member in AuthorizationServerMetadata.REGISTRY_KEYS:
        if member != "response_types_supported":
            getattr(metadata, f"validate_{member}")()
    assert metadata["issuer"] == issuer
    return metadata


def new_client(server: Server, name: str, scopes: str) -> dict[str, str]:
    return storefront_json(server.env, "clients", "create", "--name", name, "--scopes", scopes)


def oauth_client(credentials: dict[str, str], method: str, sent: list[httpx2.Request]) -> Any:
    """authlib's httpx client (built on httpx2 where installed), authenticating with ``method``
    at every endpoint; each request it sends, as it went on the wire, is appended to ``sent``."""
    return OAuth2Client(
        client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        event_hooks={"request": [sent.append]},
        timeout=30,
    )


def assert_authenticated_with(request: httpx2.Request, method: str, client_id: str) -> None:
    form = dict(httpx2.QueryParams(request.content.decode()))
    basic = request.headers.get("authorization", "").startswith("Basic ")
    # The Basic header or the form fields, never both.
    used = (basic, form.get("client_id"), "client_secret" in form)
    if method == "client_secret_basic":
        assert used == (True, None, False), form
    else:
        assert used == (False, client_id, True), form


def claims_of(token: str, metadata: AuthorizationServerMetadata, algorithm: str) -> Any:
    """The token's claims, checked through the JWKS alone when the key is public."""
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == (algorithm, "at+jwt")
    keys = httpx.get(metadata["jwks_uri"]).json()["keys"]
    if algorithm == "HS256":
        assert keys == []  # a shared secret is never published
        return jwt.decode(token, options={"verify_signature": False})
    assert header["kid"] in [key["kid"] for key in keys]
    key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(
        token, key.key, algorithms=[algorithm], audience=AUDIENCE, issuer=metadata["issuer"]
    )


def test_an_oauth_client_discovers_fetches_uses_introspects_and_revokes_tokens(
    server: Server, algorithm: str
) -> None:
    metadata = discover(server.base)
    assert metadata["grant_types_supported"] == ["client_credentials"]
    # One client per authentication method: each walks a token's whole life, then they try
    # each other's tokens.
    basic, post = (new_client(server, method, "read write") for method in METHODS)
    for credentials, method in [(basic, "client_secret_basic"), (post, "client_secret_post")]:
        for endpoint in ("token", "revocation", "introspection"):
            assert method in metadata[f"{endpoint}_endpoint_auth_methods_supported"]
        a_token_from_issue_to_revocation(server, metadata, algorithm, credentials, method)
    a_client_cannot_revoke_another_clients_token(server, metadata, algorithm, basic, post)


def a_token_from_issue_to_revocation(
    server: Server,
    metadata: AuthorizationServerMetadata,
    algorithm: str,
    credentials: dict[str, str],
    method: str,
) -> None:
    client_id = credentials["client_id"]
    users = f"{server.base}/users"  # a protected route: not in the metadata, the API's own
    sent: list[httpx2.Request] = []

    with oauth_client(credentials, method, sent) as oauth:
        before = int(time.time())
        token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        after = int(time.time())
        assert sent[-1].url == metadata["token_endpoint"]
        assert_authenticated_with(sent[-1], method, client_id)
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == TOKEN_TTL
        assert token["scope"] == "read write"
        access_token = token["access_token"]
        claims = claims_of(access_token, metadata, algorithm)

        # authlib sends the token as a bearer header on the API's routes.
        email = f"{method}@example.com"
        created = oauth.post(users, json={"name": method, "email": email, "password": "pw-123456"})
        assert created.status_code == 201, created.text
        assert sent[-1].headers["authorization"] == f"Bearer {access_token}"
        listed = oauth.get(users, params={"limit": 100})
        assert listed.status_code == 200, listed.text
        assert (method, email) in [(u["name"], u["email"]) for u in listed.json()]
        assert int(listed.headers["x-total-count"]) == len(listed.json())

        introspected = oauth.introspect_token(metadata["introspection_endpoint"], access_token)
        assert_authenticated_with(sent[-1], method, client_id)
        assert introspected.status_code == 200
        assert introspected.headers["cache-control"] == "no-store"
        body = introspected.json()
        assert body == {
            "active": True,
            "scope": "read write",
            "client_id": client_id,
            "sub": client_id,
            "iss": server.base,
            "aud": AUDIENCE,
            "token_type": "Bearer",
            "jti": claims["jti"],
            "iat": claims["iat"],
            "exp": claims["iat"] + TOKEN_TTL,
        }
        assert before <= body["iat"] <= after
        assert len(body["jti"]) >= 16

        revoked = oauth.revoke_token(
            metadata["revocation_endpoint"], access_token, token_type_hint="access_token"
        )
        assert_authenticated_with(sent[-1], method, client_id)
        assert (revoked.status_code, revoked.json()) == (200, {})
        assert revoked.headers["cache-control"] == "no-store"

        refused = oauth.get(users)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert refused.json()["error"] == "Unauthorized"
        gone = oauth.introspect_token(metadata["introspection_endpoint"], access_token)
        assert (gone.status_code, gone.json()) == (200, {"active": False})

        # RFC 7009 §2.2: an unknown token is answered like a revoked one.
        unknown = oauth.revoke_token(metadata["revocation_endpoint"], "not-a-token-of-ours")
        assert (unknown.status_code, unknown.json()) == (200, {})


def a_client_cannot_revoke_another_clients_token(
    server: Server,
    metadata: AuthorizationServerMetadata,
    algorithm: str,
    mine: dict[str, str],
    theirs: dict[str, str],
) -> None:
    sent: list[httpx2.Request] = []
    with (
        oauth_client(mine, "client_secret_basic", sent) as me,
        oauth_client(theirs, "client_secret_post", sent) as them,
    ):
        their_token = them.fetch_token(metadata["token_endpoint"])["access_token"]
        me.fetch_token(metadata["token_endpoint"])

        # The same 200 as for any token (the answer reveals nothing), and nothing revoked.
        answer = me.revoke_token(metadata["revocation_endpoint"], their_token)
        assert (answer.status_code, answer.json()) == (200, {})
        assert them.get(f"{server.base}/users").status_code == 200
        # Nor may it look at the token: without the introspect scope, not its own is inactive.
        peek = me.introspect_token(metadata["introspection_endpoint"], their_token)
        assert peek.json() == {"active": False}
        still = them.introspect_token(metadata["introspection_endpoint"], their_token).json()
        assert still["active"] is True
        assert still["client_id"] == theirs["client_id"]
        assert claims_of(their_token, metadata, algorithm)["jti"] == still["jti"]
