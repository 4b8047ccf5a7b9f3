"""Rotating the signing key through the command while two server processes run: no token is
refused on the way, both instances agree on the new key, the JWKS of both lists both keys, and
a resource server verifies the new tokens from the JWKS alone.

Retirement (hours later with the default STOREFRONT_TOKEN_TTL) is tested with an injected
clock in tests/access/test_signing.py and tests/core/test_crypto.py.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import REDIS_URL, require_service
from tests.servers import (
    deployment_env,
    instances,
    run_storefront,
    storefront,
    storefront_json,
)


@pytest.fixture
def env(database_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    require_service(REDIS_URL, 6379)
    return deployment_env(
        rate_limit_storage_url=REDIS_URL,
        key_dir=tmp_path / "unused-keys",
        STOREFRONT_LOG_LEVEL="warning",
        **database_env,
    )


def _listing(env: dict[str, str]) -> list[dict[str, str]]:
    listed: list[dict[str, str]] = json.loads(storefront(env, "keys", "list-signing", "--json"))
    return listed


def _kids(base: str) -> list[str]:
    return [key["kid"] for key in httpx.get(f"{base}/.well-known/jwks.json").json()["keys"]]


def test_rotation_under_two_running_instances(env: dict[str, str]) -> None:
    storefront(env, "db", "upgrade")
    client = storefront_json(env, "clients", "create", "--name", "rs", "--scopes", "read")
    form = {"grant_type": "client_credentials", **client}
    (first,) = _listing(env)
    assert (first["algorithm"], first["state"], first["published"]) == ("EdDSA", "active", True)

    with instances(env) as bases:
        one, two = bases
        old = httpx.post(f"{one}/auth/token", data=form).json()["access_token"]
        assert jwt.get_unverified_header(old)["kid"] == first["kid"]

        rotated = storefront_json(env, "keys", "rotate-signing", "--algorithm", "ES256")
        assert rotated["algorithm"] == "ES256"
        assert [p["kid"] for p in rotated["previous"]] == [first["kid"]]
        states = {row["kid"]: row["state"] for row in _listing(env)}
        assert states == {first["kid"]: "active", rotated["kid"]: "pending"}

        # Both publish the new key within the refresh window, before it signs anything.
        time.sleep(1.0)
        for base in bases:
            assert _kids(base) == [rotated["kid"], first["kid"]]
        activates = datetime.fromisoformat(rotated["activates_at"]).timestamp()
        time.sleep(max(0.0, activates - time.time()) + 0.5)

        # After the switch: each instance signs with the new key, the other one accepts it,
        # and the token from before still works on both.
        for signer, verifier in [(one, two), (two, one)]:
            new = httpx.post(f"{signer}/auth/token", data=form).json()["access_token"]
            assert jwt.get_unverified_header(new) == {
                "alg": "ES256",
                "kid": rotated["kid"],
                "typ": "at+jwt",
            }
            for token in (new, old):
                response = httpx.get(
                    f"{verifier}/products", headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200, response.text

            # A resource server, with the JWKS URL alone.
            keys = jwt.PyJWKClient(f"{verifier}/.well-known/jwks.json", cache_keys=False)
            for token, algorithm in [(new, "ES256"), (old, "EdDSA")]:
                key = keys.get_signing_key_from_jwt(token)
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    audience="storefront-api",
                    issuer="storefront-api",
                )
                assert claims["client_id"] == client["client_id"]
        states = {row["kid"]: row["state"] for row in _listing(env)}
        assert states == {first["kid"]: "previous", rotated["kid"]: "active"}
        for base in bases:
            assert _kids(base) == [rotated["kid"], first["kid"]]


def test_the_signing_key_commands(env: dict[str, str]) -> None:
    storefront(env, "db", "upgrade")
    # A database nothing has started on yet: the rotation makes the first key, then the next.
    out = storefront(env, "keys", "rotate-signing", "--algorithm", "HS256")
    lines = out.splitlines()
    assert lines[0].startswith("new signing key ")
    assert "(HS256), signs from " in lines[0]
    assert lines[1].startswith("previous key ")
    assert "then retires" in lines[1]
    table = storefront(env, "keys", "list-signing").splitlines()
    assert table[0].split() == [
        "KID",
        "ALGORITHM",
        "STATE",
        "SIGNS",
        "FROM",
        "SIGNS",
        "UNTIL",
        "RETIRES",
    ]
    assert [line.split()[1:3] for line in table[1:]] == [["EdDSA", "active"], ["HS256", "pending"]]

    # A wrong key-encryption key is refused with one line naming the setting.
    wrong = {**env, "STOREFRONT_JWT_SECRET": secrets.token_urlsafe(48)}
    for argv in (["keys", "list-signing"], ["keys", "rotate-signing"]):
        done = run_storefront(wrong, *argv)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("storefront: STOREFRONT_JWT_SECRET is not the JWT signing key")
    assert len(_listing(env)) == 2  # nothing was added

    bad = run_storefront(env, "keys", "rotate-signing", "--algorithm", "RS256")
    assert bad.returncode == 2
    assert "invalid choice: 'RS256'" in bad.stderr
