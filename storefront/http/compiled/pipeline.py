"""One operation of the spec, with everything Connexion works out per request worked out once.

Connexion's stock stack runs each request through five routed middlewares (routing, security,
request validation, response validation, context) and then its app, which routes a second
time and *decorates the handler anew on every request* (``AsyncOperation.fn`` is a property
that builds a ``StarletteDecorator`` per call): it inspects the handler's signature, builds a
URI parser, a parameter validator and a body validator, per request.

:class:`CompiledOperation` does the same work with the same Connexion parts, each built once,
when the API is added:

1. security: ``SecurityOperation``'s verification function (401 / 403 as Connexion raises them);
2. request validation: parameters (strict: unknown query parameters are a 400), content type
   (415) and body, with the validators of ``validator_map``;
3. context: Connexion's own ``ContextOperation`` sets the ``connexion.request`` /
   ``connexion.context`` proxies the handlers use;
4. the handler, its arguments bound as Connexion's parameter decorator binds them
   (:class:`ArgumentBinder`), its result made a response by Connexion's response decorator;
5. response validation (``ResponseValidationOperation``), when ``validate_responses`` is set.

The three stages run in Connexion's order, and a middleware added at ``BEFORE_SECURITY``,
``BEFORE_VALIDATION`` or ``BEFORE_CONTEXT`` runs between them, as on the stock stack
(``storefront.http.compiled.app``).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from connexion import utils
from connexion.datastructures import MediaTypeDict
from connexion.decorators.parameter import (
    CONTEXT_NAME,
    get_arguments,
    inspect_function_arguments,
    pythonic,
    sanitized,
    unwrap_decorators,
)
from connexion.decorators.response import AsyncResponseDecorator
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.frameworks.starlette import Starlette as StarletteFramework
from connexion.jsonifier import Jsonifier
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.context import ContextOperation
from connexion.middleware.response_validation import ResponseValidationOperation
from connexion.middleware.security import SecurityOperation
from connexion.operations import AbstractOperation
from connexion.security import SecurityHandlerFactory
from connexion.validators import AbstractRequestBodyValidator, ParameterValidator
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from storefront.http.validators import CHECKED_PARAMETERS, PARSED_BODY

logger = logging.getLogger(__name__)

ASGICallable = Callable[[Scope, Receive, Send], Any]

#: Scope key of the operation a request was routed to (written by the router only), for the
#: stages that run after a middleware added between them.
OPERATION = "storefront.operation"
#: Scope key of the request object the validation stage made, reused by the handler's binder.
REQUEST = "storefront.connexion_request"

_MISSING: Any = object()
#: Body validators remembered per operation, one per (media type, charset) seen.
BODY_VALIDATORS_MAX = 16
#: Parameter types the binder converts itself; anything else goes through Connexion's binder.
_SCALARS = {"string", "integer", "number", "boolean"}


class CompiledOperation:
    def __init__(
        self,
        operation: AbstractOperation,
        *,
        base_path: str,
        pythonic_params: bool,
        jsonifier: Jsonifier,
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

        # 1. Security: Connexion's own verification function, built once.
        self.verify = (
            SecurityOperation.from_operation(
                operation,
                next_app=None,
                security_handler_factory=security_handler_factory,
            ).verification_fn
            if operation.security
            else None
        )

        # 2. Request validation.
        security_query_params = [
            scheme["name"]
            for requirement in operation.security or []
            for name in requirement
            if (scheme := operation.security_schemes[name])["type"] == "apiKey"
            and scheme["in"] == "query"
        ]
        self.parameter_validator: ParameterValidator = validator_map["parameter"](
            operation.parameters,
            uri_parser=self.uri_parser,
            strict_validation=strict_validation,
            security_query_params=security_query_params,
        )
        #: The validator's direct checks of plain parameters (storefront.http.validators),
        #: when it has them; a request they do not pass is validated by validate_request.
        self.check_parameters: Callable[[Scope], Any] | None = getattr(
            self.parameter_validator, "checked", None
        )
        self.consumes = MediaTypeDict([(c.lower(), None) for c in operation.consumes])
        self.default_mime_type = (
            operation.consumes[0] if operation.consumes else "application/octet-stream"
        )
        self.body_validators = validator_map["body"]
        self.strict_validation = strict_validation
        self._body_validator_cache: dict[tuple[str, str], Any] = {}

        # 3-5. Context, handler and response, innermost first, as Connexion nests them.
        self.binder = ArgumentBinder(operation, pythonic_params=pythonic_params)
        self.response_decorator = AsyncResponseDecorator(
            framework=StarletteFramework, jsonifier=jsonifier
        )
        self.endpoint = self.response_decorator(self.binder)
        self.json_response = JSONResponder.of(operation, jsonifier)
        respond: ASGICallable = ContextOperation(self.call_handler, operation=operation)
        if validate_responses:
            respond = ResponseValidationOperation(
                respond, operation=operation, validator_map=validator_map
            )
        self.respond = respond

        # What follows each stage: the next stage itself, unless middlewares were added between
        # them (then a chain that finds this operation again through the scope).
        self.after_routing: ASGICallable = self.secure
        self.after_security: ASGICallable = self.validate
        self.after_validation: ASGICallable = self.respond

    def body_validator(self, mime_type: str, encoding: str) -> AbstractRequestBodyValidator | None:
        """The body validator for this content type (None: the body is not validated)."""
        key = (mime_type, encoding.lower())
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
        # The client picks the charset: past a few, validators are built and not remembered,
        # so that made-up charsets cannot grow this memory without bound.
        if len(self._body_validator_cache) < BODY_VALIDATORS_MAX:
            self._body_validator_cache[key] = validator
        return validator

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, path_params: dict[str, Any]
    ) -> None:
        # What Connexion's routing middleware leaves in the scope.
        scope["path_params"] = path_params
        extensions = scope.setdefault("extensions", {})
        extensions[ROUTING_CONTEXT] = self.routing
        scope[OPERATION] = self
        try:
            await self.after_routing(scope, receive, send)
        finally:
            # The request refers to the scope: without this the pair would be a reference
            # cycle, left for the garbage collector instead of freed when the request ends.
            scope.pop(REQUEST, None)

    async def secure(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.verify is not None:
            await self.verify(ConnexionRequest(scope, receive, uri_parser=self.uri_parser))
        await self.after_security(scope, receive, send)

    async def validate(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = ConnexionRequest(scope, receive, uri_parser=self.uri_parser)
        checked = self.check_parameters(scope) if self.check_parameters is not None else None
        if checked is None:
            self.parameter_validator.validate_request(request)
        else:
            scope[CHECKED_PARAMETERS] = checked  # for the binder: not parsed a second time
        body_receive, body_scope = await self.validate_body(scope, receive)
        if body_scope is not scope or body_receive is not receive:
            # The body validator replays the body it read through a new channel.
            scope, receive = body_scope, body_receive
            request = ConnexionRequest(scope, receive, uri_parser=self.uri_parser)
        scope[REQUEST] = request  # its parsed query and path parameters, for the binder
        await self.after_validation(scope, receive, send)

    async def validate_body(self, scope: Scope, receive: Receive) -> tuple[Receive, Scope]:
        content_type = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), None
        )  # ASGI header names are lower-case; Connexion's helper costs ten times this
        mime_type, encoding = utils.split_content_type(content_type)
        # Media types are case-insensitive; the spec's (and so the schema lookup's) are lower.
        mime_type = (mime_type or self.default_mime_type).strip().lower()
        encoding = encoding or "utf-8"
        if self.consumes and mime_type not in self.consumes:
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({mime_type}), expected {self.operation.consumes}"
            )
        validator = self.body_validator(mime_type, encoding)
        if validator is None:
            return receive, scope
        new_receive, new_scope = await validator.wrap_receive(receive, scope=scope)
        return new_receive, new_scope

    async def call_handler(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = scope.get(REQUEST)
        if request is None or request.scope is not scope:  # a middleware changed the scope
            request = ConnexionRequest(scope, receive, uri_parser=self.uri_parser)
        if self.json_response is None:
            response = await self.endpoint(request)
            await response(scope, receive, send)
            return
        result = await self.binder(request)
        if not await self.json_response(result, send):
            # As Connexion's response decorator (self.endpoint) makes a response of a result.
            framework = StarletteFramework
            if framework.is_framework_response(result):
                response = result
            elif isinstance(result, ConnexionResponse):
                response = framework.connexion_to_framework_response(result)
            else:
                response = self.response_decorator.build_framework_response(result)
            await response(scope, receive, send)


class JSONResponder:
    """The response Connexion's response decorator would make of a handler's
    ``(body, status, headers)`` with a dict or list body, for an operation that produces one
    JSON media type, sent directly: the same body (its jsonifier's JSON, a newline), the same
    header fields in the same order (the handler's, lower-cased, then ``content-type``, then
    ``content-length``). Connexion's decorator works out the media type anew on every
    response (through the ``connexion.operation`` proxy), encodes through a new JSON encoder,
    and builds a Starlette response: a sixth of a ``GET /users/{id}``. Any other result (no
    body, a response object, a Content-Type of the handler's own) goes to the decorator;
    ``tests/http/test_stacks.py`` compares every route and error with the stock stack."""

    def __init__(self, media_type: str, encode: Callable[[Any], str]) -> None:
        self.content_type = (b"content-type", media_type.encode("latin-1"))
        self.encode = encode

    @staticmethod
    def of(operation: AbstractOperation, jsonifier: Jsonifier) -> JSONResponder | None:
        produces = list(set(operation.produces)) or ["application/json"]
        if len(produces) != 1 or not utils.is_json_mimetype(
            utils.split_content_type(produces[0])[0]
        ):
            return None
        # The jsonifier's dumps is json.dumps(data, cls=..., **dumps_args) + "\n": the same
        # encoder, made once, when those are all its arguments.
        arguments = getattr(jsonifier, "dumps_args", None)
        if (
            getattr(jsonifier, "json", None) is not json
            or not arguments
            or set(arguments) != {"cls"}
        ):
            return None
        encoder = arguments["cls"]()
        return JSONResponder(produces[0], encoder.encode)

    async def __call__(self, result: Any, send: Send) -> bool:
        """Send ``result`` as Connexion would; False when it is not a result this sends."""
        if type(result) is not tuple or len(result) != 3:
            return False
        data, status, headers = result
        if (
            not isinstance(data, dict | list)
            or type(status) is not int
            or not status
            or type(headers) is not dict
        ):
            return False
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ]
        for name, _ in raw:
            if name == b"content-type" or name == b"content-length":
                return False
        body = (self.encode(data) + "\n").encode("utf-8")
        raw.append(self.content_type)
        if not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        return True


class ArgumentBinder:
    """Connexion's parameter decorator (``connexion.decorators.parameter``), worked out once.

    Connexion, per request: inspects the handler's signature, deep-copies the query defaults
    and sanitises every parameter name with three regular expressions. Here the handler's
    arguments, each parameter's keyword name and default are found when the API is added;
    scalar path and query values are converted with Connexion's public ``make_type``, as its
    binder does, and anything else (bodies, arrays) goes through its public ``get_arguments``.
    """

    def __init__(self, operation: AbstractOperation, *, pythonic_params: bool) -> None:
        self.operation = operation
        function = operation.function
        self.function = function
        self.is_coroutine = inspect.iscoroutinefunction(unwrap_decorators(function))
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))
        self.arguments: list[str] = arguments
        self.has_kwargs: bool = has_kwargs
        self.sanitize = pythonic if pythonic_params else sanitized

        def wanted(name: str) -> bool:
            return has_kwargs or self.sanitize(name) in arguments

        params = operation.parameters
        self.wants_body = (
            operation.is_request_body_defined
            and operation.method.upper() != "TRACE"
            and wanted(operation.body_name(""))
        )
        self.body_name = self.sanitize(operation.body_name("")) if self.wants_body else ""
        #: How the body is bound without Connexion's binder: "json" (the parsed body as it is),
        #: "strings" (a form whose fields are all strings: each known field str()-ed, as
        #: Connexion's form binder does), or None (Connexion's binder).
        self.body_kind = self._body_kind(operation) if self.wants_body else None
        self.form_fields = (
            frozenset(operation.body_schema(operation.consumes[0]).get("properties", {}))
            if self.body_kind == "strings"
            else frozenset()
        )
        self.simple = (not self.wants_body or self.body_kind is not None) and all(
            p["in"] not in {"path", "query"} or p.get("schema", {}).get("type") in _SCALARS
            for p in params
        )
        self.path = [(p["name"], self.sanitize(p["name"]), p) for p in params if p["in"] == "path"]
        self.query = [
            (p["name"], self.sanitize(p["name"]), p, p.get("schema", {}).get("default", _MISSING))
            for p in params
            if p["in"] == "query" and wanted(p["name"])
        ]
        self.wants_context = CONTEXT_NAME in arguments

    @staticmethod
    def _body_kind(operation: AbstractOperation) -> str | None:
        if len(operation.consumes) != 1:
            return None
        (content_type,) = operation.consumes
        schema = operation.body_schema(content_type)
        if "default" in schema or utils.is_nullable(schema):
            return None
        if utils.is_json_mimetype(content_type):
            return "json"
        properties = schema.get("properties", {})
        if content_type == "application/x-www-form-urlencoded" and all(
            prop.get("type") == "string" and "format" not in prop for prop in properties.values()
        ):
            return "strings"
        return None

    @staticmethod
    def convert(value: Any, param: dict[str, Any]) -> Any:
        schema = param.get("schema", param)
        if utils.is_nullable(schema) and utils.is_null(value):
            return None
        return utils.make_type(value, schema["type"], schema.get("format"))

    async def _body(self, request: ConnexionRequest) -> Any:
        # The body validator parsed it already (storefront.http.validators): not twice.
        body = request.scope.get(PARSED_BODY, _MISSING)
        return await request.get_body() if body is _MISSING else body

    async def _connexion_bind(self, request: ConnexionRequest, body: Any) -> dict[str, Any]:
        arguments = get_arguments(
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
        # As Connexion's binder: keyword names in their un-shadowed, snake_case form.
        return {self.sanitize(k): v for k, v in arguments.items()}

    async def bind(self, request: ConnexionRequest) -> dict[str, Any]:
        if not self.simple:
            return await self._connexion_bind(
                request, await self._body(request) if self.wants_body else None
            )
        kwargs: dict[str, Any] = {}
        if self.body_kind is not None:
            body = await self._body(request)
            if body is None:  # no body: Connexion's binder knows the defaults
                return await self._connexion_bind(request, None)
            if self.body_kind == "strings":
                known = self.form_fields
                body = {k: str(v) if k in known else v for k, v in body.items()}
            kwargs[self.body_name] = body
        checked = request.scope.get(CHECKED_PARAMETERS) if self.path or self.query else None
        if self.path:
            path_params = checked[0] if checked is not None else request.path_params
            for name, keyword, param in self.path:
                if name in path_params:
                    kwargs[keyword] = self.convert(path_params[name], param)
        if self.query:
            query_params = checked[1] if checked is not None else request.query_params
            for name, keyword, param, default in self.query:
                value = query_params.get(name, default)
                if value is not _MISSING:
                    kwargs[keyword] = self.convert(value, param)
        return kwargs

    async def __call__(self, request: ConnexionRequest) -> Any:
        kwargs = await self.bind(request)
        context = request.context
        for key, value in context.items():  # what security put there (token_info, user)
            if self.has_kwargs or key in self.arguments:
                kwargs[key] = value
        if self.wants_context:
            kwargs[CONTEXT_NAME] = context
        if self.is_coroutine:
            return await self.function(**kwargs)
        return await run_in_threadpool(self.function, **kwargs)
