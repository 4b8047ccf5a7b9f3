"""Resource scopes through the real app: each scope against each route family, with tokens and
API keys alike, and tokens asked for a narrower scope than the client holds.

The expectations are written out here, not computed with core.scopes, so that a change to
the rule there shows up as a failing row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from storefront import admin

#: Of what the stacks do differently (security, challenges): also on Connexion's stock stack.
pytestmark = pytest.mark.stock_stack

MakeClient = Callable[..., admin.NewClient]
MakeKey = Callable[[str], admin.NewApiKey]
TokenFor = Callable[..., str]
Headers = dict[str, str]
PASSWORD = "password1"

#: Each route family: the scope it needs (None: any credential will do), and its success code.
ROUTES: dict[str, tuple[str | None, int]] = {
    "GET /users": ("users:read", 200),
    "GET /users/{id}": ("users:read", 200),
    "POST /users": ("users:write", 201),
    "PUT /users/{id}": ("users:write", 200),
    "DELETE /users/{id}": ("users:write", 204),
    "GET /products": ("products:read", 200),
    "GET /products/{id}": ("products:read", 200),
    "POST /products": ("products:write", 201),
    "PUT /products/{id}": ("products:write", 200),
    "DELETE /products/{id}": ("products:write", 204),
    "GET /rate_limit": (None, 200),
}
#: What each scope opens, besides GET /rate_limit which any credential may call.
OPENS: dict[str, set[str]] = {
    "read": {"GET /users", "GET /users/{id}", "GET /products", "GET /products/{id}"},
    "write": {
        "POST /users",
        "PUT /users/{id}",
        "DELETE /users/{id}",
        "POST /products",
        "PUT /products/{id}",
        "DELETE /products/{id}",
    },
    "users:read": {"GET /users", "GET /users/{id}"},
    "users:write": {"POST /users", "PUT /users/{id}", "DELETE /users/{id}"},
    "products:read": {"GET /products", "GET /products/{id}"},
    "products:write": {"POST /products", "PUT /products/{id}", "DELETE /products/{id}"},
}
#: The broad scope that would do as well, as the 403 suggests it.
BROAD = {
    "users:read": "read",
    "users:write": "write",
    "products:read": "read",
    "products:write": "write",
}


def send(api: TestClient, route: str, headers: Headers, target_id: str, n: int) -> Response:
    """``route`` sent with ``headers``; ``{id}`` is ``target_id``, a user's or a product's."""
    method, path = route.split(" ")
    kwargs: dict[str, Any] = {"headers": headers}
    products = path.startswith("/products")
    if method == "POST":
        kwargs["json"] = (
            {"name": f"New {n}", "price": 1, "category": "Tools"}
            if products
            else {"name": "New", "email": f"new{n}@example.com", "password": PASSWORD}
        )
    elif method == "PUT":
        kwargs["json"] = {"price": 2} if products else {"name": f"Renamed {n}"}
    return api.request(method, path.replace("{id}", target_id), **kwargs)


def assert_forbidden(response: Response, needed: str, held: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "error": "Forbidden",
        "message": f"This operation needs the scope '{needed}' (or '{BROAD[needed]}'); "
        f"the credential grants '{held}'.",
    }
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="storefront", error="insufficient_scope", scope="{needed}"'
    )


@pytest.fixture
def admin_headers(auth: Callable[..., Headers]) -> Headers:
    return auth("read write")


@pytest.mark.parametrize("credential", ["token", "api key (Bearer)", "api key (X-API-Key)"])
def test_each_scope_against_each_route_family(
    api: TestClient,
    make_client: MakeClient,
    make_api_key: MakeKey,
    token_for: TokenFor,
    admin_headers: Headers,
    credential: str,
    subtests: pytest.Subtests,
) -> None:
    n = 0
    for scope, opens in OPENS.items():
        client = make_client(scope, name=scope)
        if credential == "token":
            headers = {"Authorization": f"Bearer {token_for(client)}"}
        elif credential == "api key (Bearer)":
            headers = {"Authorization": f"Bearer {make_api_key(client.client_id).api_key}"}
        else:
            headers = {"X-API-Key": make_api_key(client.client_id).api_key}
        for route, (needed, success) in ROUTES.items():
            n += 1
            # A user or a product of its own for each request, for PUT and DELETE to act on.
            if route.split(" ")[1].startswith("/products"):
                target = {"name": f"Target {n}", "price": 1, "category": "Tools"}
                created = api.post("/products", headers=admin_headers, json=target)
            else:
                user = {"name": "Target", "email": f"target{n}@example.com", "password": PASSWORD}
                created = api.post("/users", headers=admin_headers, json=user)
            assert created.status_code == 201, created.text
            with subtests.test(scope=scope, route=route):
                response = send(api, route, headers, created.json()["id"], n)
                if needed is None or route in opens:
                    assert response.status_code == success, response.text
                else:
                    assert_forbidden(response, needed, scope)


def test_two_resource_scopes_together(
    api: TestClient, make_client: MakeClient, token_for: TokenFor
) -> None:
    client = make_client("products:read users:write")
    assert client.scopes == ["users:write", "products:read"]  # stored in the vocabulary's order
    headers = {"Authorization": f"Bearer {token_for(client)}"}
    assert api.get("/products", headers=headers).status_code == 200
    user = {"name": "A", "email": "a@example.com", "password": PASSWORD}
    assert api.post("/users", headers=headers, json=user).status_code == 201
    assert_forbidden(api.get("/users", headers=headers), "users:read", "users:write products:read")


def test_a_token_asked_for_a_narrower_scope(api: TestClient, make_client: MakeClient) -> None:
    client = make_client("read write")
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "scope": "users:read",
    }
    issued = api.post("/auth/token", data=form)
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "users:read"  # what was asked, not the read that covers it
    headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert api.get("/users", headers=headers).status_code == 200
    assert_forbidden(api.get("/products", headers=headers), "products:read", "users:read")
    user = {"name": "A", "email": "a@example.com", "password": PASSWORD}
    assert_forbidden(api.post("/users", headers=headers, json=user), "users:write", "users:read")


def test_validate_scope_answers_as_core_scopes_and_remembers_a_bounded_number() -> None:
    from core import scopes
    from storefront.access.authn import SCOPE_ANSWERS_MAX, _satisfied, validate_scope

    held_sets = [[], ["read"], ["write"], ["users:read"], ["read", "write"], ["products:write"]]
    for required in (["users:read"], ["users:write"], ["read"], ["products:read", "users:read"]):
        for held in held_sets:
            for _ in range(2):  # answered, then remembered: the same answer
                assert validate_scope(required, held) == (not scopes.missing(required, held))
    assert _satisfied.cache_info().maxsize == SCOPE_ANSWERS_MAX
