"""The compiled pipeline on its own: a small spec, served by ``CompiledApp`` without the rest of
Storefront (no database, no security), checked against what Connexion's stock app answers."""

from __future__ import annotations

from typing import Any

import connexion
import pytest
from connexion.middleware import MiddlewarePosition
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.http.compiled import CompiledApp
from storefront.http.compiled.app import SwaggerUIGate
from storefront.http.compiled.pipeline import OPERATION, CompiledOperation
from storefront.http.state import route_of
from storefront.http.validators import validator_map

H = "tests.http.compiled.fake_handlers"
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "things", "version": "1"},
    "paths": {
        "/things/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "operationId": f"{H}.get_thing",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 5}},
                    {"name": "flag", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": {"description": "a thing"}},
            },
            "put": {
                "operationId": f"{H}.put_thing",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"n": {"type": "integer"}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "the thing"}},
            },
        },
        "/form": {
            "post": {
                "operationId": f"{H}.post_form",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "the form as bound"}},
            }
        },
        "/sync": {
            "get": {"operationId": f"{H}.sync_thing", "responses": {"200": {"description": "ok"}}}
        },
    },
}


FORM = {"content-type": "application/x-www-form-urlencoded"}
#: What Connexion's own binder makes of the form above (checked on both stacks).
EXPECTED_FORM = {"body": {"a": "1,2", "b": "x", "c": "extra"}}


def serve(app_cls: type[connexion.AsyncApp]) -> connexion.AsyncApp:
    app = app_cls(__name__)
    app.add_api(SPEC, strict_validation=True, pythonic_params=True, validator_map=validator_map())
    return app


@pytest.fixture(params=[CompiledApp, connexion.AsyncApp], ids=["compiled", "stock"])
def things(request: pytest.FixtureRequest) -> Any:
    with serve(request.param).test_client() as client:
        yield client


def test_arguments_are_bound_and_converted_as_connexion_binds_them(things: Any) -> None:
    assert things.get("/things/a7").json() == {"id": "a7", "limit": 5, "flag": False}
    assert things.get("/things/a7?limit=12&flag=true").json() == {
        "id": "a7",
        "limit": 12,
        "flag": True,
    }
    assert things.put("/things/b", json={"n": 3}).json() == {"id": "b", "body": {"n": 3}}
    assert things.get("/sync").json() == {"sync": True}
    # A form: known fields as strings, unknown ones kept (additionalProperties defaults to
    # true), a repeated field as Connexion's form binder leaves it.
    form = things.post("/form", content=b"a=1&b=x&c=extra&a=2", headers=FORM)
    assert form.json() == EXPECTED_FORM


def test_validation_refuses_what_the_spec_does_not_allow(things: Any) -> None:
    assert things.get("/things/a?limit=x").status_code == 400
    assert things.get("/things/a?unknown=1").status_code == 400  # strict validation
    assert things.put("/things/a", json={"n": "three"}).status_code == 400
    assert (
        things.put("/things/a", content=b"n=3", headers={"content-type": "text/plain"}).status_code
        == 415
    )


def test_routing_answers_404_405_and_head_as_starlette_does(things: Any) -> None:
    assert things.get("/nothing").status_code == 404
    assert things.delete("/things/a").status_code == 405
    head = things.head("/things/a")
    assert head.status_code == 200
    assert head.content == b""


class SeesOperation:
    def __init__(self, app: ASGIApp, *, seen: list[Any]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append((scope.get(OPERATION), route_of(scope)))
        await self.app(scope, receive, send)


def test_stages_find_their_operation_again_after_a_middleware() -> None:
    seen: list[Any] = []
    app = serve(CompiledApp)
    app.add_middleware(SeesOperation, position=MiddlewarePosition.BEFORE_VALIDATION, seen=seen)
    with app.test_client() as client:
        assert client.get("/things/z?limit=2").json()["limit"] == 2
        assert client.get("/sync").json() == {"sync": True}
    operations = [operation for operation, _ in seen]
    assert all(isinstance(op, CompiledOperation) for op in operations)
    assert [op.operation_id for op in operations] == [f"{H}.get_thing", f"{H}.sync_thing"]
    assert [route for _, route in seen] == ["/things/{id}", "/sync"]


def test_swagger_ui_is_asked_only_about_its_own_paths() -> None:
    app = serve(CompiledApp)
    with app.test_client() as client:
        gate = next(m for m in app.middleware.middleware_stack if isinstance(m, SwaggerUIGate))
        # This app serves Connexion's spec too (create_app turns that off and serves its own).
        assert {"/openapi.json", "/ui", "/ui/"} <= set(gate.prefixes)
        asked: list[str] = []
        router = gate.router

        async def spy(scope: Scope, receive: Receive, send: Send) -> None:
            asked.append(scope["path"])
            await router(scope, receive, send)

        gate.router = spy
        assert client.get("/things/a").status_code == 200
        assert client.get("/nothing").status_code == 404
        assert client.get("/ui/").status_code == 200
        assert "swagger" in client.get("/ui/").text.lower()
    assert asked == ["/ui/", "/ui/"]
