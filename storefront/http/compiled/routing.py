"""The compiled stack's router: one dict lookup for a static path, then the templated paths,
compiled the way Connexion's router compiles them (``starlettify_path`` and Starlette's
``compile_path``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from connexion.frameworks.starlette import starlettify_path
from connexion.jsonifier import Jsonifier
from connexion.middleware.abstract import RoutedAPI, SpecMiddleware
from connexion.operations import AbstractOperation
from connexion.security import SecurityHandlerFactory
from connexion.spec import Specification
from connexion.validators import VALIDATOR_MAP
from starlette.exceptions import HTTPException
from starlette.routing import Router, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.http.compiled.pipeline import OPERATION, ASGICallable, CompiledOperation
from storefront.http.state import publish_route

#: A middleware as Connexion keeps it: a class, or a partial of one with its options.
MiddlewareFactory = Callable[[ASGIApp], ASGIApp]


class _Route:
    """A path of the spec: its operations by method, and how to recognise its URLs."""

    __slots__ = ("convertors", "methods", "regex", "template")

    def __init__(self, path: str) -> None:
        self.regex, _, self.convertors = compile_path(path)
        #: The spec's form of the path (``/users/{id}``): a bounded log and metric label.
        self.template = re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", path)
        self.methods: dict[str, CompiledOperation] = {}

    def operation(self, method: str) -> CompiledOperation | None:
        found = self.methods.get(method)
        if found is None and method == "HEAD":  # as Starlette's routes do
            found = self.methods.get("GET")
        return found


class CompiledAPI(RoutedAPI[CompiledOperation]):  # type: ignore[misc]
    def __init__(
        self,
        specification: Specification,
        *,
        next_app: ASGIApp,
        pythonic_params: bool = False,
        jsonifier: Any = None,
        strict_validation: bool = False,
        validator_map: dict[str, Any] | None = None,
        validate_responses: bool = False,
        security_map: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(specification, next_app=next_app, **kwargs)
        self._options = {
            "pythonic_params": pythonic_params,
            "jsonifier": jsonifier or Jsonifier(),
            "strict_validation": strict_validation,
            "validator_map": {**VALIDATOR_MAP, **(validator_map or {})},
            "validate_responses": validate_responses,
            "security_handler_factory": SecurityHandlerFactory(security_map),
        }
        self.add_paths()
        #: Paths without parameters, looked up whole; the others, tried in order.
        self.static: dict[str, _Route] = {}
        self.templated: dict[str, _Route] = {}
        for compiled in self.operations.values():
            operation = compiled.operation
            path = (self.base_path or "") + starlettify_path(
                operation.path, operation.get_path_parameter_types()
            )
            routes = self.templated if "{" in path else self.static
            route = routes.get(path) or routes.setdefault(path, _Route(path))
            route.methods[operation.method.upper()] = compiled

    def make_operation(self, operation: AbstractOperation) -> CompiledOperation:
        return CompiledOperation(operation, base_path=self.base_path or "", **self._options)

    def match(self, path: str) -> tuple[_Route, dict[str, Any]] | None:
        """The route of this URL path and its path parameters (None: no path of the spec)."""
        route = self.static.get(path)
        if route is not None:
            return route, {}
        for route in self.templated.values():
            found = route.regex.match(path)
            if found is not None:
                params = {
                    key: route.convertors[key].convert(value)
                    for key, value in found.groupdict().items()
                }
                return route, params
        return None


def _chain(factories: Sequence[MiddlewareFactory], stage: str) -> ASGICallable | None:
    """The middlewares added between two stages, in the order they were added, ending in the
    next stage of whichever operation the request was routed to (None: no middleware)."""
    if not factories:
        return None

    async def next_stage(scope: Scope, receive: Receive, send: Send) -> None:
        await getattr(scope[OPERATION], stage)(scope, receive, send)

    app: ASGIApp = next_stage
    for factory in reversed(factories):
        app = factory(app)
    return app


class Slots:
    """Middlewares added at the positions that lie inside the compiled pipeline."""

    def __init__(self) -> None:
        self.before_security: list[MiddlewareFactory] = []
        self.before_validation: list[MiddlewareFactory] = []
        self.before_context: list[MiddlewareFactory] = []


class OperationsMiddleware(SpecMiddleware):  # type: ignore[misc]
    """Routes a request to its compiled operation and runs it; anything else goes on to the
    next app (the lifespan, then :class:`NoOperation`)."""

    def __init__(self, app: ASGIApp, *, slots: Slots) -> None:
        self.app = app
        self.slots = slots
        self.apis: list[CompiledAPI] = []

    def add_api(self, specification: Specification, **kwargs: Any) -> CompiledAPI:
        api = CompiledAPI(specification, next_app=self.app, **kwargs)
        after_routing = _chain(self.slots.before_security, "secure")
        after_security = _chain(self.slots.before_validation, "validate")
        after_validation = _chain(self.slots.before_context, "respond")
        for operation in api.operations.values():
            operation.after_routing = after_routing or operation.after_routing
            operation.after_security = after_security or operation.after_security
            operation.after_validation = after_validation or operation.after_validation
        self.apis.append(api)
        return api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"][len(scope.get("root_path", "")) :] or "/"
            for api in self.apis:
                found = api.match(path)
                if found is None:
                    continue
                route, path_params = found
                publish_route(scope, route.template)
                operation = route.operation(scope["method"])
                if operation is not None:
                    await operation(scope, receive, send, path_params)
                    return
                # A path of the spec, not this method: a 405 (storefront.http.problems adds
                # the Allow header, from the spec, as on the stock stack).
                raise HTTPException(405)
        await self.app(scope, receive, send)


class NoOperation:
    """The end of the line for a request no operation took and Swagger UI did not serve: a
    404, raised to the app's error handlers. It is the app Connexion's middlewares wrap, in
    place of the Starlette app that would route every request a second time. Lifespan events
    reach it only when the app has no lifespan handler: a bare Starlette router answers them,
    as the stock app's does."""

    def __init__(self) -> None:
        self.lifespan = Router()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raise HTTPException(404)
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)


def operations_middleware(slots: Slots) -> MiddlewareFactory:
    return partial(OperationsMiddleware, slots=slots)
