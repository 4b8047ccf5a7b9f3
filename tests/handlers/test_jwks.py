"""GET /.well-known/jwks.json: the public keys a resource server verifies our tokens with."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.utils import base64url_encode
from starlette.testclient import TestClient

from core.settings import Settings
from storefront import admin
from storefront.access.signing import refresh_window
from storefront.app import create_app
from storefront.keyring import rotate_signing_key
from tests.conftest import JWT_SECRET

MakeClient = Callable[..., admin.NewClient]


@pytest.fixture(params=["EdDSA", "ES256"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return settings.model_copy(update={"jwt_algorithm": request.param})


def test_jwks_publishes_the_key_that_signs_tokens(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: Callable[..., str]
) -> None:
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    # No longer than the refresh window (STOREFRONT_AUTH_CACHE_TTL, at least 1 s).
    assert response.headers["cache-control"] == "public, max-age=1"
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = api.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=1"
    other = api.get("/.well-known/jwks.json", headers={"If-None-Match": '"0123"'})
    assert other.status_code == 200
    assert other.json() == response.json()
    keys = response.json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert key["alg"] == settings.jwt_algorithm
    assert key["use"] == "sig"
    assert key["kty"] == ("OKP" if settings.jwt_algorithm == "EdDSA" else "EC")
    assert "d" not in key  # the private part never leaves
    assert JWT_SECRET not in response.text

    token = token_for(make_client("read"))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": settings.jwt_algorithm, "kid": key["kid"], "typ": "at+jwt"}
    public = jwt.PyJWK(key)
    claims = jwt.decode(
        token,
        public.key,
        algorithms=[settings.jwt_algorithm],
        audience=settings.audience,
        issuer=settings.issuer,
    )
    assert claims["scope"] == "read"


def test_asymmetric_tokens_are_accepted_and_forgeries_refused(
    api: TestClient, make_client: MakeClient, token_for: Callable[..., str], settings: Settings
) -> None:
    client = make_client("read")
    token = token_for(client)
    assert api.get("/users", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    # Same header and claims, signed by a key of the same kind that is not ours.
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    if settings.jwt_algorithm == "EdDSA":
        other: object = ed25519.Ed25519PrivateKey.generate()
    else:
        other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, other, algorithm=settings.jwt_algorithm, headers=header)  # type: ignore[arg-type]
    response = api.get("/users", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]

    # HS256 with the published public key as the secret: the algorithm is pinned.
    jwk = api.get("/.well-known/jwks.json").json()["keys"][0]
    # (built by hand: PyJWT itself refuses to use a JWK as an HMAC secret)
    head = {"alg": "HS256", "kid": jwk["kid"], "typ": "at+jwt"}
    signing_input = b".".join(
        base64url_encode(json.dumps(part).encode())
        for part in (head, {**claims, "exp": int(time.time()) + 60})
    )
    mac = hmac.new(json.dumps(jwk).encode(), signing_input, hashlib.sha256).digest()
    confused = (signing_input + b"." + base64url_encode(mac)).decode()
    response = api.get("/users", headers={"Authorization": f"Bearer {confused}"})
    assert response.status_code == 401


def test_hs256_publishes_an_empty_key_set(app_hs256: TestClient) -> None:
    response = app_hs256.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}
    assert JWT_SECRET not in response.text


@pytest.fixture
def app_hs256(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"jwt_algorithm": "HS256"}))
    with app.test_client() as client:
        yield client


def test_a_new_database_signs_with_eddsa_by_default(
    backend: str, direct_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=direct_database_url,
        key_dir=tmp_path / "keys",
    )
    with create_app(settings).test_client() as api:
        (key,) = api.get("/.well-known/jwks.json").json()["keys"]
    assert (key["alg"], key["kty"], key["crv"]) == ("EdDSA", "OKP", "Ed25519")


def test_a_rotation_publishes_the_new_key_first_and_keeps_the_old_one(
    api: TestClient, settings: Settings, make_client: MakeClient, token_for: Callable[..., str]
) -> None:
    client = make_client("read")
    before = token_for(client)
    first = api.get("/.well-known/jwks.json")
    (old_key,) = first.json()["keys"]

    rotated = rotate_signing_key(settings, algorithm="ES256")
    time.sleep(refresh_window(settings))  # this instance's copy of the keys gets stale
    response = api.get("/.well-known/jwks.json", headers={"If-None-Match": first.headers["etag"]})
    assert response.status_code == 200  # another key set: another tag
    assert response.headers["etag"] != first.headers["etag"]
    new_key, still = response.json()["keys"]
    assert (new_key["kid"], new_key["alg"], new_key["kty"]) == (rotated.kid, "ES256", "EC")
    assert still == old_key
    # Pending: published, not yet signing; the old key signs and verifies.
    during = token_for(client)
    assert jwt.get_unverified_header(during)["kid"] == old_key["kid"]
    for token in (before, during):
        assert api.get("/products", headers={"Authorization": f"Bearer {token}"}).status_code == 200
