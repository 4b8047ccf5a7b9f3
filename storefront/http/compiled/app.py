"""``CompiledApp``: a ``connexion.AsyncApp`` whose request path is the compiled pipeline.

Its middleware list (Connexion's public ``middlewares=`` option) is Connexion's own, in
Connexion's order, with the five routed layers and the routing app replaced by
:class:`~storefront.http.compiled.routing.OperationsMiddleware`::

    ServerError → Exception → SwaggerUI (gated) → Operations[security → validation →
    context+handler → response validation] → Lifespan → NoOperation (404)

``add_middleware`` keeps Connexion's contract for every position: ``BEFORE_EXCEPTION`` and
``BEFORE_SWAGGER`` go into the list as usual, ``BEFORE_ROUTING`` just before the operations
layer, and ``BEFORE_SECURITY``, ``BEFORE_VALIDATION`` and ``BEFORE_CONTEXT`` (the default)
between the pipeline's stages, where the stock stack has them: after routing, so they see the
operation, and (past security) the caller.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import connexion
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.http.compiled.routing import (
    MiddlewareFactory,
    NoOperation,
    Slots,
    operations_middleware,
)


class SwaggerUIGate(SwaggerUIMiddleware):  # type: ignore[misc]
    """Connexion's Swagger UI middleware, asked only about the paths it has routes for.

    For every other request it would copy the scope and try a dozen routes of its router, a
    twentieth of a token request's time; which paths it serves is known once its APIs are
    added (the static start of each route's path, under its mount)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.prefixes: tuple[str, ...] = ()

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        prefixes = set()
        for mount in self.router.routes:
            for route in getattr(mount, "routes", None) or [mount]:
                path = getattr(mount, "path", "") + route.path if route is not mount else route.path
                prefixes.add(path.split("{", 1)[0] or "/")
        self.prefixes = tuple(sorted(prefixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"][len(scope.get("root_path", "")) :]
            if not path.startswith(self.prefixes):
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


#: Connexion's default middlewares by class name, from the list its documentation describes
#: (ConnexionMiddleware.default_middlewares): the compiled app keeps three of them as they
#: are, around its own layers.
_DEFAULTS = {
    middleware.__name__: middleware for middleware in ConnexionMiddleware.default_middlewares
}


class CompiledApp(connexion.AsyncApp):  # type: ignore[misc]
    def __init__(self, import_name: str, **kwargs: Any) -> None:
        self.slots = Slots()
        self._operations = operations_middleware(self.slots)
        middlewares = [
            _DEFAULTS["ServerErrorMiddleware"],
            _DEFAULTS["ExceptionMiddleware"],
            SwaggerUIGate,
            self._operations,
            _DEFAULTS["LifespanMiddleware"],
        ]
        super().__init__(import_name, middlewares=middlewares, **kwargs)
        # Nothing reaches the app Connexion wraps but requests no operation took: a plain 404,
        # rather than a Starlette app with a second router for the whole spec.
        self.middleware.app = NoOperation()

    def add_middleware(
        self,
        middleware_class: Any,
        position: MiddlewarePosition = MiddlewarePosition.BEFORE_CONTEXT,
        **options: Any,
    ) -> None:
        if position is MiddlewarePosition.BEFORE_SWAGGER:
            self._insert_before(SwaggerUIGate, middleware_class, options)
            return
        slot = {
            MiddlewarePosition.BEFORE_SECURITY: self.slots.before_security,
            MiddlewarePosition.BEFORE_VALIDATION: self.slots.before_validation,
            MiddlewarePosition.BEFORE_CONTEXT: self.slots.before_context,
        }.get(position)
        if slot is None and position is not MiddlewarePosition.BEFORE_ROUTING:
            super().add_middleware(middleware_class, position=position, **options)
            return
        if slot is None:  # BEFORE_ROUTING: just before the operations layer
            self._insert_before(self._operations, middleware_class, options)
            return
        self._not_started()
        slot.append(partial(middleware_class, **options))  # as Connexion keeps one

    def _insert_before(self, entry: Any, middleware_class: Any, options: dict[str, Any]) -> None:
        self._not_started()
        stack = self.middleware.middlewares
        factory: MiddlewareFactory = partial(middleware_class, **options)
        stack.insert(stack.index(entry), factory)

    def _not_started(self) -> None:
        if self.middleware.middleware_stack is not None:
            raise RuntimeError("Cannot add middleware after an application has started")
