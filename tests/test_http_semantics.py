"""HTTP semantics a client sees on the wire, against a real ``storefront serve``: the
challenge of a failed client authentication (RFC 6749 §5.2).

On SQLite and PostgreSQL; the module's tests share one server per backend (starting it is
most of the cost). The server validates its own responses against openapi.yaml, so every
header and status here is also one the spec declares.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.servers import Server, clean_env, serving, storefront_json

BASIC_CHALLENGE = 'Basic realm="storefront", charset="UTF-8"'


@pytest.fixture(scope="module")
def server(
    module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("semantics")
    env = clean_env(
        **module_database_env,
        STOREFRONT_KEY_DIR=str(directory / "keys"),
        STOREFRONT_VALIDATE_RESPONSES="true",
        # The challenges' tests fail to authenticate on purpose, many times.
        STOREFRONT_AUTH_FAILURE_LIMIT="10000/minute",
    )
    with serving(directory, env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> dict[str, str]:
    return storefront_json(server.env, "clients", "create", "--name", "semantics")


@pytest.fixture
def api(server: Server, client: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client of the server, authorized with a fresh read+write token."""
    form = {"grant_type": "client_credentials", **client}
    token = httpx.post(f"{server.base}/auth/token", data=form).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as http:
        yield http


# RFC 6749 §5.2: a client that used the Authorization header gets a challenge.


ENDPOINTS = {
    "/auth/introspect": "token",
    "/auth/revoke": "token",
    "/auth/token": "grant_type",
}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_bearer_token_alone_is_invalid_client_with_a_basic_challenge(
    server: Server, client: dict[str, str], api: httpx.Client, path: str
) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")
    form = {ENDPOINTS[path]: token if ENDPOINTS[path] == "token" else "client_credentials"}

    response = httpx.post(f"{server.base}{path}", data=form, headers=api.headers)

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["error_description"] == body["message"]
    assert "HTTP Basic" in body["message"]
    assert response.headers["cache-control"] == "no-store"
    # Refused, not carried out: the token still works.
    assert api.get("/users", params={"limit": 1}).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_the_token_endpoints_other_challenges_stay_as_they_were(
    server: Server, client: dict[str, str], api: httpx.Client, path: str
) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")
    form = {ENDPOINTS[path]: token if ENDPOINTS[path] == "token" else "client_credentials"}
    wrong = (client["client_id"], "not-the-secret")

    basic = httpx.post(f"{server.base}{path}", data=form, auth=wrong)
    in_form = httpx.post(
        f"{server.base}{path}",
        data={**form, "client_id": wrong[0], "client_secret": wrong[1]},
    )
    right = httpx.post(f"{server.base}{path}", data=form, auth=tuple(client.values()))

    assert (basic.status_code, basic.json()["error"]) == (401, "invalid_client")
    assert basic.headers["www-authenticate"] == BASIC_CHALLENGE
    # Form credentials never draw a challenge: a browser would show a login dialog.
    assert (in_form.status_code, in_form.json()["error"]) == (401, "invalid_client")
    assert "www-authenticate" not in in_form.headers
    assert right.status_code == 200, right.text
    assert "www-authenticate" not in right.headers
