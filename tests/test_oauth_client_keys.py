"""``private_key_jwt`` and resource indicators with a real OAuth 2.0 client library (Authlib's
``PrivateKeyJWT``) against two ``storefront serve`` processes on one database and one Redis:
an assertion one instance accepted is refused by the other, a key set replaced with
``storefront clients set-jwks`` works on both at once. On SQLite and PostgreSQL.

Authlib signs assertions valid for an hour by default and, given fixed ``claims``, reuses
their ``jti`` (it fills it into that dict once): neither passes here, so the client below
signs each assertion with a fresh ``exp`` and ``jti``, as docs/api.md shows.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey, OKPKey

from tests.client_keys import KeyPair, jwks
from tests.conftest import REDIS_URL, require_service
from tests.servers import (
    deployment_env,
    free_port,
    run_storefront,
    serving,
    storefront,
    storefront_json,
)
from tests.test_readme import example

REPORTS = "https://reports.example.com"


class FreshPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's ``private_key_jwt``, each assertion valid for one minute with its own jti."""

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        return private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            claims={"exp": int(time.time()) + 60, "jti": secrets.token_urlsafe(16)},
            header=self.headers,
            alg=self.alg,
        )


@pytest.fixture(scope="module")
def deployment(
    module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Two instances behind one public URL (the first's), sharing a database and Redis."""
    require_service(REDIS_URL, 6379)
    directory = tmp_path_factory.mktemp("keys-deployment")
    ports = [free_port(), free_port()]
    issuer = f"http://127.0.0.1:{ports[0]}"
    env = deployment_env(
        rate_limit_storage_url=REDIS_URL,
        key_dir=directory / "keys",
        STOREFRONT_ISSUER=issuer,
        STOREFRONT_PUBLIC_URL=issuer,
        STOREFRONT_RESOURCES=f"{issuer},{REPORTS}",
        **module_database_env,
    )
    storefront(env, "db", "upgrade")
    with ExitStack() as stack:
        bases = [stack.enter_context(serving(directory, env, port=port)).base for port in ports]
        yield env, bases


def private_key(pair: KeyPair) -> Any:
    pem = pair.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loader: Any = ECKey if pair.algorithm == "ES256" else OKPKey
    return loader.import_key(pem, {"kid": pair.kid})


def authlib_client(client_id: str, pair: KeyPair, issuer: str, sent: list[Any]) -> OAuth2Client:
    oauth = OAuth2Client(
        client_id=client_id,
        client_secret=private_key(pair),
        token_endpoint_auth_method="private_key_jwt",
        revocation_endpoint_auth_method="private_key_jwt",
        event_hooks={"request": [sent.append]},
        timeout=30,
    )
    # rfc7523bis: the audience is the issuer identifier, whatever endpoint is called.
    auth = FreshPrivateKeyJWT(token_endpoint=issuer, alg=pair.algorithm, headers={"kid": pair.kid})
    oauth.register_client_auth_method(auth)
    return oauth


def new_key_client(env: dict[str, str], tmp_path: Path, *pairs: KeyPair) -> dict[str, Any]:
    path = tmp_path / f"jwks-{secrets.token_hex(4)}.json"
    path.write_text(jwks(*pairs))
    return storefront_json(env, "clients", "create", "--name", "svc", "--jwks", str(path))


def test_authlib_authenticates_with_its_key_and_no_instance_accepts_an_assertion_twice(
    deployment: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, (first, second) = deployment
    metadata = httpx.get(f"{first}/.well-known/oauth-authorization-server").json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert metadata["protected_resources"] == [metadata["issuer"], REPORTS]
    pair = KeyPair.new("ES256")
    created = new_key_client(env, tmp_path, pair)
    assert set(created) == {"client_id", "token_endpoint_auth_method", "jwks_uri"}  # no secret
    listed = json.loads(storefront(env, "clients", "list", "--json"))
    mine = next(c for c in listed if c["client_id"] == created["client_id"])
    assert mine["auth_methods"] == ["private_key_jwt"]

    sent: list[httpx2.Request] = []
    with authlib_client(created["client_id"], pair, metadata["issuer"], sent) as oauth:
        token = oauth.fetch_token(
            metadata["token_endpoint"], grant_type="client_credentials", resource=first
        )
        form = dict(httpx2.QueryParams(sent[-1].content.decode()))
        assert "client_secret" not in form
        assert "authorization" not in sent[-1].headers
        assert form["client_assertion_type"].endswith(":jwt-bearer")
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["aud"] == first  # the resource asked for
        # Either instance accepts the token: it is for the resource they serve.
        for base in (first, second):
            users = httpx.get(
                f"{base}/users", headers={"Authorization": f"Bearer {token['access_token']}"}
            )
            assert users.status_code == 200, users.text
        # The request Authlib sent, assertion and all, replayed at the other instance.
        replayed = httpx.post(
            metadata["token_endpoint"].replace(first, second),
            content=sent[-1].content,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert replayed.status_code == 401
        assert replayed.json()["error"] == "invalid_client"
        assert "used before" in replayed.json()["message"]
        # Introspection and revocation authenticate the same way (RFC 7662, RFC 7009).
        looked = oauth.introspect_token(
            metadata["introspection_endpoint"], token=token["access_token"]
        )
        assert looked.json()["active"] is True
        assert (
            oauth.revoke_token(
                metadata["revocation_endpoint"], token=token["access_token"]
            ).status_code
            == 200
        )
        after = oauth.introspect_token(
            metadata["introspection_endpoint"], token=token["access_token"]
        )
        assert after.json() == {"active": False}
        # A token for the other service is refused by this API on both instances.
        elsewhere = oauth.fetch_token(
            metadata["token_endpoint"], grant_type="client_credentials", resource=REPORTS
        )
        for base in (first, second):
            refused = httpx.get(
                f"{base}/users", headers={"Authorization": f"Bearer {elsewhere['access_token']}"}
            )
            assert refused.status_code == 401
            assert "for another resource" in refused.json()["message"]


def test_set_jwks_moves_a_client_to_a_new_key_on_every_instance(
    deployment: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, (first, second) = deployment
    issuer = httpx.get(f"{first}/.well-known/oauth-authorization-server").json()["issuer"]
    # Both P-256 (ES256): joserfc warns on EdDSA, which RFC 9864 deprecates for "Ed25519".
    old, new = KeyPair.new("ES256"), KeyPair.new("ES256")
    client_id = new_key_client(env, tmp_path, old)["client_id"]

    def status(pair: KeyPair, base: str) -> int:
        with authlib_client(client_id, pair, issuer, []) as oauth:
            try:
                oauth.fetch_token(f"{base}/auth/token", grant_type="client_credentials")
            except OAuthError as exc:  # Authlib's answer to a 401
                if exc.error != "invalid_client":
                    raise
                return 401
            return 200

    assert [status(old, base) for base in (first, second)] == [200, 200]
    # Both keys for the move, then the new one alone.
    path = tmp_path / "both.json"
    path.write_text(jwks(old, new))
    storefront(env, "clients", "set-jwks", client_id, "--jwks", str(path))
    assert [status(pair, base) for pair in (old, new) for base in (first, second)] == [200] * 4
    path.write_text(jwks(new))
    storefront(env, "clients", "set-jwks", client_id, "--jwks", str(path))
    assert [status(old, base) for base in (first, second)] == [401, 401]
    assert [status(new, base) for base in (first, second)] == [200, 200]


def test_the_commands_refuse_a_bad_key_set_in_one_line(
    deployment: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, _ = deployment
    pair = KeyPair.new("ES256")
    private = {**pair.public_jwk(), "d": "AAAA"}
    cases = {
        "private.json": (json.dumps({"keys": [private]}), "private key material"),
        "empty.json": ('{"keys": []}', "has no keys"),
        "text.json": ("not json", "is not JSON"),
        "hmac.json": ('{"keys": [{"kty": "oct"}]}', "'kty' must be RSA, EC or OKP"),
    }
    for name, (content, words) in cases.items():
        (tmp_path / name).write_text(content)
        done = run_storefront(
            env, "clients", "create", "--name", "x", "--jwks", str(tmp_path / name)
        )
        assert done.returncode == 1, done
        assert words in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    missing = run_storefront(env, "clients", "create", "--name", "x", "--jwks", "/nonexistent.json")
    assert "cannot read the key set" in missing.stderr
    unreachable = run_storefront(
        env, "clients", "create", "--name", "x", "--jwks-uri", "http://127.0.0.1:9/jwks.json"
    )
    assert unreachable.returncode == 1
    assert "could not be reached" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    # Keys fetched over plain http from another host could be swapped on the way.
    plain = run_storefront(
        env, "clients", "create", "--name", "x", "--jwks-uri", "http://client.example/jwks.json"
    )
    assert plain.returncode == 1
    assert "must be https (http only for localhost" in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    both = run_storefront(
        env, "clients", "create", "--name", "x", "--jwks", "a", "--jwks-uri", "https://x"
    )
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
    secretless = new_key_client(env, tmp_path, pair)["client_id"]
    rotate = run_storefront(env, "clients", "rotate-secret", secretless)
    assert rotate.returncode == 1
    assert "has no secret to rotate" in rotate.stderr


def run_example(name: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """docs/api.md's example ``name``, run as a reader would: ``storefront`` on the PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, "-c", example(name)],
        env={**env, "PATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_the_resource_indicator_example_does_what_the_docs_say(
    deployment: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, (first, _) = deployment
    client = storefront_json(env, "clients", "create", "--name", "docs", "--scopes", "read")
    env = {
        **env,
        "BASE": first,
        "CLIENT_ID": client["client_id"],
        "CLIENT_SECRET": client["client_secret"],
    }
    assert run_example("python-resource", env, tmp_path) == [
        f'aud "{first}" -> GET /users 200',
        f'aud ["{first}", "{REPORTS}"] -> GET /users 200',
        f'aud "{REPORTS}" -> GET /users 401',
        "400 invalid_target",
    ]


def test_the_private_key_jwt_example_does_what_the_docs_say(
    deployment: tuple[dict[str, str], list[str]], tmp_path: Path
) -> None:
    env, (first, _) = deployment
    out = run_example("python-private-key-jwt", {**env, "BASE": first}, tmp_path)
    assert out[0].startswith("token for cli_")
    assert out[0].endswith(" scope read write")
    assert out[1:] == ["GET /users: 200", "active: True", "after revoking: {'active': False}"]
