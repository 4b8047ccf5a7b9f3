"""Another service trusting our tokens through the JWKS alone, against a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.servers import clean_env, serving, storefront, storefront_json


def test_a_resource_server_verifies_tokens_with_the_jwks_only(tmp_path: Path) -> None:
    env = clean_env(
        STOREFRONT_DATABASE_URL=f"sqlite:///{tmp_path / 'shop.db'}",
        STOREFRONT_JWT_ALGORITHM="EdDSA",
    )
    storefront(env, "db", "upgrade")
    client = storefront_json(env, "clients", "create", "--name", "shop", "--scopes", "read")
    with serving(tmp_path, env) as server:
        form = {"grant_type": "client_credentials", **client}
        token = httpx.post(f"{server.base}/auth/token", data=form).json()["access_token"]

        # The resource server knows only the JWKS URL, the issuer and its audience.
        keys = jwt.PyJWKClient(f"{server.base}/.well-known/jwks.json")
        key = keys.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA"],
            audience="storefront-api",
            issuer="storefront-api",
        )
        assert claims["client_id"] == client["client_id"]
        assert claims["scope"] == "read"

        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(
            {**unverified, "scope": "read write"},
            ed25519.Ed25519PrivateKey.generate(),
            algorithm="EdDSA",
            headers=header,
        )
        key = keys.get_signing_key_from_jwt(forged)  # the kid is ours: the key is found
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(forged, key.key, algorithms=["EdDSA"], audience="storefront-api")
