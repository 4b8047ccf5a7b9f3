"""Every error, from every layer, is JSON of the seed's shape; a crash reveals nothing."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from httpx2 import Response
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from starlette.testclient import TestClient

import persistence.users
from storefront.http.problems import _quote
from tests.servers import demo_server

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack

Headers = dict[str, str]
NEW_USER = {"name": "A", "email": "a@example.com", "password": "password1"}
SOME_USER = "/users/user_abcdefghijkl"


def assert_error_shape(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str)
    assert isinstance(body["message"], str)
    assert body["error"].strip()
    assert body["message"].strip()
    return body


def allowed(response: Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def test_unknown_paths_are_404(
    api: TestClient, auth: Callable[..., Headers], subtests: pytest.Subtests
) -> None:
    h = auth()
    for method, path in [
        ("GET", "/nope"),
        ("POST", "/"),  # GET / is the index of storefront.http.doc_pages
        ("GET", "/docs/"),
        ("GET", "/redoc/nope.js"),
        ("GET", "/users/user_abcdefghijkl/orders"),
        ("POST", "/nope"),
        ("GET", "/v1/users"),
        ("GET", "/product"),
    ]:
        for headers in ({}, h):
            with subtests.test(method=method, path=path, authenticated=bool(headers)):
                assert_error_shape(api.request(method, path, headers=headers), 404)


def test_wrong_method_is_405_with_allow(
    api: TestClient, auth: Callable[..., Headers], subtests: pytest.Subtests
) -> None:
    h = auth()
    for method, path, methods in [
        ("PATCH", "/users", {"GET", "HEAD", "POST"}),
        ("DELETE", "/users", {"GET", "HEAD", "POST"}),
        ("OPTIONS", "/users", {"GET", "HEAD", "POST"}),
        ("QUERY", "/users", {"GET", "HEAD", "POST"}),
        ("POST", SOME_USER, {"GET", "HEAD", "PUT", "DELETE"}),
        ("PUT", "/products", {"GET", "HEAD", "POST"}),
        ("DELETE", "/products", {"GET", "HEAD", "POST"}),
        ("GET", "/auth/token", {"POST"}),
        ("PUT", "/auth/token", {"POST"}),
    ]:
        with subtests.test(method=method, path=path):
            response = api.request(method, path, headers=h)
            assert_error_shape(response, 405)
            assert allowed(response) == methods
            # Each method Allow names is taken: HEAD wherever GET is.
            for listed in methods - {"POST", "PUT", "DELETE"}:
                assert api.request(listed, path, headers=h).status_code not in (405, 501)


def test_unsupported_media_type_is_415(
    api: TestClient, auth: Callable[..., Headers], subtests: pytest.Subtests
) -> None:
    h = auth()
    for method, path, content_type, content in [
        ("POST", "/users", "text/plain", b"hello"),
        ("POST", "/users", "application/xml", b"<user/>"),
        ("PUT", SOME_USER, "text/plain", b"hello"),
        ("POST", "/auth/token", "application/json", b'{"grant_type": "client_credentials"}'),
        ("POST", "/auth/token", "text/plain", b"grant_type=client_credentials"),
    ]:
        with subtests.test(method=method, path=path, content_type=content_type):
            headers = {**h, "Content-Type": content_type}
            response = api.request(method, path, headers=headers, content=content)
            assert_error_shape(response, 415)


def test_validation_and_security_errors_share_the_shape(
    api: TestClient, auth: Callable[..., Headers], subtests: pytest.Subtests
) -> None:
    with subtests.test("400"):
        body = assert_error_shape(api.get("/users?limit=0", headers=auth()), 400)
        assert "limit" in body["message"]
    with subtests.test("401"):
        assert_error_shape(api.get("/users"), 401)
        assert_error_shape(api.get("/users", headers={"Authorization": "Bearer nope"}), 401)
    with subtests.test("403"):
        assert_error_shape(api.post("/users", headers=auth("read"), json=NEW_USER), 403)
    with subtests.test("404"):
        assert_error_shape(api.get(SOME_USER, headers=auth()), 404)
    with subtests.test("409"):
        h = auth()
        assert api.post("/users", headers=h, json=NEW_USER).status_code == 201
        assert_error_shape(api.post("/users", headers=h, json=NEW_USER), 409)


def test_token_endpoint_errors_carry_error_description_too(
    api: TestClient, subtests: pytest.Subtests
) -> None:
    for name, data in {
        "invalid_request": {"client_id": "x"},
        "unsupported_grant_type": {"grant_type": "password"},
        "invalid_client": {
            "grant_type": "client_credentials",
            "client_id": "x",
            "client_secret": "y",
        },
    }.items():
        with subtests.test(name):
            response = api.post("/auth/token", data=data)
            assert response.status_code in {400, 401}
            assert response.headers["content-type"].split(";")[0] == "application/json"
            body = response.json()
            assert set(body) == {"error", "error_description", "message"}
            assert body["error"] == name
            assert body["message"] == body["error_description"]


LEAKS = (
    "secret internals",
    "/etc/passwd",
    "RuntimeError",
    "Traceback",
    'File "',
    ".py",
    "persistence",
    "SELECT",
    "password_hash",
    "sqlite",
    "disk I/O",
)


def assert_reveals_nothing(response: Response) -> None:
    assert_error_shape(response, 500)
    for leak in LEAKS:
        assert leak.lower() not in response.text.lower(), (leak, response.text)


def test_a_crash_is_a_500_that_reveals_nothing(
    api: TestClient,
    auth: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = auth()

    def crash(*args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(persistence.users, "get_user", crash)
    with caplog.at_level(logging.ERROR):
        response = api.get(SOME_USER, headers=h)
    assert_reveals_nothing(response)
    # "It has been logged", as the message says: the operator gets what the client did not.
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)

    # The rest of the app keeps working.
    assert api.get("/users", headers=h).status_code == 200


def test_a_database_error_reveals_no_sql(
    api: TestClient, auth: Callable[..., Headers], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> NoReturn:
        # A bug in a query (not an unreachable database, which is a 503).
        raise ProgrammingError(
            "SELECT password_hash FROM users WHERE id = ?",
            {"id": "user_x"},
            Exception("no such column: pasword_hash in /var/lib/sqlite/storefront.db"),
        )

    monkeypatch.setattr(persistence.users, "list_users", broken)
    assert_reveals_nothing(api.get("/users", headers=auth()))


class Cancelled(Exception):
    """asyncpg's QueryCanceledError as SQLAlchemy hands it over: a bare DBAPIError's cause."""

    sqlstate = "57014"


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError("connect to 10.0.0.5:5432 refused"),
        SQLAlchemyTimeout("QueuePool limit of size 5 overflow 10 reached"),
        TimeoutError("timed out connecting to 10.0.0.5:5432"),
        OperationalError("SELECT 1", {}, Exception("the database system is starting up")),
        DBAPIError("SELECT 1", {}, Cancelled("canceling statement due to user request")),
    ],
    ids=["refused", "pool-timeout", "connect-timeout", "starting-up", "cancelled"],
)
def test_an_unreachable_database_is_a_503_to_retry(
    api: TestClient,
    auth: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:
    headers = auth("read")

    def unreachable(*_: object, **__: object) -> NoReturn:
        raise failure

    monkeypatch.setattr(persistence.users, "list_users", unreachable)
    response = api.get("/users", headers=headers)
    body = assert_error_shape(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "retry" in body["message"]
    assert str(failure) not in response.text


def test_refusals_say_what_to_send_instead_over_http(tmp_path: Path) -> None:
    """A bad cursor, a token request without a body, an Authorization header without
    ``Bearer``: each answer names what to send, from a real server over a socket."""
    with demo_server(tmp_path) as server, httpx.Client(base_url=server.base) as http:
        client_id = re.search(r"client_id:\s+(\S+)", server.output)
        secret = re.search(r"client_secret:\s+(\S+)", server.output)
        assert client_id, server.output
        assert secret, server.output
        form = {"grant_type": "client_credentials", "client_id": client_id[1]}
        token = http.post("/auth/token", data={**form, "client_secret": secret[1]})
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

        # A cursor of no list's form: words that name the Link header, not the spec's pattern.
        cursor_advice = (
            "not a cursor this server issued; follow the Link header's next or prev URL as "
            "it is, or leave the parameter out."
        )
        for path, parameter, cursor in [
            ("/users", "after", "garbage"),
            ("/users", "before", "1.a.b"),
            ("/products", "after", "!!"),
            ("/products", "before", "prod xyz"),
        ]:
            refused = http.get(path, params={parameter: cursor}, headers=bearer)
            body = assert_http_error(refused, 400)
            assert body == {
                "error": "Bad Request",
                "message": f"Invalid query parameter '{parameter}': {cursor_advice}",
            }

        # A token request without a body: RFC 6749's code, and the form to send.
        for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
            refused = http.post("/auth/token", headers=headers)
            assert refused.status_code == 400
            advice = (
                "The request has no body: send grant_type=client_credentials as a form "
                "(Content-Type: application/x-www-form-urlencoded), with the client's "
                "credentials as client_id and client_secret fields or as HTTP Basic "
                "(-u client_id:client_secret)."
            )
            assert refused.json() == {
                "error": "invalid_request",
                "message": advice,
                "error_description": advice,
            }
        refused = http.post("/auth/revoke")
        assert "send token=<the token to revoke> as a form" in refused.json()["message"]

        # A JSON route without a body: the JSON object, its media type, where its fields are.
        writer = http.post(
            "/auth/token", data={**form, "client_secret": secret[1], "scope": "write"}
        )
        for headers in ({}, {"Content-Type": "application/json"}):
            refused = http.post(
                "/users",
                headers={"Authorization": f"Bearer {writer.json()['access_token']}", **headers},
            )
            assert assert_http_error(refused, 400) == {
                "error": "Bad Request",
                "message": (
                    "The request has no body: send the JSON object this operation takes, with "
                    "Content-Type: application/json; its fields are in the API reference "
                    "(/redoc, or Swagger UI at /ui/)."
                ),
            }, headers

        # The token without "Bearer ", or under another scheme.
        access_token = bearer["Authorization"].removeprefix("Bearer ")
        for field in (access_token, f"Token {access_token}", "Bearer", "Basic dTpw"):
            refused = http.get("/users", headers={"Authorization": field})
            assert assert_http_error(refused, 401) == {
                "error": "Unauthorized",
                "message": (
                    "The Authorization header must be 'Authorization: Bearer <token>', the "
                    "token an access token from POST /auth/token or an API key (sk_...); an "
                    "API key may instead be sent as 'X-API-Key: <key>'."
                ),
            }, field
            assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
            if field == "Bearer":  # a credential presented, and refused: the challenge says why
                assert (
                    'error_description="The Authorization header must be'
                    in (refused.headers["WWW-Authenticate"])
                )
        # A well-formed one keeps its own message.
        wrong = http.get("/users", headers={"Authorization": "Bearer sk_not_a_key"})
        assert assert_http_error(wrong, 401)["message"] == (
            "The API key is invalid or has been revoked."
        )


def assert_http_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_a_challenge_carries_printable_ascii_only() -> None:
    # A non-Latin-1 character in a header field fails the whole response (a 500).
    assert _quote('an API key (sk_…), "café"') == 'an API key (sk_...), \\"caf?\\"'
