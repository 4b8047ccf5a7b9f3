"""``app.add_middleware`` behaves as a Connexion user expects, on both stacks.

A middleware added at a position sees what Connexion promises there: nothing routed before
routing, the operation after it, and the caller once security has run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import connexion
import pytest
from connexion.middleware import MiddlewarePosition
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront import admin

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack

Seen = tuple[str, str | None, str | None]


class Recorder:
    """Records, per request, the operation and the caller it could see."""

    def __init__(self, app: ASGIApp, *, label: str, log: list[Seen]) -> None:
        self.app = app
        self.label = label
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions = scope.get("extensions", {})
            operation = extensions.get("connexion_routing", {}).get("operation_id")
            token_info = extensions.get("connexion_context", {}).get("token_info") or {}
            self.log.append((self.label, operation, token_info.get("sub")))
        await self.app(scope, receive, send)


POSITIONS = {
    "before-swagger": MiddlewarePosition.BEFORE_SWAGGER,
    "before-routing": MiddlewarePosition.BEFORE_ROUTING,
    "before-security": MiddlewarePosition.BEFORE_SECURITY,
    "before-validation": MiddlewarePosition.BEFORE_VALIDATION,
}


def test_middlewares_see_the_operation_and_then_the_caller(
    app: connexion.AsyncApp, make_client: Callable[..., admin.NewClient]
) -> None:
    log: list[Seen] = []
    for label, position in POSITIONS.items():
        app.add_middleware(Recorder, position=position, label=label, log=log)
    app.add_middleware(Recorder, label="default", log=log)  # BEFORE_CONTEXT
    client = make_client("read")
    with app.test_client() as api:
        token = api.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            },
        ).json()["access_token"]
        log.clear()
        response = api.get("/users?limit=1", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        operation = "handlers.users.list_users"
        assert log == [
            ("before-swagger", None, None),
            ("before-routing", None, None),
            ("before-security", operation, None),
            ("before-validation", operation, client.client_id),
            ("default", operation, client.client_id),
        ]

        log.clear()
        refused = api.get("/users?limit=1")
        assert refused.status_code == 401
        # Security refused the request: nothing past it ran.
        assert [label for label, _, _ in log] == [
            "before-swagger",
            "before-routing",
            "before-security",
        ]

        log.clear()
        # Swagger UI's own file (its page is storefront.http.doc_pages', answered before).
        script = api.get("/ui/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert "SwaggerUIBundle" in script.text
        # Swagger UI answered it: only what comes before Swagger UI saw it.
        assert log == [("before-swagger", None, None)]


def test_middlewares_added_at_one_position_run_in_the_order_added(
    app: connexion.AsyncApp,
) -> None:
    log: list[Seen] = []
    app.add_middleware(Recorder, position=MiddlewarePosition.BEFORE_SECURITY, label="a", log=log)
    app.add_middleware(Recorder, position=MiddlewarePosition.BEFORE_SECURITY, label="b", log=log)
    with app.test_client() as api:
        assert api.get("/users").status_code == 401
    assert [label for label, _, _ in log] == ["a", "b"]


def test_no_middleware_can_be_added_once_the_app_started(app: connexion.AsyncApp) -> None:
    with app.test_client() as api:
        api.get("/healthz")
        with pytest.raises(RuntimeError, match="after an application has started"):
            app.add_middleware(Recorder, label="late", log=[])


def test_the_compiled_stack_builds_no_second_router(app: connexion.AsyncApp) -> None:
    """Nothing but the operations layer routes API requests: the app Connexion wraps answers
    only what no operation took (a 404), and builds no router of its own for the spec."""
    with app.test_client() as api:
        api.get("/healthz")
    stack: list[Any] = list(app.middleware.middleware_stack)
    names = [type(layer).__name__ for layer in stack]
    if type(app).__name__ == "CompiledApp":
        assert "RoutingMiddleware" not in names
        assert names[-1] == "NoOperation"
    else:
        assert "RoutingMiddleware" in names
