"""DPoP (RFC 9449) through the real server: bound tokens, proofs, refusals, nonces.

Two ``storefront serve`` processes per backend (SQLite, and PostgreSQL), one database, one
Redis (the rate-limit store, where proof ``jti``s are remembered), both behind one public URL
(STOREFRONT_PUBLIC_URL), as behind a load balancer: a proof names that URL, whichever process
receives it. The client (tests/dpop_client.py) signs its proofs with PyJWT, as a client would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import REDIS_URL, require_service
from tests.dpop_client import DPoPKey
from tests.servers import (
    deployment_env,
    instances,
    new_api_key,
    storefront,
    storefront_json,
)

PUBLIC = "https://api.example.test"
TOKEN_URL = f"{PUBLIC}/auth/token"
USERS_URL = f"{PUBLIC}/users"
ALGS = 'algs="ES256 RS256 PS256 EdDSA"'
WINDOW = 60  # STOREFRONT_DPOP_PROOF_WINDOW's default


def _env(database_env: dict[str, str], tmp: Any, **more: str) -> dict[str, str]:
    require_service(REDIS_URL, 6379)
    return deployment_env(
        rate_limit_storage_url=REDIS_URL,
        key_dir=tmp / "unused-keys",
        STOREFRONT_LOG_LEVEL="warning",
        STOREFRONT_PUBLIC_URL=PUBLIC,
        **database_env,
        **more,
    )


@pytest.fixture(scope="module")
def env(
    module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return _env(module_database_env, tmp_path_factory.mktemp("dpop"))


@pytest.fixture(scope="module")
def servers(env: dict[str, str]) -> Iterator[list[str]]:
    with instances(env) as bases:
        yield bases


def new_client(env: dict[str, str], *extra: str, scopes: str = "read write") -> dict[str, str]:
    return storefront_json(env, "clients", "create", "--name", "dpop", "--scopes", scopes, *extra)


def token_request(base: str, client: dict[str, str], proof: str | None = None) -> httpx.Response:
    headers = {} if proof is None else {"DPoP": proof}
    form = {"grant_type": "client_credentials", **client}
    return httpx.post(f"{base}/auth/token", data=form, headers=headers)


def bound_token(base: str, client: dict[str, str], key: DPoPKey) -> str:
    response = token_request(base, client, key.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    token: str = response.json()["access_token"]
    return token


def dpop_get(base: str, path: str, token: str, proof: str | None) -> httpx.Response:
    headers = {"Authorization": f"DPoP {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return httpx.get(f"{base}{path}", headers=headers)


def assert_refused(response: httpx.Response, error: str, says: str) -> None:
    """A 401 in the contract's shape with RFC 9449 §7.1's challenge."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "Unauthorized"
    assert says in body["message"], body["message"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("DPoP "), challenge
    assert f'error="{error}"' in challenge
    assert ALGS in challenge


@pytest.fixture(scope="module")
def bound(env: dict[str, str], servers: list[str]) -> tuple[DPoPKey, str]:
    """A client's key and a token bound to it."""
    key = DPoPKey("ES256")
    return key, bound_token(servers[0], new_client(env), key)


# -- what works ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256"])
def test_a_proof_binds_the_token_and_the_api_takes_it_with_a_fresh_proof(
    env: dict[str, str], servers: list[str], alg: str
) -> None:
    key = DPoPKey(alg)
    response = token_request(servers[0], new_client(env), key.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.text
    issued = response.json()
    assert issued["token_type"] == "DPoP"
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.thumbprint}
    token = issued["access_token"]
    # Either instance; the query is not part of htu (RFC 9449 §4.3).
    for base in servers:
        answer = dpop_get(base, "/users?limit=2", token, key.proof("GET", USERS_URL, token=token))
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json(), list)
        assert answer.headers["X-RateLimit-Limit"]


def test_a_token_request_without_a_proof_is_a_bearer_token_as_before(
    env: dict[str, str], servers: list[str]
) -> None:
    response = token_request(servers[0], new_client(env))
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    token = response.json()["access_token"]
    assert "cnf" not in jwt.decode(token, options={"verify_signature": False})
    users = httpx.get(f"{servers[1]}/users", headers={"Authorization": f"Bearer {token}"})
    assert users.status_code == 200


def test_discovery_and_introspection_speak_dpop(env: dict[str, str], servers: list[str]) -> None:
    metadata = httpx.get(f"{servers[0]}/.well-known/oauth-authorization-server").json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "RS256", "PS256", "EdDSA"]
    assert metadata["token_endpoint"] == TOKEN_URL
    client = new_client(env)
    key = DPoPKey()
    token = bound_token(servers[0], client, key)
    seen = httpx.post(f"{servers[1]}/auth/introspect", data={"token": token, **client}).json()
    assert seen["active"] is True
    assert seen["token_type"] == "DPoP"
    assert seen["cnf"] == {"jkt": key.thumbprint}


def test_api_keys_are_unchanged(env: dict[str, str], servers: list[str]) -> None:
    key = new_api_key(env)
    for headers in ({"X-API-Key": key["api_key"]}, {"Authorization": f"Bearer {key['api_key']}"}):
        assert httpx.get(f"{servers[0]}/products", headers=headers).status_code == 200
    # ...and not taken under the DPoP scheme.
    refused = dpop_get(servers[0], "/products", key["api_key"], None)
    assert_refused(refused, "invalid_token", "send an API key as 'Authorization: Bearer")


def test_the_clients_command_shows_who_must_use_dpop(env: dict[str, str]) -> None:
    required = new_client(env, "--require-dpop")
    free = new_client(env)
    listed = {c["client_id"]: c for c in storefront_json(env, "clients", "list")}  # type: ignore[union-attr]
    assert listed[required["client_id"]]["require_dpop"] is True
    assert listed[free["client_id"]]["require_dpop"] is False
    table = storefront(env, "clients", "list")
    assert "DPOP" in table.splitlines()[0]
    row = next(line for line in table.splitlines() if required["client_id"] in line)
    assert "required" in row


# -- refusals at the API ------------------------------------------------------------------------


def test_a_replayed_proof_is_refused_on_either_instance(
    servers: list[str], bound: tuple[DPoPKey, str]
) -> None:
    key, token = bound
    proof = key.proof("GET", USERS_URL, token=token)
    assert dpop_get(servers[0], "/users", token, proof).status_code == 200
    # The jti is remembered in the shared store: the other instance refuses it too.
    assert_refused(
        dpop_get(servers[1], "/users", token, proof), "invalid_dpop_proof", "used before"
    )
    assert_refused(
        dpop_get(servers[0], "/users", token, proof), "invalid_dpop_proof", "used before"
    )


def test_a_bound_token_sent_as_bearer_is_refused(
    servers: list[str], bound: tuple[DPoPKey, str]
) -> None:
    key, token = bound
    response = httpx.get(
        f"{servers[0]}/users",
        headers={
            "Authorization": f"Bearer {token}",
            "DPoP": key.proof("GET", USERS_URL, token=token),
        },
    )
    assert_refused(response, "invalid_token", "bound to a DPoP key")


def test_a_bearer_token_sent_as_dpop_is_refused(env: dict[str, str], servers: list[str]) -> None:
    token = token_request(servers[0], new_client(env)).json()["access_token"]
    key = DPoPKey()
    response = dpop_get(servers[0], "/users", token, key.proof("GET", USERS_URL, token=token))
    assert_refused(response, "invalid_token", "not bound to a DPoP key")


def _proof(key: DPoPKey, token: str, **change: Any) -> str:
    method = change.pop("method", "GET")
    url = change.pop("url", USERS_URL)
    if "iat_offset" in change:
        # Read the clock now: a time computed when the tests were collected is minutes old
        # by the time a test runs in a long suite.
        change["iat"] = int(time.time()) + change.pop("iat_offset")
    return key.proof(method, url, token=token, **change)


@pytest.mark.parametrize(
    ("case", "change", "says"),
    [
        ("wrong htm", {"method": "POST"}, "'htm' must be this request's method, GET"),
        (
            "wrong htu path",
            {"url": f"{PUBLIC}/products"},
            f"'htu' must be this request's URL, {USERS_URL}",
        ),
        ("wrong htu host", {"url": "https://other.example.test/users"}, "'htu' must be"),
        ("stale iat", {"iat_offset": -3 * WINDOW}, "'iat' is more than 60 s"),
        ("future iat", {"iat_offset": 3 * WINDOW}, "'iat' is more than 60 s"),
        ("wrong ath", {"ath": "A" * 43}, "'ath' must be"),
        ("no jti", {"jti": ""}, "needs a 'jti'"),
    ],
)
def test_a_proof_that_does_not_name_this_request_is_refused(
    servers: list[str], bound: tuple[DPoPKey, str], case: str, change: dict[str, Any], says: str
) -> None:
    key, token = bound
    response = dpop_get(servers[0], "/users", token, _proof(key, token, **dict(change)))
    assert_refused(response, "invalid_dpop_proof", says)


def test_htu_comes_from_the_public_url_never_from_host(
    servers: list[str], bound: tuple[DPoPKey, str]
) -> None:
    key, token = bound
    # A proof naming the address the request really went to, and the Host it carries, is not
    # a proof for this API's URL.
    spoofed = servers[0].replace("http://", "https://")
    for url, host in (
        (f"{servers[0]}/users", None),
        (f"{spoofed}/users", None),
        ("https://evil.example.test/users", "evil.example.test"),
    ):
        headers = {"Authorization": f"DPoP {token}", "DPoP": _proof(key, token, url=url)}
        if host is not None:
            headers["Host"] = host
        response = httpx.get(f"{servers[0]}/users", headers=headers)
        assert_refused(response, "invalid_dpop_proof", f"must be this request's URL, {USERS_URL}")


def test_a_proof_by_another_key_is_refused(servers: list[str], bound: tuple[DPoPKey, str]) -> None:
    _, token = bound
    thief = DPoPKey()
    response = dpop_get(servers[0], "/users", token, _proof(thief, token))
    assert_refused(response, "invalid_dpop_proof", "another key than the one the access token")


def test_a_request_without_a_proof_or_with_a_bad_one_is_refused(
    servers: list[str], bound: tuple[DPoPKey, str]
) -> None:
    key, token = bound
    assert_refused(dpop_get(servers[0], "/users", token, None), "invalid_dpop_proof", "required")
    good = _proof(key, token)
    forged = good[: good.rindex(".") + 1] + "A" * 86
    assert_refused(
        dpop_get(servers[0], "/users", token, forged), "invalid_dpop_proof", "does not verify"
    )
    hs256 = jwt.encode(
        {"jti": "x" * 16, "htm": "GET", "htu": USERS_URL, "iat": int(time.time())},
        "a-shared-secret-of-32-bytes-or-more!",
        algorithm="HS256",
        headers={"typ": "dpop+jwt", "jwk": key.public_jwk},
    )
    assert_refused(dpop_get(servers[0], "/users", token, hs256), "invalid_dpop_proof", "'alg'")
    wrong_typ = key.proof("GET", USERS_URL, token=token, header={"typ": "JWT"})
    assert_refused(dpop_get(servers[0], "/users", token, wrong_typ), "invalid_dpop_proof", "'typ'")
    leaked = key.proof(
        "GET", USERS_URL, token=token, header={"jwk": {**key.public_jwk, "d": "AAAA"}}
    )
    assert_refused(dpop_get(servers[0], "/users", token, leaked), "invalid_dpop_proof", "private")
    two = httpx.get(
        f"{servers[0]}/users",
        headers=[("Authorization", f"DPoP {token}"), ("DPoP", good), ("DPoP", good)],
    )
    assert_refused(two, "invalid_dpop_proof", "one DPoP header")


# -- refusals at the token endpoint -------------------------------------------------------------


def test_a_bad_proof_at_the_token_endpoint_is_invalid_dpop_proof(
    env: dict[str, str], servers: list[str]
) -> None:
    client = new_client(env)
    key = DPoPKey()
    for proof in (
        key.proof("POST", f"{PUBLIC}/users"),
        key.proof("GET", TOKEN_URL),
        key.proof("POST", TOKEN_URL, iat=int(time.time()) - 3 * WINDOW),
        "not-a-jwt",
    ):
        response = token_request(servers[0], client, proof)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_dpop_proof"
        assert body["message"] == body["error_description"]
    proof = key.proof("POST", TOKEN_URL)
    assert token_request(servers[0], client, proof).status_code == 200
    replayed = token_request(servers[1], client, proof)
    assert replayed.status_code == 400
    assert "used before" in replayed.json()["message"]


def test_a_client_required_to_use_dpop_gets_no_token_without_a_proof(
    env: dict[str, str], servers: list[str]
) -> None:
    client = new_client(env, "--require-dpop")
    response = token_request(servers[0], client)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert "must use DPoP" in response.json()["message"]
    key = DPoPKey()
    token = bound_token(servers[1], client, key)
    answer = dpop_get(servers[0], "/users", token, key.proof("GET", USERS_URL, token=token))
    assert answer.status_code == 200


# -- server nonces (RFC 9449 §8) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def nonce_servers(env: dict[str, str]) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Two more instances of the same deployment, with STOREFRONT_DPOP_NONCE on."""
    nonce_env = {**env, "STOREFRONT_DPOP_NONCE": "true"}
    with instances(nonce_env) as bases:
        yield nonce_env, bases


def test_with_nonces_required_a_proof_without_the_current_one_is_refused(
    nonce_servers: tuple[dict[str, str], list[str]],
) -> None:
    env, servers = nonce_servers
    client = new_client(env)
    key = DPoPKey()
    first = token_request(servers[0], client, key.proof("POST", TOKEN_URL))
    assert first.status_code == 400, first.text
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    stale = token_request(servers[0], client, key.proof("POST", TOKEN_URL, nonce="not-the-nonce"))
    assert stale.json()["error"] == "use_dpop_nonce"
    # Derived, not stored: the other instance takes the nonce the first one gave.
    issued = token_request(servers[1], client, key.proof("POST", TOKEN_URL, nonce=nonce))
    assert issued.status_code == 200, issued.text
    assert issued.headers["DPoP-Nonce"] == nonce
    token = issued.json()["access_token"]

    refused = dpop_get(servers[0], "/users", token, key.proof("GET", USERS_URL, token=token))
    assert_refused(refused, "use_dpop_nonce", "nonce")
    assert refused.headers["DPoP-Nonce"] == nonce
    answer = dpop_get(
        servers[1], "/users", token, key.proof("GET", USERS_URL, token=token, nonce=nonce)
    )
    assert answer.status_code == 200, answer.text


def test_a_request_without_credentials_hears_of_both_schemes(servers: list[str]) -> None:
    """RFC 9449 §7.1: a client that sent nothing learns that DPoP is taken, and with what."""
    response = httpx.get(f"{servers[0]}/users")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="storefront", DPoP realm="storefront", {ALGS}'
    )
    assert response.json()["error"] == "Unauthorized"
