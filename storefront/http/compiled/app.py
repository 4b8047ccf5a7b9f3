"""``CompiledApp``: a ``connexion.AsyncApp`` whose request path is the compiled pipeline.

Its middleware list (Connexion's public ``middlewares=`` option) is Connexion's own, in
Connexion's order, with the five routed layers and the routing app replaced by
:class:`~storefront.http.compiled.routing.OperationsMiddleware`::

    ServerError → Exception → SwaggerUI → Operations[security → validation → context+handler
    → response validation] → Lifespan → NoOperation (404)

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
from connexion.middleware import MiddlewarePosition
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware

from storefront.http.compiled.routing import (
    MiddlewareFactory,
    NoOperation,
    Slots,
    operations_middleware,
)


class CompiledApp(connexion.AsyncApp):  # type: ignore[misc]
    def __init__(self, import_name: str, **kwargs: Any) -> None:
        self.slots = Slots()
        self._operations = operations_middleware(self.slots)
        middlewares = [
            ServerErrorMiddleware,
            ExceptionMiddleware,
            SwaggerUIMiddleware,
            self._operations,
            LifespanMiddleware,
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
        slot = {
            MiddlewarePosition.BEFORE_SECURITY: self.slots.before_security,
            MiddlewarePosition.BEFORE_VALIDATION: self.slots.before_validation,
            MiddlewarePosition.BEFORE_CONTEXT: self.slots.before_context,
        }.get(position)
        if slot is None and position is not MiddlewarePosition.BEFORE_ROUTING:
            super().add_middleware(middleware_class, position=position, **options)
            return
        if self.middleware.middleware_stack is not None:
            raise RuntimeError("Cannot add middleware after an application has started")
        factory: MiddlewareFactory = partial(middleware_class, **options)  # as Connexion keeps one
        if slot is not None:
            slot.append(factory)
        else:  # BEFORE_ROUTING: just before the operations layer
            stack = self.middleware.middlewares
            stack.insert(stack.index(self._operations), factory)
