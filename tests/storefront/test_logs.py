"""Logs: one access line per request, JSON when asked, a request id, and never a secret."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable

import jwt
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from core.settings import Settings
from storefront import admin
from storefront.logs import configure_logging
from tests.helpers import db_rows, server_signing_key

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "storefront.access"]


def test_no_secret_reaches_any_log_line(
    api: TestClient,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[[str], admin.NewApiKey],
) -> None:
    caplog.set_level(logging.DEBUG)  # everything any library would say
    client = make_client("read write")
    key = make_api_key(client.client_id).api_key
    basic = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
    passwords = ["correct horse battery", "staple-2-replacement", "tiny7ch"]

    token_response = api.post(
        "/auth/token",
        headers={"Authorization": f"Basic {basic}"},
        data={"grant_type": "client_credentials"},
    )
    token = token_response.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    user = api.post(
        "/users",
        headers=bearer,
        json={"name": "A", "email": "a@example.com", "password": passwords[0]},
    ).json()
    api.put(f"/users/{user['id']}", headers=bearer, json={"password": passwords[1]})
    api.post(
        "/users",
        headers=bearer,
        json={"name": "B", "email": "b@example.com", "password": passwords[2]},
    )
    api.get("/users", headers={"X-API-Key": key})
    api.get("/products", headers={"Authorization": f"Bearer {key}"})
    api.get("/users", headers={"Authorization": f"Bearer {token}x"})  # a tampered token
    api.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret + "x",
        },
    )
    api.get("/users", params={"access_token": token})  # never read, never logged
    refused, forged = refused_requests(api, settings, client, bearer, token, passwords[0])

    # The server's records only: the test's own HTTP client logs the URLs it requests.
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in server)
    [(stored_hash,)] = db_rows(settings, "SELECT password_hash FROM users")
    secrets = [client.client_secret, key, key.removeprefix("sk_"), token, basic, *passwords]
    secrets += [forged]
    secrets += [stored_hash, stored_hash.rsplit("$", 1)[-1]]  # derived from a password too
    for secret in secrets:
        assert secret not in logged
    assert "authorization" not in logged.lower()
    assert len(access_records(caplog)) == 9 + refused  # one line per request, no more


def refused_requests(
    api: TestClient,
    settings: Settings,
    client: admin.NewClient,
    bearer: dict[str, str],
    token: str,
    password: str,
) -> tuple[int, str]:
    """Requests refused for their size or shape, each carrying a secret: how many, and a
    token (signed, with a string ``exp``) they sent."""
    credentials = {"client_id": client.client_id, "client_secret": client.client_secret}
    statuses = [
        # A form of too many fields; one with a field over the limit; one over the body limit.
        api.post(
            "/auth/token",
            data={"grant_type": "client_credentials", **credentials}
            | {f"f{i}": "x" for i in range(150)},
        ).status_code,
        api.post(
            "/auth/token",
            data={"grant_type": "client_credentials", **credentials, "pad": "p" * 9000},
        ).status_code,
        api.post(
            "/auth/token",
            data={"grant_type": "client_credentials", **credentials, "pad": "p" * 2**20},
        ).status_code,
    ]
    json_headers = {**bearer, "Content-Type": "application/json"}
    user = '"email": "s@example.com", "password": "PASSWORD"'
    for body in (
        '{"name": "\\ud800", ' + user + "}",  # a lone surrogate
        '{"name": 1' + "0" * 4500 + ", " + user + "}",  # a number of 4,501 digits
        '{"name": ' + "[" * 100 + "]" * 100 + ", " + user + "}",  # nested 100 deep
        '{"name": NaN, ' + user + "}",
        '{"name": "' + "x" * 2**20 + '", ' + user + "}",  # over the body limit
    ):
        text = body.replace("PASSWORD", password)
        statuses.append(api.post("/users", headers=json_headers, content=text).status_code)
    many = [(f"x-h{i}", "1") for i in range(120)]
    statuses.append(api.get("/users", headers=[*bearer.items(), *many]).status_code)
    statuses.append(
        api.get(
            "/users", headers={**bearer, "X-Big": token * (2**14 // len(token) + 1)}
        ).status_code
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    key = server_signing_key(settings)  # the server's own key: only exp is wrong
    forged = jwt.encode(
        {**claims, "exp": str(claims["exp"])},
        key.private,
        algorithm=key.algorithm,
        headers=jwt.get_unverified_header(token),
    )
    for _ in range(2):  # the second use was a 500
        statuses.append(
            api.get("/users", headers={"Authorization": f"Bearer {forged}"}).status_code
        )
    assert statuses == [400, 400, 413, 400, 400, 400, 400, 413, 431, 431, 401, 401]
    return len(statuses), forged


def test_access_line_names_route_status_caller_and_request_id(
    api: TestClient, auth: Callable[..., dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth("read")
    caplog.clear()
    caplog.set_level(logging.INFO, logger="storefront.access")
    response = api.get("/users/user_missing000", headers={**headers, "X-Request-ID": "req-42"})
    assert response.headers["X-Request-ID"] == "req-42"
    [record] = access_records(caplog)
    fields = record.__dict__
    assert (fields["method"], fields["path"], fields["status"]) == ("GET", "/users/{id}", 404)
    assert fields["client_id"].startswith("cli_")
    assert fields["key_id"] is None
    assert fields["request_id"] == "req-42"
    assert fields["duration_ms"] >= 0
    assert "GET /users/{id} 404" in record.getMessage()


@pytest.mark.parametrize("sent", ["has spaces", "x" * 200, "new\\nline", ""])
def test_an_unusable_request_id_is_replaced(api: TestClient, sent: str) -> None:
    response = api.get("/healthz", headers={"X-Request-ID": sent})
    returned = response.headers["X-Request-ID"]
    assert returned != sent
    assert len(returned) == 32


def test_every_response_carries_a_request_id_and_security_headers(api: TestClient) -> None:
    for response in (api.get("/nowhere"), api.get("/users"), api.patch("/users"), api.get("/ui/")):
        assert len(response.headers["X-Request-ID"]) == 32
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "server" not in response.headers


def test_json_format_writes_one_object_per_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings.model_copy(update={"log_format": "json"}))
    try:
        logging.getLogger("storefront.access").info(
            "GET /users 200", extra={"method": "GET", "path": "/users", "status": 200}
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["logger"] == "storefront.access"
        assert record["level"] == "INFO"
        assert (record["method"], record["path"], record["status"]) == ("GET", "/users", 200)
        assert "time" in record
    finally:
        logging.getLogger().handlers.clear()


@given(
    moments=st.lists(
        st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False), min_size=1, max_size=5
    ),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata"]),
)
@hyp_settings(max_examples=300, deadline=None)
def test_the_time_of_a_line_is_what_logging_writes(moments: list[float], zone: str) -> None:
    """The formatters remember the current second's stamp; every line still reads as
    logging.Formatter would write it, in any time zone, with or without a datefmt."""
    import os
    import time

    from storefront.logs import JSONFormatter, TextFormatter

    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        for ours in (TextFormatter("%(asctime)s"), JSONFormatter("%(asctime)s")):
            plain = logging.Formatter()
            for moment in [*moments, *moments]:  # again: from the remembered stamp
                record = logging.makeLogRecord({"created": moment, "msecs": moment % 1 * 1000})
                assert ours.formatTime(record) == plain.formatTime(record)
                assert ours.formatTime(record, "%H:%M") == plain.formatTime(record, "%H:%M")
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
