"""Who is calling: RFC 9068 bearer tokens, API keys, and the RFC 6750 challenges."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from httpx2 import Response
from jwt.warnings import InsecureKeyLengthWarning
from starlette.testclient import TestClient

from core.crypto import REQUIRED_CLAIMS
from core.settings import Settings
from persistence import clients
from storefront import admin

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack

MakeClient = Callable[..., admin.NewClient]
MakeKey = Callable[[str], admin.NewApiKey]
NEW_USER = {"name": "A", "email": "a@example.com", "password": "password1"}


def signing_key(settings: Settings) -> bytes:
    assert settings.jwt_secret is not None
    return settings.jwt_secret.get_secret_value().encode()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class Forger:
    """Builds tokens the way the server does, with one thing changed at a time."""

    def __init__(self, settings: Settings, client_id: str, kid: str) -> None:
        self.key = signing_key(settings)
        self.settings = settings
        self.client_id = client_id
        self.kid = kid

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.settings.issuer,
            "sub": self.client_id,
            "aud": self.settings.audience,
            "exp": now + 600,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "client_id": self.client_id,
            "scope": "read write",
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def token(
        self,
        *,
        key: bytes | None = None,
        algorithm: str = "HS256",
        header: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        headers = {"typ": "at+jwt", "kid": self.kid, **(header or {})}
        headers = {name: value for name, value in headers.items() if value is not None}
        with warnings.catch_warnings():
            # The test key is shorter than HS384/HS512 recommend; those tokens are refused anyway.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(
                self.claims(**changes), key or self.key, algorithm=algorithm, headers=headers
            )

    def unsigned(self, **changes: Any) -> str:
        header = {"alg": "none", "typ": "at+jwt", "kid": self.kid}
        return f"{b64url(header)}.{b64url(self.claims(**changes))}."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """HS256, explicitly: these tests forge tokens with the shared secret, one thing changed at
    a time (tests/handlers/test_jwks.py forges EdDSA and ES256 ones)."""
    return settings.model_copy(update={"jwt_algorithm": "HS256"})


@pytest.fixture
def client(make_client: MakeClient) -> admin.NewClient:
    return make_client("read write")


@pytest.fixture
def forger(settings: Settings, client: admin.NewClient, token_for: Callable[..., str]) -> Forger:
    kid = jwt.get_unverified_header(token_for(client))["kid"]
    return Forger(settings, client.client_id, kid)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: Response, *, error: str | None = "invalid_token") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error", "message"}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer"), challenge
    if error is None:
        assert "error=" not in challenge, challenge
    else:
        assert f'error="{error}"' in challenge, challenge


def assert_insufficient_scope(response: Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"]
    assert body["message"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer"), challenge
    assert 'error="insufficient_scope"' in challenge, challenge
    assert f'scope="{scope}"' in challenge, challenge


# --- the tokens this server issues --------------------------------------------------------


def test_access_tokens_follow_rfc_9068(
    api: TestClient, settings: Settings, client: admin.NewClient, token_for: Callable[..., str]
) -> None:
    token = token_for(client)
    header = jwt.get_unverified_header(token)
    assert header["typ"].lower() in {"at+jwt", "application/at+jwt"}
    assert header["alg"] == "HS256"
    assert isinstance(header["kid"], str)
    assert header["kid"]

    claims = jwt.decode(
        token,
        signing_key(settings),
        algorithms=["HS256"],
        audience=settings.audience,
        issuer=settings.issuer,
        options={"require": REQUIRED_CLAIMS},
    )
    assert set(REQUIRED_CLAIMS) <= set(claims)
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} <= set(claims)
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] <= time.time() + 5

    again = jwt.decode(
        token_for(client, scope="read"),
        signing_key(settings),
        algorithms=["HS256"],
        audience=settings.audience,
        issuer=settings.issuer,
    )
    assert again["jti"] != claims["jti"]
    assert again["scope"] == "read"


def test_a_forged_token_like_the_servers_is_accepted(api: TestClient, forger: Forger) -> None:
    # The control for the tests below: each changes one thing of this token.
    assert api.get("/users", headers=bearer(forger.token())).status_code == 200


# --- tokens that must be refused ----------------------------------------------------------


def test_invalid_tokens_are_401_invalid_token(
    api: TestClient, forger: Forger, subtests: pytest.Subtests
) -> None:
    now = int(time.time())
    valid = forger.token()
    head, payload, signature = valid.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    cases = {
        "alg none": forger.unsigned(),
        "alg none, signature kept": forger.unsigned() + signature,
        "HS512 with the right key": forger.token(algorithm="HS512"),
        "HS384 with the right key": forger.token(algorithm="HS384"),
        "wrong key": forger.token(key=b"another-key-of-sufficient-length-0123456789"),
        "typ JWT": forger.token(header={"typ": "JWT"}),
        "no typ": forger.token(header={"typ": None}),
        "wrong kid": forger.token(header={"kid": "not-the-kid"}),
        "wrong audience": forger.token(aud="someone-else"),
        "wrong issuer": forger.token(iss="https://evil.example"),
        "expired": forger.token(exp=now - 120, iat=now - 3720),
        "sub is not client_id": forger.token(sub="cli_someoneelse"),
        "scope not a string": forger.token(scope=["read", "write"]),
        "unknown client": forger.token(sub="cli_doesnotexist", client_id="cli_doesnotexist"),
        "tampered signature": f"{head}.{payload}.{flipped}",
        "payload swapped": f"{head}.{b64url(forger.claims(scope='read write admin'))}.{signature}",
        "garbage": "garbage",
        "three dots of garbage": "a.b.c",
        "not base64": "@@@.###.$$$",
    }
    for claim in REQUIRED_CLAIMS:
        cases[f"no {claim}"] = forger.token(**{claim: None})
    for name, token in cases.items():
        with subtests.test(name):
            assert_unauthorized(api.get("/users", headers=bearer(token)))


def test_no_credentials_is_a_bare_bearer_challenge(api: TestClient) -> None:
    response = api.get("/users")
    assert_unauthorized(response, error=None)
    assert_unauthorized(api.post("/users", json=NEW_USER), error=None)


def test_a_token_in_the_query_string_is_never_read(
    api: TestClient, client: admin.NewClient, token_for: Callable[..., str]
) -> None:
    token = token_for(client)
    response = api.get("/users", params={"access_token": token})
    assert response.status_code in {400, 401}, response.text
    assert set(response.json()) == {"error", "message"}
    form = api.post(
        "/users",
        params={"access_token": token},
        json=NEW_USER,
    )
    assert form.status_code in {400, 401}, form.text


def test_a_token_without_the_scope_is_403(
    api: TestClient, make_client: MakeClient, token_for: Callable[..., str]
) -> None:
    reader = make_client("read")
    response = api.post("/users", headers=bearer(token_for(reader)), json=NEW_USER)
    assert_insufficient_scope(response, "users:write")
    writer = make_client("read write")
    response = api.get("/users", headers=bearer(token_for(writer, scope="write")))
    assert_insufficient_scope(response, "users:read")


# --- API keys -----------------------------------------------------------------------------


def test_api_keys_in_either_header(
    api: TestClient, client: admin.NewClient, make_api_key: MakeKey
) -> None:
    key = make_api_key(client.client_id).api_key
    assert key.startswith("sk_")
    for headers in (bearer(key), {"X-API-Key": key}):
        assert api.get("/users", headers=headers).status_code == 200
    created = api.post("/users", headers={"X-API-Key": key}, json=NEW_USER)
    assert created.status_code == 201, created.text
    other = {**NEW_USER, "email": "b@example.com"}
    assert api.post("/users", headers=bearer(key), json=other).status_code == 201


def test_more_than_one_credential_field_is_refused(
    api: TestClient,
    client: admin.NewClient,
    make_api_key: MakeKey,
    token_for: Callable[..., str],
    subtests: pytest.Subtests,
) -> None:
    key = make_api_key(client.client_id).api_key
    token = f"Bearer {token_for(client)}"
    for name, fields in {
        "a token and a key": [("Authorization", token), ("X-API-Key", key)],
        "two Authorization": [("Authorization", token), ("Authorization", token)],
        "a token, then a bad one": [("Authorization", token), ("Authorization", "Bearer x")],
        "two X-API-Key": [("X-API-Key", key), ("X-API-Key", key)],
    }.items():
        with subtests.test(name):
            response = api.get("/users", headers=fields)
            assert_unauthorized(response)
            assert "one Authorization or one X-API-Key" in response.json()["message"]


def test_api_keys_carry_their_clients_scopes(
    api: TestClient, make_client: MakeClient, make_api_key: MakeKey
) -> None:
    key = make_api_key(make_client("read").client_id).api_key
    for headers in (bearer(key), {"X-API-Key": key}):
        assert api.get("/users", headers=headers).status_code == 200
        assert_insufficient_scope(api.post("/users", headers=headers, json=NEW_USER), "users:write")
        deleting = api.delete("/users/user_abcdefghijkl", headers=headers)
        assert_insufficient_scope(deleting, "users:write")

    write_only = make_api_key(make_client("write").client_id).api_key
    for headers in (bearer(write_only), {"X-API-Key": write_only}):
        assert_insufficient_scope(api.get("/products", headers=headers), "products:read")


def test_bad_api_keys_are_401(
    api: TestClient, client: admin.NewClient, make_api_key: MakeKey, subtests: pytest.Subtests
) -> None:
    real = make_api_key(client.client_id).api_key
    for name, key in {
        "unknown sk_ key": "sk_" + "A" * 43,
        "the key with another prefix": "pk_" + real.removeprefix("sk_"),
        "the key without its prefix": real.removeprefix("sk_"),
        "the key truncated": real[:-1],
        "the key in another case": real.swapcase(),
    }.items():
        for header in ("Authorization", "X-API-Key"):
            with subtests.test(name, header=header):
                value = f"Bearer {key}" if header == "Authorization" else key
                assert_unauthorized(api.get("/users", headers={header: value}))


def test_a_revoked_key_stops_working_within_the_auth_cache_ttl(
    api: TestClient, client: admin.NewClient, make_api_key: MakeKey, settings: Settings
) -> None:
    revoked = make_api_key(client.client_id)
    kept = make_api_key(client.client_id)
    assert api.get("/users", headers={"X-API-Key": revoked.api_key}).status_code == 200
    assert api.get("/users", headers=bearer(revoked.api_key)).status_code == 200

    admin.run(settings, lambda s: clients.revoke_api_key(s, key_id=revoked.key_id))
    time.sleep(settings.auth_cache_ttl)

    assert_unauthorized(api.get("/users", headers={"X-API-Key": revoked.api_key}))
    assert_unauthorized(api.get("/users", headers=bearer(revoked.api_key)))
    assert api.get("/users", headers={"X-API-Key": kept.api_key}).status_code == 200


def test_keys_and_tokens_of_a_disabled_client_stop_working(
    api: TestClient,
    client: admin.NewClient,
    make_api_key: MakeKey,
    settings: Settings,
    token_for: Callable[..., str],
) -> None:
    key = make_api_key(client.client_id).api_key
    token = token_for(client)
    assert api.get("/users", headers={"X-API-Key": key}).status_code == 200

    admin.run(settings, lambda s: clients.disable_client(s, client_id=client.client_id))
    time.sleep(settings.auth_cache_ttl)

    assert_unauthorized(api.get("/users", headers={"X-API-Key": key}))
    assert_unauthorized(api.get("/users", headers=bearer(key)))
    assert_unauthorized(api.get("/users", headers=bearer(token)))


def test_a_basic_header_on_a_bearer_route_gets_a_challenge_without_an_error_code(
    api: TestClient,
) -> None:
    response = api.get("/users", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert "error=" not in challenge
