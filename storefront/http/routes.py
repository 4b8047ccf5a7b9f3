"""The spec's paths, as both stacks need them outside routing: the ``Allow`` header of a 405
(every method the spec declares for the path, and HEAD with GET) and the route label of an
operation."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.http.state import publish_route

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def handler_name(operation: dict[str, Any]) -> str:
    """The function an operation routes to, as Connexion resolves it (and names it at run
    time): ``x-openapi-router-controller`` + ``.`` + ``operationId``."""
    controller = operation.get("x-openapi-router-controller")
    return f"{controller}.{operation['operationId']}" if controller else operation["operationId"]


class RouteTable:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._paths: list[tuple[re.Pattern[str], str]] = []
        #: Resolved operation id -> the spec's path template.
        self.templates: dict[str, str] = {}
        for path, item in spec["paths"].items():
            methods = [m.upper() for m in item if m in HTTP_METHODS]
            if "GET" in methods and "HEAD" not in methods:
                # Both routers answer HEAD wherever GET is declared (RFC 9110 §9.3.2).
                methods.insert(methods.index("GET") + 1, "HEAD")
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
            self._paths.append((pattern, ", ".join(methods)))
            for method in item:
                if method in HTTP_METHODS:
                    self.templates[handler_name(item[method])] = path

    def allow(self, path: str) -> str | None:
        """The ``Allow`` header of a 405 at this URL path (None: not a path of the spec)."""
        return next((methods for pattern, methods in self._paths if pattern.match(path)), None)


class RouteLabelMiddleware:
    """The stock stack's route label: Connexion's router names the operation, this publishes
    its path template (the compiled router publishes it itself)."""

    def __init__(self, app: ASGIApp, *, templates: dict[str, str]) -> None:
        self.app = app
        self.template: Callable[[str], str | None] = templates.get

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            routing = scope.get("extensions", {}).get(ROUTING_CONTEXT, {})
            template = self.template(routing.get("operation_id") or "")
            if template is not None:
                publish_route(scope, template)
        await self.app(scope, receive, send)
