"""Resource indicators (RFC 8707) at /auth/token, and the audience this API accepts.

The deployment here issues tokens for three resources: its own API (its public URL) and a
path under it, and a reports service elsewhere that trusts its tokens through the JWKS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import jwt
import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from core.settings import Settings, SettingsError, load_settings
from storefront import admin
from storefront.app import create_app
from tests.handlers.test_auth import assert_oauth_error

PUBLIC_URL = "https://api.example.com"
OWN = "https://api.example.com"
OWN_PATH = "https://api.example.com/v1"
REPORTS = "https://reports.example.com"
RESOURCES = [OWN, OWN_PATH, REPORTS]
MakeClient = Callable[..., admin.NewClient]


@pytest.fixture
def resource_api(settings: Settings) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"public_url": PUBLIC_URL, "resources": RESOURCES})
    with create_app(configured).test_client() as api:
        yield api


def ask(api: TestClient, client: admin.NewClient, *resources: str) -> Response:
    # The field repeated, as RFC 8707 §2 has several resources sent (the handler's body joins
    # repeated values with ",": the values as sent are what count).
    fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client.client_id),
        ("client_secret", client.client_secret),
        *[("resource", uri) for uri in resources],
    ]
    return api.post(
        "/auth/token",
        content="&".join(f"{k}={quote_plus(v)}" for k, v in fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def audience(response: Response) -> Any:
    assert response.status_code == 200, response.text
    return jwt.decode(response.json()["access_token"], options={"verify_signature": False})["aud"]


def users(api: TestClient, response: Response) -> Response:
    return api.get("/users", headers={"Authorization": f"Bearer {response.json()['access_token']}"})


@pytest.mark.stock_stack
def test_a_token_for_one_resource_has_it_as_its_audience(
    resource_api: TestClient, make_client: MakeClient
) -> None:
    client = make_client("read")
    for resource in (OWN, OWN_PATH, REPORTS):
        assert audience(ask(resource_api, client, resource)) == resource


@pytest.mark.stock_stack
def test_a_token_for_several_resources_lists_them(
    resource_api: TestClient, make_client: MakeClient
) -> None:
    client = make_client("read")
    assert audience(ask(resource_api, client, OWN, REPORTS)) == [OWN, REPORTS]
    assert audience(ask(resource_api, client, REPORTS, OWN_PATH, OWN)) == [REPORTS, OWN_PATH, OWN]
    assert audience(ask(resource_api, client, OWN, OWN)) == OWN  # asked twice is asked once


def test_without_resource_the_audience_is_the_default(
    resource_api: TestClient, make_client: MakeClient, settings: Settings
) -> None:
    client = make_client("read")
    response = ask(resource_api, client)
    assert audience(response) == settings.audience
    assert users(resource_api, response).status_code == 200


@pytest.mark.stock_stack
@pytest.mark.parametrize(
    ("resource", "words"),
    [
        ("https://elsewhere.example.com", "is not one this server issues tokens for"),
        ("https://api.example.com/", "is not one this server issues tokens for"),
        ("api.example.com", "is not an absolute URI"),
        ("/users", "is not an absolute URI"),
        ("https://api.example.com#users", "has a fragment"),
    ],
)
def test_a_resource_not_listed_or_not_an_absolute_uri_is_invalid_target(
    resource_api: TestClient, make_client: MakeClient, resource: str, words: str
) -> None:
    client = make_client("read")
    body = assert_oauth_error(ask(resource_api, client, resource), 400, "invalid_target")
    assert words in body["message"], body["message"]
    # One bad resource among good ones refuses the request.
    assert_oauth_error(ask(resource_api, client, OWN, resource), 400, "invalid_target")


def test_this_api_accepts_tokens_for_the_resources_it_serves_only(
    resource_api: TestClient, make_client: MakeClient
) -> None:
    client = make_client("read")
    for own in (OWN, OWN_PATH):
        assert users(resource_api, ask(resource_api, client, own)).status_code == 200
    # A token for the reports service is that service's: refused here, with the reason.
    elsewhere = users(resource_api, ask(resource_api, client, REPORTS))
    assert elsewhere.status_code == 401
    assert "for another resource" in elsewhere.json()["message"]
    assert 'error="invalid_token"' in elsewhere.headers["WWW-Authenticate"]
    # One of its audiences served here is enough.
    assert users(resource_api, ask(resource_api, client, REPORTS, OWN)).status_code == 200


def test_without_a_public_url_only_the_default_audience_is_served(
    settings: Settings, make_client: MakeClient
) -> None:
    configured = settings.model_copy(update={"resources": RESOURCES})
    client = make_client("read")
    with create_app(configured).test_client() as api:
        assert users(api, ask(api, client, OWN)).status_code == 401
        assert users(api, ask(api, client)).status_code == 200


def test_introspection_and_revocation_know_tokens_for_every_listed_resource(
    resource_api: TestClient, make_client: MakeClient
) -> None:
    client = make_client("read")
    access = ask(resource_api, client, REPORTS, OWN_PATH).json()["access_token"]
    creds = {"client_id": client.client_id, "client_secret": client.client_secret}
    looked = resource_api.post("/auth/introspect", data={"token": access, **creds})
    assert looked.status_code == 200, looked.text
    assert looked.json()["active"] is True
    assert looked.json()["aud"] == [REPORTS, OWN_PATH]
    resource_api.post("/auth/revoke", data={"token": access, **creds})
    gone = resource_api.post("/auth/introspect", data={"token": access, **creds})
    assert gone.json() == {"active": False}


def test_discovery_lists_the_resources(resource_api: TestClient, settings: Settings) -> None:
    metadata = resource_api.get("/.well-known/oauth-authorization-server").json()
    assert metadata["protected_resources"] == RESOURCES
    with create_app(settings).test_client() as plain:
        assert (
            "protected_resources" not in plain.get("/.well-known/oauth-authorization-server").json()
        )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("api.example.com", "is not an absolute URI"),
        ("https://api.example.com#top", "has a fragment"),
        ("https://a.example, /relative", "is not an absolute URI"),
    ],
)
def test_the_setting_takes_absolute_uris_only(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    monkeypatch.setenv("STOREFRONT_RESOURCES", value)
    with pytest.raises(SettingsError, match="STOREFRONT_RESOURCES") as raised:
        load_settings(_env_file=None)
    assert words in str(raised.value)


def test_the_setting_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_RESOURCES", f"{OWN}, {REPORTS},{OWN}")
    assert load_settings(_env_file=None).resources == [OWN, REPORTS]


@pytest.mark.parametrize(
    ("uri", "under"),
    [
        ("https://api.example.com", True),
        ("https://api.example.com/", True),
        ("https://API.example.com/v1/users", True),
        ("https://api.example.com:443/v1", False),  # a port written is another origin here
        ("http://api.example.com", False),
        ("https://api.example.com.evil.example", False),
        ("https://evil.example/https://api.example.com", False),
    ],
)
def test_which_resources_name_this_server(uri: str, under: bool) -> None:
    from storefront.access.resources import is_under

    assert is_under(uri, PUBLIC_URL) is under
    assert is_under("https://api.example.com/v10", "https://api.example.com/v1") is False
    assert is_under("https://api.example.com/v1/x", "https://api.example.com/v1/") is True
