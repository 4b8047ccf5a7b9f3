"""POST /auth/token: the client credentials grant (RFC 6749 §4.4) and its errors (§5.2)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from core.crypto import SecretDigester
from core.settings import Settings
from persistence import clients
from storefront import admin

GRANT = {"grant_type": "client_credentials"}
TOKEN_KEYS = {"access_token", "token_type", "expires_in", "scope"}
MakeClient = Callable[..., admin.NewClient]


def form(client: admin.NewClient, **extra: str) -> dict[str, str]:
    return {**GRANT, "client_id": client.client_id, "client_secret": client.client_secret, **extra}


def basic(client_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic as RFC 6749 §2.3.1 has it: each part form-encoded before base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assert_token(response: Response, scope: str) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == TOKEN_KEYS  # no refresh_token (RFC 6749 §4.4.3)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == scope
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) > 20
    token: str = body["access_token"]
    return token


def assert_oauth_error(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description", "message"}
    assert body["error"] == code
    assert body["error_description"]
    assert body["message"] == body["error_description"]
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- success ------------------------------------------------------------------------------


def test_form_credentials(api: TestClient, make_client: MakeClient) -> None:
    client = make_client("read write")
    token = assert_token(api.post("/auth/token", data=form(client)), "read write")
    assert api.get("/users", headers=bearer(token)).status_code == 200
    body = {"name": "A", "email": "a@example.com", "password": "password1"}
    assert api.post("/users", headers=bearer(token), json=body).status_code == 201


def test_http_basic_credentials(api: TestClient, make_client: MakeClient) -> None:
    client = make_client("read write")
    response = api.post(
        "/auth/token", data=GRANT, headers=basic(client.client_id, client.client_secret)
    )
    token = assert_token(response, "read write")
    assert api.get("/users", headers=bearer(token)).status_code == 200

    # The form may repeat the client_id that Basic carries.
    response = api.post(
        "/auth/token",
        data={**GRANT, "client_id": client.client_id},
        headers=basic(client.client_id, client.client_secret),
    )
    assert_token(response, "read write")


def test_two_authorization_fields_are_an_invalid_request(
    api: TestClient, make_client: MakeClient
) -> None:
    client = make_client("read write")
    right = basic(client.client_id, client.client_secret)["Authorization"]
    wrong = basic(client.client_id, "not-the-secret")["Authorization"]
    for fields in ([right, wrong], [right, right]):
        response = api.post(
            "/auth/token", data=GRANT, headers=[("Authorization", value) for value in fields]
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_request"
        assert "one Authorization field" in body["error_description"]


@pytest.mark.stock_stack
def test_http_basic_form_decodes_the_secret(
    api: TestClient,
    make_client: MakeClient,
    settings: Settings,
    digester: SecretDigester,
    subtests: pytest.Subtests,
) -> None:
    client = make_client("read")
    for secret in ("p@ss:w+rd/%20é ünïcode&=?", "plus+plus", "colon:colon", "100%"):
        with subtests.test(secret=secret):
            admin.run(
                settings,
                lambda s, secret=secret: clients.set_client_secret(
                    s, client_id=client.client_id, secret_digest=digester.digest(secret)
                ),
            )
            response = api.post("/auth/token", data=GRANT, headers=basic(client.client_id, secret))
            assert_token(response, "read")
            # The same secret in the form (which the client library encodes) works too.
            response = api.post(
                "/auth/token",
                data={**GRANT, "client_id": client.client_id, "client_secret": secret},
            )
            assert_token(response, "read")


def test_scope_down_scoping(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    client = make_client("read write")
    for requested, granted in [
        (None, "read write"),
        ("read", "read"),
        ("write", "write"),
        ("read write", "read write"),
        ("write read", "read write"),
        # A held scope covers the narrower ones (core.scopes); the token carries what was asked.
        ("users:read", "users:read"),
        ("products:read users:read", "users:read products:read"),
        ("users:write users:read", "users:read users:write"),
        ("read users:read", "read users:read"),
        ("products:write", "products:write"),
    ]:
        with subtests.test(requested=requested):
            extra = {} if requested is None else {"scope": requested}
            assert_token(api.post("/auth/token", data=form(client, **extra)), granted)

    read_only = assert_token(api.post("/auth/token", data=form(client, scope="read")), "read")
    body = {"name": "A", "email": "a@example.com", "password": "password1"}
    forbidden = api.post("/users", headers=bearer(read_only), json=body)
    assert forbidden.status_code == 403
    assert api.get("/users", headers=bearer(read_only)).status_code == 200


def test_scope_beyond_the_clients_is_invalid_scope(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    reader = make_client("read")
    assert_token(api.post("/auth/token", data=form(reader)), "read")
    for client, scope in [
        (reader, "write"),
        (reader, "read write"),
        (reader, "admin"),
        (make_client("read write"), "admin"),
        (make_client("read write"), "read admin"),
        # read covers users:read, never users:write; a resource scope never covers the broad
        # one, nor another resource's.
        (reader, "users:write"),
        (make_client("users:read"), "read"),
        (make_client("users:read"), "products:read"),
        (make_client("users:write"), "users:read"),
        (make_client("read write"), "introspect"),
    ]:
        with subtests.test(scopes=client.scopes, scope=scope):
            response = api.post("/auth/token", data=form(client, scope=scope))
            body = assert_oauth_error(response, 400, "invalid_scope")
            assert "access_token" not in body
    narrow = make_client("users:read")
    response = api.post("/auth/token", data=form(narrow, scope="users:read read"))
    body = assert_oauth_error(response, 400, "invalid_scope")
    assert body["message"] == "The requested scope exceeds the client's scopes: read."


def test_scope_tokens_are_separated_by_single_spaces_only(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    # RFC 6749 §3.3: scope = scope-token *( SP scope-token ). Any other white space belongs to
    # a token, so "read<tab>write" names one scope that no client has, not two.
    client = make_client("read write")
    for scope, shown in [
        ("read\twrite", "read\\twrite"),
        ("read\nwrite", "read\\nwrite"),
        ("read\r\nwrite", "read\\r\\nwrite"),
        ("read\u00a0write", "read\\xa0write"),
        ("read\u2003write", "read\\u2003write"),
        ("read\u3000write", "read\\u3000write"),
    ]:
        with subtests.test(scope=scope):
            response = api.post("/auth/token", data=form(client, scope=scope))
            body = assert_oauth_error(response, 400, "invalid_scope")
            # The message shows the unknown token with its white space escaped.
            assert body["message"] == f"The requested scope exceeds the client's scopes: {shown}."


def test_blank_scope_or_empty_scope_token_is_invalid_scope(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    client = make_client("read write")
    for scope, words in [
        (" ", "blank"),
        ("   ", "blank"),
        ("\t", "blank"),
        ("\n", "blank"),
        (" \t\n", "blank"),
        ("\u00a0", "blank"),
        ("read  write", "empty scope token"),
        (" read", "empty scope token"),
        ("read ", "empty scope token"),
    ]:
        with subtests.test(scope=scope):
            response = api.post("/auth/token", data=form(client, scope=scope))
            body = assert_oauth_error(response, 400, "invalid_scope")
            assert words in body["message"]
    # An empty value is a parameter sent without a value: omitted (RFC 6749 §3.2), all scopes.
    assert_token(api.post("/auth/token", data=form(client, scope="")), "read write")
    # Basic authentication changes nothing.
    response = api.post(
        "/auth/token",
        data={**GRANT, "scope": " "},
        headers=basic(client.client_id, client.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_scope")


# --- errors -------------------------------------------------------------------------------


@pytest.mark.stock_stack
def test_request_errors(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    client = make_client()
    creds = {"client_id": client.client_id, "client_secret": client.client_secret}
    with subtests.test("missing grant_type"):
        body = assert_oauth_error(api.post("/auth/token", data=creds), 400, "invalid_request")
        assert "grant_type" in body["message"]
    with subtests.test("empty body"):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = api.post("/auth/token", content=b"", headers=headers)
        assert_oauth_error(response, 400, "invalid_request")
    with subtests.test("grant_type without a value"):
        response = api.post("/auth/token", data={**creds, "grant_type": ""})
        assert_oauth_error(response, 400, "invalid_request")
    for grant_type in ("password", "authorization_code", "refresh_token", "CLIENT_CREDENTIALS"):
        with subtests.test(grant_type=grant_type):
            response = api.post("/auth/token", data={**creds, "grant_type": grant_type})
            assert_oauth_error(response, 400, "unsupported_grant_type")


def test_unknown_parameters_are_ignored(api: TestClient, make_client: MakeClient) -> None:
    # RFC 6749 §3.2: "The authorization server MUST ignore unrecognized request parameters."
    client = make_client()
    assert_token(api.post("/auth/token", data=form(client, audience="x")), "read write")


def test_bad_credentials_are_invalid_client(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    client = make_client()
    other = make_client()
    cases = {
        "wrong secret": {"client_id": client.client_id, "client_secret": "wrong"},
        "another client's secret": {
            "client_id": client.client_id,
            "client_secret": other.client_secret,
        },
        "unknown client": {"client_id": "cli_doesnotexist", "client_secret": client.client_secret},
        "secret in another case": {
            "client_id": client.client_id,
            "client_secret": client.client_secret.swapcase(),
        },
    }
    bodies = []
    for name, creds in cases.items():
        with subtests.test(name):
            response = api.post("/auth/token", data={**GRANT, **creds})
            bodies.append(assert_oauth_error(response, 401, "invalid_client"))
            assert client.client_secret not in response.text
    # An unknown client and a wrong secret read the same: no hint of which clients exist.
    assert all(body == bodies[0] for body in bodies)


def test_missing_credentials(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    client = make_client()
    for name, data in {
        "nothing": GRANT,
        "no secret": {**GRANT, "client_id": client.client_id},
        "empty secret": {**GRANT, "client_id": client.client_id, "client_secret": ""},
        "empty id": {**GRANT, "client_id": "", "client_secret": client.client_secret},
        "no id": {**GRANT, "client_secret": client.client_secret},
    }.items():
        with subtests.test(name):
            response = api.post("/auth/token", data=data)
            assert response.status_code in {400, 401}, response.text
            code = "invalid_client" if response.status_code == 401 else "invalid_request"
            assert_oauth_error(response, response.status_code, code)


@pytest.mark.stock_stack
def test_basic_failures_challenge_with_basic(
    api: TestClient, make_client: MakeClient, subtests: pytest.Subtests
) -> None:
    client = make_client()
    for name, headers in {
        "wrong secret": basic(client.client_id, "wrong"),
        "unknown client": basic("cli_doesnotexist", client.client_secret),
    }.items():
        with subtests.test(name):
            response = api.post("/auth/token", data=GRANT, headers=headers)
            assert_oauth_error(response, 401, "invalid_client")
            assert response.headers["www-authenticate"].startswith("Basic")
    for name, value in {
        "not base64": "Basic !!!not-base64!!!",
        "no colon": "Basic " + base64.b64encode(b"justanid").decode(),
    }.items():
        with subtests.test(name):
            response = api.post("/auth/token", data=GRANT, headers={"Authorization": value})
            assert response.status_code in {400, 401}, response.text
            code = "invalid_client" if response.status_code == 401 else "invalid_request"
            assert_oauth_error(response, response.status_code, code)


def test_basic_and_form_secret_together_is_invalid_request(
    api: TestClient, make_client: MakeClient
) -> None:
    client = make_client()
    response = api.post(
        "/auth/token",
        data=form(client),
        headers=basic(client.client_id, client.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_request")

    other = make_client()
    mismatched = api.post(
        "/auth/token",
        data={**GRANT, "client_id": other.client_id},
        headers=basic(client.client_id, client.client_secret),
    )
    assert mismatched.status_code in {400, 401}
    assert "access_token" not in mismatched.json()


@pytest.mark.stock_stack
def test_token_endpoint_takes_only_forms(api: TestClient, make_client: MakeClient) -> None:
    client = make_client()
    response = api.post("/auth/token", json=form(client))
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) <= {"error", "message", "error_description"}
    assert {"error", "message"} <= set(response.json())

    wrong_method = api.get("/auth/token")
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["allow"]


def test_a_disabled_client_loses_its_tokens_within_the_auth_cache_ttl(
    api: TestClient, make_client: MakeClient, settings: Settings
) -> None:
    client = make_client()
    survivor = make_client()
    token = assert_token(api.post("/auth/token", data=form(client)), "read write")
    other_token = assert_token(api.post("/auth/token", data=form(survivor)), "read write")
    assert api.get("/users", headers=bearer(token)).status_code == 200

    admin.run(settings, lambda s: clients.disable_client(s, client_id=client.client_id))
    time.sleep(settings.auth_cache_ttl)

    refused = api.get("/users", headers=bearer(token))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert set(refused.json()) == {"error", "message"}
    assert_oauth_error(api.post("/auth/token", data=form(client)), 401, "invalid_client")
    basic_refused = api.post(
        "/auth/token", data=GRANT, headers=basic(client.client_id, client.client_secret)
    )
    assert_oauth_error(basic_refused, 401, "invalid_client")
    # Other clients are untouched.
    assert api.get("/users", headers=bearer(other_token)).status_code == 200
