"""POST /auth/revoke (RFC 7009) and POST /auth/introspect (RFC 7662)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from core.crypto import ScheduledKey, TokenCodec, new_private_key
from core.settings import Settings
from persistence import clients, revocations
from storefront import admin
from storefront.app import create_app
from tests.handlers.test_auth import assert_oauth_error, basic
from tests.helpers import db_rows, server_signing_key

MakeClient = Callable[..., admin.NewClient]
TokenFor = Callable[..., str]


def creds(client: admin.NewClient) -> dict[str, str]:
    return {"client_id": client.client_id, "client_secret": client.client_secret}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def revoke(api: TestClient, client: admin.NewClient, token: str) -> None:
    response = api.post("/auth/revoke", data={"token": token, **creds(client)})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"


def introspect(api: TestClient, client: admin.NewClient, token: str) -> dict[str, Any]:
    response = api.post("/auth/introspect", data={"token": token, **creds(client)})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def wait_past_cache(settings: Settings) -> None:
    time.sleep(settings.auth_cache_ttl + 0.05)


def test_a_revoked_token_is_refused_here_at_once_and_elsewhere_within_the_ttl(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("read")
    token = token_for(client)
    with create_app(settings).test_client() as other_instance:
        # Both instances have seen the token as good: it is in their caches. The one that
        # takes the revocation forgets it there; the other asks again once its entry is old.
        assert other_instance.get("/users", headers=bearer(token)).status_code == 200
        assert api.get("/users", headers=bearer(token)).status_code == 200
        revoke(api, client, token)
        response = api.get("/users", headers=bearer(token))
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert "revoked" in response.json()["message"]
        wait_past_cache(settings)
        assert other_instance.get("/users", headers=bearer(token)).status_code == 401
    # Another token of the same client is untouched.
    assert api.get("/users", headers=bearer(token_for(client))).status_code == 200


def test_revoke_with_http_basic(
    api: TestClient, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("read")
    token = token_for(client)
    response = api.post(
        "/auth/revoke", data={"token": token}, headers=basic(client.client_id, client.client_secret)
    )
    assert response.status_code == 200, response.text
    assert api.get("/users", headers=bearer(token)).status_code == 401


def test_a_client_cannot_revoke_another_clients_token_and_learns_nothing(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: TokenFor
) -> None:
    owner, stranger = make_client("read"), make_client("read")
    token = token_for(owner)
    revoke(api, stranger, token)
    revoke(api, stranger, "not-a-token")  # the same 200 for garbage
    wait_past_cache(settings)
    assert api.get("/users", headers=bearer(token)).status_code == 200
    assert db_rows(settings, "SELECT jti FROM revoked_tokens") == []


def test_revoke_refuses_bad_client_credentials_and_a_missing_token(
    api: TestClient, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("read")
    token = token_for(client)
    wrong = {"token": token, "client_id": client.client_id, "client_secret": "wrong"}
    for path in ("/auth/revoke", "/auth/introspect"):
        assert_oauth_error(api.post(path, data=wrong), 401, "invalid_client")
        assert_oauth_error(api.post(path, data=creds(client)), 400, "invalid_request")
    assert api.get("/users", headers=bearer(token)).status_code == 200


def test_the_list_keeps_entries_only_until_their_tokens_expire(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("read")
    past = int(time.time()) - 60
    admin.run(
        settings,
        lambda s: revocations.revoke(s, jti="old", client_id=client.client_id, expires_at=past),
    )
    token = token_for(client)
    revoke(api, client, token)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    rows = db_rows(settings, "SELECT jti, expires_at FROM revoked_tokens")
    assert [row[0] for row in rows] == [jti]  # the expired entry was purged by this revocation
    expires = rows[0][1]
    if isinstance(expires, str):  # SQLite keeps it as text
        expires = datetime.fromisoformat(expires)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert exp < expires.replace(tzinfo=UTC).timestamp() <= exp + 10


def test_introspecting_an_own_active_token(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("read write")
    token = token_for(client, "read")
    body = introspect(api, client, token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert body == {
        "active": True,
        "scope": "read",
        "client_id": client.client_id,
        "sub": client.client_id,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "iss": settings.issuer,
        "aud": settings.audience,
        "token_type": "Bearer",
        "jti": claims["jti"],
    }


def test_introspection_shows_a_resource_scope_as_granted(
    api: TestClient, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("read write")
    body = introspect(api, client, token_for(client, "products:read users:read"))
    assert body["active"] is True
    assert body["scope"] == "users:read products:read"


def test_inactive_tokens(
    api: TestClient,
    settings: Settings,
    make_client: MakeClient,
    token_for: TokenFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client("read")
    revoked = token_for(client)
    revoke(api, client, revoked)
    header = jwt.get_unverified_header(revoked)
    forged = jwt.encode(  # the same header, signed by another key of the same kind
        jwt.decode(revoked, options={"verify_signature": False}),
        new_private_key(header["alg"]),
        algorithm=header["alg"],
        headers=header,
    )
    codec = TokenCodec(issuer=settings.issuer, audience=settings.audience, ttl=60)
    codec.install([ScheduledKey(server_signing_key(settings))])  # the server's own key
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: 1_000_000_000.0)
        expired = codec.issue(client_id=client.client_id, scopes=["read"]).access_token
    for name, token in {"revoked": revoked, "forged": forged, "expired": expired}.items():
        assert introspect(api, client, token) == {"active": False}, name


def test_who_may_introspect_whose_tokens(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: TokenFor
) -> None:
    owner = make_client("read")
    stranger = make_client("read write")
    resource_server = make_client("introspect")
    token = token_for(owner)
    assert introspect(api, stranger, token) == {"active": False}
    seen = introspect(api, resource_server, token)
    assert seen["active"] is True
    assert seen["client_id"] == owner.client_id

    admin.run(settings, lambda s: clients.disable_client(s, client_id=owner.client_id))
    wait_past_cache(settings)
    assert introspect(api, resource_server, token) == {"active": False}
