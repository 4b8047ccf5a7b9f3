"""Bounded requests: every oversized or malformed input is a 4xx in the error shape, quietly.

Each case was a 500 with a traceback once. In process, on every platform; the server layer's
own refusals (headers read off the socket, malformed HTTP) are in tests/test_server_limits.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from httpx2 import Response
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message, Receive, Scope, Send

from core.errors import ContentTooLarge, IncompleteBody, InvalidInput
from core.settings import Settings
from storefront import admin
from storefront.http.limits import RequestLimitsMiddleware
from storefront.http.validators import json_depth
from tests.helpers import assert_error, db_rows, server_signing_key

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback, nothing at ERROR, at most one WARNING: a refusal is not an incident."""
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not [r for r in server if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert len([r for r in server if r.levelno == logging.WARNING]) <= 1, caplog.text
    assert "Traceback" not in caplog.text


def assert_oauth_invalid_request(response: Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "error_description", "message"}
    assert body["error"] == "invalid_request"
    assert body["error_description"] == body["message"]
    for word in words:
        assert word in body["message"], body


# --- forms (the token endpoint) -----------------------------------------------------------


def test_a_form_with_too_many_fields_is_an_invalid_request(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    form = "grant_type=client_credentials&" + "&".join(f"f{i}=x" for i in range(1001))
    response = api.post(
        "/auth/token",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_invalid_request(response, "more than 100 fields")
    assert_quiet(caplog)


def test_a_form_field_over_the_limit_is_an_invalid_request(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = api.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_secret": "s" * 8200}
    )
    assert_oauth_invalid_request(response, "A form field (name and value) is over 8192 bytes")
    # A field of a megabyte makes the body too large: refused before the form is parsed.
    response = api.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_secret": "s" * (1024 * 1024 + 1)},
    )
    assert_error(response, 413, "1048576 bytes")
    assert_quiet(caplog)


# --- JSON bodies --------------------------------------------------------------------------


def user_body(**fields: Any) -> dict[str, Any]:
    return {"name": "Ada", "email": "ada@example.com", "password": "long-enough", **fields}


def post_json(api: TestClient, headers: dict[str, str], text: str) -> Response:
    return api.post("/users", headers={**headers, "Content-Type": "application/json"}, content=text)


@pytest.fixture
def writer(auth: Callable[..., dict[str, str]]) -> dict[str, str]:
    return auth("read write")


#: JSON bodies past a limit, by name: the body, and words its 400 must say.
OVER_THE_LIMITS: dict[str, tuple[str, list[str]]] = {
    "nested-10000": ("[" * 10_000 + "]" * 10_000, ["32 levels deep"]),
    "nested-33-in-a-field": (
        json.dumps(user_body(extra=None)).replace("null", "[" * 33 + "]" * 33),
        ["32 levels deep"],
    ),
    "integer-4500-digits": (
        json.dumps(user_body()).replace('"Ada"', "1" + "0" * 4_500),
        ["more than 100 characters"],
    ),
    "float-inf": (json.dumps(user_body()).replace('"Ada"', "1e999"), ["out of range"]),
    "nan": (json.dumps(user_body()).replace('"Ada"', "NaN"), ["NaN is not JSON"]),
    "surrogate-name": (json.dumps(user_body(name="\ud800")), ["lone UTF-16 surrogate"]),
    "surrogates-password": (
        json.dumps(user_body(password="pass\udfffword\ud83d")),
        ["lone UTF-16 surrogate"],
    ),
    "surrogate-key": (json.dumps(user_body(**{"\udc00": "x"})), ["lone UTF-16 surrogate"]),
    "truncated": ('{"name": ', ["not valid JSON"]),
}


def test_json_bodies_beyond_the_limits_are_a_400(
    api: TestClient,
    settings: Settings,
    writer: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    subtests: pytest.Subtests,
) -> None:
    # One app for all the cases: building it costs more than they do.
    for name, (text, words) in OVER_THE_LIMITS.items():
        with subtests.test(name):
            caplog.clear()
            response = post_json(api, writer, text)
            assert_error(response, 400, *words)
            assert_quiet(caplog)
    assert db_rows(settings, "SELECT count(*) FROM users") == [(0,)]


def test_what_is_within_the_limits_still_passes(api: TestClient, writer: dict[str, str]) -> None:
    # Forty brackets inside a string (not nesting), and an escaped surrogate pair (valid).
    name = "[" * 40 + " \\ud83d\\ude00 ]"
    text = json.dumps(user_body()).replace('"Ada"', f'"{name}"')
    response = post_json(api, writer, text)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "[" * 40 + " \U0001f600 ]"


def test_json_depth_skips_brackets_in_strings() -> None:
    assert json_depth('{"a": [1, {"b": "[[[{{{"}], "c": "\\"]]]"}') == 3
    assert json_depth("[]") == 1
    assert json_depth('"x"') == 0


def test_an_unknown_charset_is_a_415(
    api: TestClient, writer: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    response = api.post(
        "/users",
        headers={**writer, "Content-Type": "application/json;charset=x-no-such-charset"},
        content=json.dumps(user_body()),
    )
    assert_error(response, 415, "charset")
    assert_quiet(caplog)


# --- body size ----------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_before_it_is_read(
    api: TestClient, writer: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    big = json.dumps(user_body(name="x" * (1024 * 1024)))
    response = post_json(api, writer, big)
    body = assert_error(response, 413, "1048576 bytes")
    assert body["error"] == "Content Too Large"
    assert response.headers["X-Request-ID"]
    assert_quiet(caplog)


def test_a_body_without_content_length_is_counted_as_it_is_read() -> None:
    # No operation of the spec reads a chunked body today (Connexion's validators take a body
    # without Content-Length for a missing one), so the count is checked on the middleware.
    reads: list[int] = []

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            reads.append(len(message["body"]))
            if not message["more_body"]:
                return

    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(10)]

    async def receive() -> Message:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent: the error mapper answers")

    limits = RequestLimitsMiddleware(
        reader, max_body_bytes=1024, max_header_count=100, max_header_bytes=16384
    )
    scope = {"type": "http", "method": "POST", "headers": [], "raw_path": b"/users"}
    with pytest.raises(ContentTooLarge, match="1024 bytes"):
        asyncio.run(limits(scope, receive, send))
    assert reads == [400, 400]  # the third read, past the limit, raised instead


def test_the_body_limit_is_a_setting(settings: Settings, writer: dict[str, str]) -> None:
    from storefront.app import create_app

    small = create_app(settings.model_copy(update={"max_body_bytes": 1024}))
    with small.test_client() as client:
        body = json.dumps(user_body(name="x" * 1000))
        assert_error(post_json(client, writer, body), 413, "1024 bytes")
        assert post_json(client, writer, json.dumps(user_body())).status_code == 201


def test_a_content_length_that_is_not_a_number_is_a_400(
    api: TestClient, writer: dict[str, str]
) -> None:
    response = api.post(
        "/users",
        headers={**writer, "Content-Type": "application/json", "Content-Length": "12abc"},
        content=b"{}",
    )
    assert_error(response, 400, "Content-Length")


def test_an_unusable_content_length_on_the_token_endpoint_is_an_invalid_request(
    api: TestClient,
) -> None:
    response = api.post(
        "/auth/token",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": "-1",
        },
        content=b"grant_type=client_credentials",
    )
    assert_oauth_invalid_request(response, "Content-Length")


# --- headers ------------------------------------------------------------------------------


def test_too_many_header_fields_is_a_431(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    headers = [(f"x-h{i}", "1") for i in range(101)]
    response = api.get("/healthz", headers=headers)
    body = assert_error(response, 431, "at most 100")
    assert body["error"] == "Request Header Fields Too Large"
    assert_quiet(caplog)
    assert api.get("/healthz", headers=headers[:80]).status_code == 200


def test_header_fields_over_the_size_limit_are_a_431(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = api.get("/healthz", headers={"X-Big": "x" * 16 * 1024})
    assert_error(response, 431, "16384")
    assert_quiet(caplog)


# --- the head's rules: method, Host, upgrade --------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("host", "a"), ("host", "b")],
        [("host", "a"), ("host", "a")],
        [("host", "exa mple")],
        [("host", "a/b")],
    ],
    ids=["two-hosts", "the-same-host-twice", "a-space", "a-slash"],
)
def test_a_host_other_than_exactly_one_valid_one_is_a_400(
    api: TestClient, caplog: pytest.LogCaptureFixture, headers: list[tuple[str, str]]
) -> None:
    assert_error(api.get("/healthz", headers=headers), 400, "Host")
    assert_quiet(caplog)


@pytest.mark.parametrize("host", ["api.example.com", "api.example.com:8443", "[::1]:80", ""])
def test_a_valid_host_is_served(api: TestClient, host: str) -> None:
    assert api.get("/healthz", headers={"host": host}).status_code == 200


def test_an_http_1_1_request_without_host_is_a_400_and_an_http_1_0_one_is_served() -> None:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    limits = RequestLimitsMiddleware(
        app, max_body_bytes=1024, max_header_count=100, max_header_bytes=16384
    )
    scope = {"type": "http", "method": "GET", "headers": [], "raw_path": b"/healthz"}
    asyncio.run(limits({**scope, "http_version": "1.0"}, receive, send))
    assert sent[0]["status"] == 204
    with pytest.raises(InvalidInput, match="0 Host header fields"):
        asyncio.run(limits({**scope, "http_version": "1.1"}, receive, send))


def test_a_websocket_upgrade_is_a_400_in_the_error_shape(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    for path in ("/healthz", "/users", "/nowhere"):
        assert_error(api.get(path, headers=upgrade), 400, "WebSocket")
    assert_quiet(caplog)


def test_a_websocket_connection_under_a_server_that_speaks_websocket_is_a_400_too(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Under `uvicorn --factory` (a WebSocket protocol installed) the app meets a WebSocket
    # scope, not an HTTP request; it answers through the denial-response extension.
    with pytest.raises(WebSocketDenialResponse) as refused:
        api.websocket_connect("/users").__enter__()
    assert_error(refused.value, 400, "WebSocket")
    assert "x-request-id" in refused.value.headers
    assert_quiet(caplog)


@pytest.mark.parametrize("method", ["PROPFIND", "SEARCH", "FOO", "BREW"])
def test_a_method_the_server_does_not_know_is_a_501_on_every_path(
    api: TestClient, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    for path in ("/users", "/nowhere", "/openapi.json", "/ui/"):
        response = api.request(method, path)
        body = assert_error(response, 501, "method")
        assert body["error"] == "Not Implemented"
    assert_quiet(caplog)


def test_a_body_that_ends_before_its_last_message_is_not_taken_for_whole() -> None:
    """A disconnect part way through a body (the client left, or the server stopped waiting,
    storefront.server) raises: Connexion's reader would take it for the end of the body."""

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    messages = [
        {"type": "http.request", "body": b'{"name": "x"}', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent: the error mapper answers")

    limits = RequestLimitsMiddleware(
        reader, max_body_bytes=1024, max_header_count=100, max_header_bytes=16384
    )
    for headers in ([(b"content-length", b"100")], []):  # announced, and chunked
        scope = {"type": "http", "method": "PUT", "headers": headers, "raw_path": b"/users/x"}
        messages[:] = [
            {"type": "http.request", "body": b'{"name": "x"}', "more_body": True},
            {"type": "http.disconnect"},
        ]
        with pytest.raises(IncompleteBody, match="not carried out"):
            asyncio.run(limits(scope, receive, send))


def test_a_disconnect_after_the_whole_body_passes_through() -> None:
    seen: list[str] = []

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])  # as a streaming response listens for it

    messages = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError

    limits = RequestLimitsMiddleware(
        reader, max_body_bytes=1024, max_header_count=100, max_header_bytes=16384
    )
    scope = {"type": "http", "method": "PUT", "headers": [(b"content-length", b"2")]}
    asyncio.run(limits(scope, receive, send))
    assert seen == ["http.request", "http.disconnect"]


# --- tokens -------------------------------------------------------------------------------


def test_a_token_with_a_string_exp_is_refused_every_time(
    api: TestClient,
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client("read")
    now = int(time.time())
    claims = {
        "iss": "storefront-api",
        "sub": client.client_id,
        "aud": "storefront-api",
        "exp": str(now + 600),
        "iat": now,
        "jti": "j1",
        "client_id": client.client_id,
        "scope": "read",
    }
    api.get("/.well-known/jwks.json")  # the server's first request stores its first key
    key = server_signing_key(settings)  # signed with the server's own key: only exp is wrong
    token = jwt.encode(
        claims, key.private, algorithm=key.algorithm, headers={"typ": "at+jwt", "kid": key.kid}
    )
    for _ in range(2):
        response = api.get("/products", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "invalid")
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert_quiet(caplog)
