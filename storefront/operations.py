"""Connexion's per-operation request pipeline, built once per operation instead of per request.

Connexion 3 runs each request through five routed middlewares (routing, security, request
validation, response validation, context) and then its app, which routes a second time and
*decorates the handler anew on every request*: it inspects the handler's signature, builds a
URI parser, a parameter validator and a body validator, and the security wrappers inspect the
security functions' signatures — per request. That is most of why plain Connexion serves a
third of what hand-written Starlette does.

:class:`OperationsMiddleware` takes the place of those layers (see ``MIDDLEWARES``). It is a
Connexion ``SpecMiddleware``, registered by ``add_api`` with the same options as Connexion's
own, and it does the same work with Connexion's own parts — the operation objects its resolver
builds from ``openapi.yaml``, ``SecurityOperation``'s verification function, the validators of
``validator_map``, the parameter and response decorators, and (when enabled) the response
validator — except that each is built once, when the API is added:

1. route: a static-path dict, then the templated paths compiled the way Connexion's router
   compiles them (``starlettify_path`` + Starlette's ``compile_path``);
2. security: the operation's verification function (401 / 403 as Connexion raises them);
3. request validation: parameters (strict: unknown query parameters are a 400), content type
   (415) and body, with the project's validators;
4. the handler, its arguments bound as Connexion's parameter decorator binds them (worked
   out once: :class:`ArgumentBinder`) and its result made a response by Connexion's response
   decorator;
5. response validation against the spec, when ``validate_responses`` is set (the tests).

Errors are raised, as in Connexion, to its ``ExceptionMiddleware`` and so to
``storefront.problems``. A request that matches no operation goes on to Connexion's
``SwaggerUIMiddleware`` (Swagger UI, ``/openapi.json``) and then to
:class:`NoOperationMiddleware`: a 404, or a 405 when its path has other methods, as
Starlette's router answers.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from connexion import utils
from connexion.context import _context, _operation, _receive, _scope
from connexion.datastructures import MediaTypeDict
from connexion.decorators.parameter import (
    CONTEXT_NAME,
    _get_body_argument,
    _get_val_from_param,
    get_arguments,
    inspect_function_arguments,
    pythonic,
    sanitized,
    unwrap_decorators,
)
from connexion.decorators.response import AsyncResponseDecorator
from connexion.exceptions import NonConformingResponseHeaders, UnsupportedMediaTypeProblem
from connexion.frameworks import starlette as starlette_utils
from connexion.frameworks.starlette import Starlette as StarletteFramework
from connexion.jsonifier import Jsonifier
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.abstract import ROUTING_CONTEXT, AbstractRoutingAPI, SpecMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.response_validation import ResponseValidationOperation
from connexion.middleware.security import SecurityOperation
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.operations import AbstractOperation
from connexion.security import (
    SECURITY_HANDLERS,
    ApiKeySecurityHandler,
    BasicSecurityHandler,
    BearerSecurityHandler,
    OAuthSecurityHandler,
    SecurityHandlerFactory,
)
from connexion.spec import Specification
from connexion.validators import VALIDATOR_MAP
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.context import context
from storefront.validators import PARSED_BODY

logger = logging.getLogger(__name__)

ASGICallable = Callable[[Scope, Receive, Send], Any]

#: Scope key of the request object one operation's steps share.
REQUEST_KEY = "storefront.request"


@cache
def _accepts_kwarg(func: Callable[..., Any], keyword: str) -> bool:
    arguments, has_kwargs = inspect_function_arguments(func)
    return bool(has_kwargs or keyword in arguments)


class _CachedSignatures:
    """Connexion's security handlers inspect the security function's signature on every call
    (twice); a function's signature does not change, so it is inspected once."""

    _accepts_kwarg = staticmethod(_accepts_kwarg)


class OAuthHandler(_CachedSignatures, OAuthSecurityHandler):  # type: ignore[misc]
    pass


class ApiKeyHandler(_CachedSignatures, ApiKeySecurityHandler):  # type: ignore[misc]
    pass


class BearerHandler(_CachedSignatures, BearerSecurityHandler):  # type: ignore[misc]
    pass


class BasicHandler(_CachedSignatures, BasicSecurityHandler):  # type: ignore[misc]
    pass


#: For ``security_map``: Connexion's security handlers, minus the per-call inspection.
SECURITY_MAP: dict[str, type[Any]] = {
    **SECURITY_HANDLERS,
    "oauth2": OAuthHandler,
    "apiKey": ApiKeyHandler,
    "bearer": BearerHandler,
    "basic": BasicHandler,
}


class CompiledOperation:
    """One operation of the spec, everything Connexion works out per request worked out once."""

    def __init__(
        self,
        operation: AbstractOperation,
        *,
        base_path: str,
        pythonic_params: bool,
        jsonifier: Any,
        strict_validation: bool,
        validator_map: dict[str, Any],
        validate_responses: bool,
        security_handler_factory: SecurityHandlerFactory,
    ) -> None:
        self.operation = operation
        self.operation_id: str = operation.operation_id
        self.routing = {"api_base_path": base_path, "operation_id": self.operation_id}
        self.uri_parser = operation.uri_parser_class(
            operation.parameters, operation.body_definition()
        )

        # 2. Security: Connexion's own verification function, built once.
        self.verify = (
            SecurityOperation.from_operation(
                operation,
                next_app=None,
                security_handler_factory=security_handler_factory,
            ).verification_fn
            if operation.security
            else None
        )

        # 3. Request validation.
        security_query_params = [
            scheme["name"]
            for requirement in operation.security or []
            for name in requirement
            if (scheme := operation.security_schemes[name])["type"] == "apiKey"
            and scheme["in"] == "query"
        ]
        self.parameter_validator = validator_map["parameter"](
            operation.parameters,
            uri_parser=self.uri_parser,
            strict_validation=strict_validation,
            security_query_params=security_query_params,
        )
        self.consumes = MediaTypeDict([(c.lower(), None) for c in operation.consumes])
        self.default_mime_type = (
            operation.consumes[0] if operation.consumes else "application/octet-stream"
        )
        self.body_validators = validator_map["body"]
        self.strict_validation = strict_validation
        self._body_validator_cache: dict[tuple[str, str], Any] = {}

        # 4. The handler: its arguments bound as Connexion's parameter decorator binds them,
        # and its result made a response by Connexion's response decorator, built once.
        self.binder = ArgumentBinder(operation, pythonic_params=pythonic_params)
        self.endpoint = CompiledResponseDecorator(operation, jsonifier=jsonifier)(self.binder)

        # 5. Response validation (the tests turn it on; production leaves it off).
        self.app: ASGICallable = self.respond
        if validate_responses:
            self.app = ResponseValidationOperation(
                self.respond, operation=operation, validator_map=validator_map
            )

    def body_validator(self, mime_type: str, encoding: str) -> Any | None:
        """The body validator for this content type (None: the body is not validated)."""
        key = (mime_type, encoding)
        if key in self._body_validator_cache:
            return self._body_validator_cache[key]
        validator = None
        schema = self.operation.body_schema(mime_type)
        if schema:
            try:
                validator_cls = self.body_validators[mime_type]
            except KeyError:
                logger.info("no validator registered for content type %s", mime_type)
            else:
                validator = validator_cls(
                    schema=schema,
                    required=self.operation.request_body.get("required", False),
                    nullable=utils.is_nullable(self.operation.body_definition(mime_type)),
                    encoding=encoding,
                    strict_validation=self.strict_validation,
                    uri_parser=self.uri_parser,
                )
        self._body_validator_cache[key] = validator
        return validator

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, path_params: dict[str, Any]
    ) -> None:
        # What Connexion's routing and context middlewares leave in the scope and context.
        scope["path_params"] = path_params
        extensions = scope.setdefault("extensions", {})
        extensions[ROUTING_CONTEXT] = self.routing
        _context.set(extensions.setdefault("connexion_context", {}))
        _operation.set(self.operation)

        request = ConnexionRequest(scope, receive, uri_parser=self.uri_parser)
        if self.verify is not None:
            await self.verify(request)

        self.parameter_validator.validate_request(request)
        body_receive, body_scope = await self.validate_body(scope, receive)
        if body_scope is not scope or body_receive is not receive:
            # The body validator replays the body it read through a new channel.
            scope, receive = body_scope, body_receive
            request = ConnexionRequest(scope, receive, uri_parser=self.uri_parser)
        # The handler reuses this request: its parsed query and path parameters among them.
        scope[REQUEST_KEY] = request
        _scope.set(scope)
        _receive.set(receive)
        try:
            await self.app(scope, receive, send)
        finally:
            # The request refers to the scope: without this the pair would be a reference
            # cycle, left for the garbage collector instead of freed when the request ends.
            del scope[REQUEST_KEY]

    async def validate_body(self, scope: Scope, receive: Receive) -> tuple[Receive, Scope]:
        content_type = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), None
        )  # ASGI header names are lower-case; Connexion's helper costs ten times this
        mime_type, encoding = utils.split_content_type(content_type)
        mime_type = mime_type or self.default_mime_type
        encoding = encoding or "utf-8"
        if self.consumes and mime_type.lower() not in self.consumes:
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({mime_type}), expected {self.operation.consumes}"
            )
        validator = self.body_validator(mime_type, encoding)
        if validator is None:
            return receive, scope
        new_receive, new_scope = await validator.wrap_receive(receive, scope=scope)
        return new_receive, new_scope

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = scope[REQUEST_KEY]
        response = await self.endpoint(request)
        await response(scope, receive, send)


_MISSING: Any = object()

#: Parameter types the binder converts itself; anything else goes through Connexion's binder.
_SCALARS = {"string", "integer", "number", "boolean"}


class ArgumentBinder:
    """Connexion's parameter decorator (``connexion.decorators.parameter``), worked out once.

    Connexion, per request: inspects the handler's signature, deep-copies the query defaults
    and sanitises every parameter name with three regular expressions. Here the handler's
    arguments, each parameter's keyword name and default are found when the API is added; the
    values are converted with Connexion's own ``_get_val_from_param``, and request bodies still
    go through Connexion's ``_get_body_argument``.
    """

    def __init__(self, operation: AbstractOperation, *, pythonic_params: bool) -> None:
        self.operation = operation
        function = operation.function
        self.function = function
        self.is_coroutine = inspect.iscoroutinefunction(unwrap_decorators(function))
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))
        self.arguments: list[str] = arguments
        self.has_kwargs: bool = has_kwargs
        self.sanitize = cache(pythonic if pythonic_params else sanitized)

        def wanted(name: str) -> bool:
            return has_kwargs or self.sanitize(name) in arguments

        params = operation.parameters
        self.simple = all(
            p["in"] not in {"path", "query"} or p.get("schema", {}).get("type") in _SCALARS
            for p in params
        )
        self.path = [(p["name"], self.sanitize(p["name"]), p) for p in params if p["in"] == "path"]
        self.query = [
            (p["name"], self.sanitize(p["name"]), p, p.get("schema", {}).get("default", _MISSING))
            for p in params
            if p["in"] == "query" and wanted(p["name"])
        ]
        self.wants_body = (
            operation.is_request_body_defined
            and operation.method.upper() != "TRACE"
            and wanted(operation.body_name(""))
        )
        self.wants_context = CONTEXT_NAME in arguments

    def bind(self, request: ConnexionRequest, body: Any) -> dict[str, Any]:
        if not self.simple:
            return dict(
                get_arguments(
                    self.operation,
                    path_params=request.path_params,
                    query_params=request.query_params,
                    body=body,
                    files={},
                    arguments=self.arguments,
                    has_kwargs=self.has_kwargs,
                    sanitize=self.sanitize,
                    content_type=request.mimetype,
                )
            )
        kwargs: dict[str, Any] = {}
        if self.path:
            path_params = request.path_params
            for name, keyword, param in self.path:
                if name in path_params:
                    kwargs[keyword] = _get_val_from_param(path_params[name], param)
        if self.query:
            query_params = request.query_params
            for name, keyword, param, default in self.query:
                value = query_params.get(name, default)
                if value is not _MISSING:
                    kwargs[keyword] = _get_val_from_param(value, param)
        if self.wants_body:
            kwargs.update(
                _get_body_argument(
                    body,
                    operation=self.operation,
                    arguments=self.arguments,
                    has_kwargs=self.has_kwargs,
                    sanitize=self.sanitize,
                    content_type=request.mimetype,
                )
            )
        return kwargs

    async def __call__(self, request: ConnexionRequest) -> Any:
        body = None
        if self.wants_body:
            # The body validator parsed it already (storefront.validators): not twice.
            body = request.scope.get(PARSED_BODY, _MISSING)
            if body is _MISSING:
                body = await request.get_body()
        kwargs = self.bind(request, body)
        context = _context.get()
        for key, value in context.items():  # what security put there (token_info, user)
            if self.has_kwargs or key in self.arguments:
                kwargs[key] = value
        if self.wants_context:
            kwargs[CONTEXT_NAME] = context
        if self.is_coroutine:
            return await self.function(**kwargs)
        return await run_in_threadpool(self.function, **kwargs)


class CompiledResponseDecorator(AsyncResponseDecorator):  # type: ignore[misc]
    """Connexion's response decorator, reading the operation's media types once rather than
    through the context proxy on every response."""

    def __init__(self, operation: AbstractOperation, *, jsonifier: Any) -> None:
        super().__init__(framework=StarletteFramework, jsonifier=jsonifier)
        self.produces = list(dict.fromkeys(operation.produces))
        self.declared = operation.produces

    def _infer_content_type(self, data: Any, headers: dict[str, str]) -> str | None:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        produces = self.produces or (["application/json"] if data is not None else [])
        if content_type:
            if content_type not in produces:
                raise NonConformingResponseHeaders(
                    f"Returned content type ({content_type}) is not defined in operation spec "
                    f"({self.declared})."
                )
            return content_type
        if len(produces) == 1:
            return str(produces[0])
        if not produces:
            return None
        # Several media types and none chosen: Connexion's rules for that case.
        return cast(str | None, super()._infer_content_type(data, headers))


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

    @property
    def allow(self) -> str:
        """The ``Allow`` header of a 405: every method the spec declares for the path."""
        return ", ".join(self.methods)


class CompiledAPI(AbstractRoutingAPI[CompiledOperation]):  # type: ignore[misc]
    def __init__(
        self,
        specification: Specification,
        *,
        base_path: str | None = None,
        pythonic_params: bool = False,
        jsonifier: Any = None,
        strict_validation: bool = False,
        validator_map: dict[str, Any] | None = None,
        validate_responses: bool = False,
        security_map: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        #: Paths without parameters, looked up whole; the others, tried in order.
        self.static: dict[str, _Route] = {}
        self.templated: dict[str, _Route] = {}
        self._options = {
            "pythonic_params": pythonic_params,
            "jsonifier": jsonifier or Jsonifier(),
            "strict_validation": strict_validation,
            "validator_map": {**VALIDATOR_MAP, **(validator_map or {})},
            "validate_responses": validate_responses,
            "security_handler_factory": SecurityHandlerFactory(security_map),
        }
        super().__init__(
            specification, base_path=base_path, pythonic_params=pythonic_params, **kwargs
        )

    def make_operation(self, operation: AbstractOperation) -> CompiledOperation:
        return CompiledOperation(operation, base_path=self.base_path or "", **self._options)

    @staticmethod
    def _framework_path_and_name(operation: AbstractOperation, path: str) -> tuple[str, str]:
        starlette_path = starlette_utils.starlettify_path(
            path, operation.get_path_parameter_types()
        )
        return starlette_path, starlette_path

    def _add_operation_internal(
        self, method: str, path: str, operation: CompiledOperation, name: str | None = None
    ) -> None:
        full = (self.base_path or "") + path
        routes = self.templated if "{" in full else self.static
        route = routes.get(full) or routes.setdefault(full, _Route(full))
        route.methods[method.upper()] = operation

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


class OperationsMiddleware(SpecMiddleware):  # type: ignore[misc]
    """Routes, secures, validates and calls each operation in one layer (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.apis: list[CompiledAPI] = []

    def add_api(self, specification: Specification, **kwargs: Any) -> CompiledAPI:
        api = CompiledAPI(specification, **kwargs)
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
                ctx = context(scope)
                if ctx is not None:
                    ctx.route = route.template
                operation = route.operation(scope["method"])
                if operation is not None:
                    await operation(scope, receive, send, path_params)
                    return
                scope[ALLOW] = route.allow
                break
        # Swagger UI, /openapi.json, the lifespan; else NoOperationMiddleware's 404 or 405.
        await self.app(scope, receive, send)


#: Scope key: the methods of a path whose request named none of them (for a 405's Allow).
ALLOW = "storefront.allow"


class NoOperationMiddleware:
    """The end of the line for a request no operation took and Swagger UI did not serve: a 404,
    or a 405 whose ``Allow`` names every method the spec declares for the path (raised to the
    app's error handlers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allow = scope.get(ALLOW)
        if allow is None:
            raise HTTPException(404)
        raise HTTPException(405, headers={"Allow": allow})


#: The middleware stack ``create_app`` hands to Connexion (as a fresh list: Connexion inserts
#: into it): its defaults, with the five routed layers after Swagger UI replaced by
#: :class:`OperationsMiddleware`, which goes first, so that API requests skip Swagger UI's
#: router (a dozen route matches per request).
MIDDLEWARES: tuple[Any, ...] = (
    ServerErrorMiddleware,
    ExceptionMiddleware,
    OperationsMiddleware,
    SwaggerUIMiddleware,
    NoOperationMiddleware,
    LifespanMiddleware,
)
