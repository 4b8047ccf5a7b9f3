"""Every name outside Connexion's documented API that Storefront relies on, and why.

Connexion is pinned to one version (``pyproject.toml``); ``check()`` (run by
``tests/http/compiled/test_internals.py``) fails with a list of what moved when the installed
Connexion no longer has these names, signatures and classes. Upgrading Connexion means: bump
the pin, run that test, and re-read each entry's reason below.

Kinds:
- ``private``: an underscored name we override or call.
- ``undocumented``: a public name (no underscore) that Connexion's docs do not describe, in a
  module of its internals; its signature is checked.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

#: The Connexion release these entries were checked against (keep in step with pyproject.toml).
PINNED = "3.3.0"


@dataclass(frozen=True)
class Internal:
    path: str  # "module:qualname"
    kind: str  # "private" or "undocumented"
    #: Parameter names the callable must have, in order (None: only that the name exists).
    parameters: tuple[str, ...] | None
    why: str


INTERNALS: tuple[Internal, ...] = (
    # The compiled pipeline (storefront.http.compiled.pipeline).
    Internal(
        "connexion.middleware.security:SecurityOperation.from_operation",
        "undocumented",
        ("cls", "operation", "next_app", "security_handler_factory"),
        "built once per operation; its verification_fn is the security stage",
    ),
    Internal(
        "connexion.middleware.security:SecurityOperation._get_verification_fn",
        "private",
        ("self",),
        "not called: it sets the verification_fn attribute that the security stage calls, as "
        "SecurityOperation.__call__ does (checked here as the attribute's source)",
    ),
    Internal(
        "connexion.middleware.context:ContextOperation.__init__",
        "undocumented",
        ("self", "next_app", "operation"),
        "sets the connexion.request / connexion.context proxies before the handler",
    ),
    Internal(
        "connexion.middleware.response_validation:ResponseValidationOperation.__init__",
        "undocumented",
        ("self", "next_app", "operation", "validator_map"),
        "response validation (the tests turn it on), as the stock stack wraps it",
    ),
    Internal(
        "connexion.middleware.abstract:RoutedAPI.__init__",
        "undocumented",
        ("self", "specification", "args", "next_app", "kwargs"),
        "builds each operation from the spec with the app's resolver (add_paths, operations)",
    ),
    Internal(
        "connexion.middleware.abstract:ROUTING_CONTEXT",
        "undocumented",
        None,
        "the scope extension the routing layer fills (api_base_path, operation_id)",
    ),
    Internal(
        "connexion.decorators.parameter:get_arguments",
        "undocumented",
        (
            "operation",
            "path_params",
            "query_params",
            "body",
            "files",
            "arguments",
            "has_kwargs",
            "sanitize",
            "content_type",
        ),
        "binds bodies and non-scalar parameters exactly as Connexion's parameter decorator",
    ),
    Internal(
        "connexion.decorators.parameter:inspect_function_arguments",
        "undocumented",
        ("function",),
        "the handler's arguments, read once per operation",
    ),
    Internal("connexion.decorators.parameter:pythonic", "undocumented", ("name",), "keywords"),
    Internal("connexion.decorators.parameter:sanitized", "undocumented", ("name",), "keywords"),
    Internal(
        "connexion.decorators.parameter:unwrap_decorators",
        "undocumented",
        ("function",),
        "whether the handler is a coroutine function",
    ),
    Internal(
        "connexion.decorators.parameter:CONTEXT_NAME",
        "undocumented",
        None,
        "the argument name a handler uses to ask for the context",
    ),
    Internal(
        "connexion.decorators.response:AsyncResponseDecorator.__init__",
        "undocumented",
        ("self", "framework", "jsonifier"),
        "turns a handler's (body, status, headers) into a response, built once per operation",
    ),
    Internal(
        "connexion.utils:make_type",
        "undocumented",
        ("value", "type_", "format_"),
        "converts scalar path and query values as Connexion's binder does",
    ),
    Internal("connexion.utils:is_nullable", "undocumented", ("param_def",), "nullable values"),
    Internal("connexion.utils:is_null", "undocumented", ("value",), "nullable values"),
    Internal(
        "connexion.utils:split_content_type",
        "undocumented",
        ("content_type",),
        "media type and charset of a request body",
    ),
    Internal(
        "connexion.frameworks.starlette:starlettify_path",
        "undocumented",
        ("swagger_path", "types"),
        "compiles the spec's paths as Connexion's router does",
    ),
    # The compiled app (storefront.http.compiled.app).
    Internal(
        "connexion.middleware.main:ConnexionMiddleware.__init__",
        "undocumented",
        None,
        "its attributes app (replaced by NoOperation: no second router), middlewares (a "
        "BEFORE_ROUTING middleware is inserted before the operations layer) and "
        "middleware_stack (None until the app starts)",
    ),
    Internal(
        "connexion.middleware.swagger_ui:SwaggerUIMiddleware.add_api",
        "undocumented",
        ("self", "specification", "base_path", "arguments", "kwargs"),
        "SwaggerUIGate extends it, then reads its router's routes (Starlette Mounts and Routes, "
        "their path attributes) to learn which paths Swagger UI serves",
    ),
    # The compiled stack's security handlers (storefront.http.compiled.security).
    Internal(
        "connexion.security:AbstractSecurityHandler._accepts_kwarg",
        "private",
        ("func", "keyword"),
        "overridden with a cached version: it inspects a signature twice per request",
    ),
    # Both stacks' validators (storefront.http.validators), registered through validator_map.
    Internal(
        "connexion.validators.abstract:AbstractRequestBodyValidator._parse",
        "private",
        ("self", "stream", "scope"),
        "JSON: replaced (the body read, decoded and parsed within STOREFRONT_MAX_JSON_* with "
        "errors as 400/415); forms: extended (form limits as a 400); the parsed body is kept "
        "for the binder",
    ),
    Internal(
        "connexion.validators.form_data:FormDataValidator._form_parser_cls",
        "private",
        None,
        "replaced: Starlette's FormParser with STOREFRONT_MAX_FORM_FIELDS / _FIELD_BYTES",
    ),
    Internal(
        "connexion.validators.abstract:AbstractRequestBodyValidator._validate",
        "private",
        ("self", "body"),
        "replaced: error messages that name the field but never echo its value",
    ),
    Internal(
        "connexion.validators.json:JSONRequestBodyValidator._validator",
        "private",
        None,
        "replaced by a validator built once per operation instead of per request",
    ),
    Internal(
        "connexion.validators.form_data:FormDataValidator._validator",
        "private",
        None,
        "replaced by a validator built once per operation instead of per request",
    ),
    Internal(
        "connexion.uri_parsing:AbstractURIParser.__init__",
        "private",
        ("self", "param_defns", "body_defn"),
        "sets _body_encoding (the requestBody's encoding map), read by the form validator: a "
        "plain form is parsed and checked directly only when no field has an encoding (when "
        "the attribute is gone, every form takes Connexion's path again)",
    ),
    Internal(
        "connexion.validators.parameter:ParameterValidator.validate_parameter",
        "undocumented",
        ("parameter_type", "value", "param", "param_name"),
        "replaced: parameter errors name the parameter",
    ),
    Internal(
        "connexion.json_schema:Draft4RequestValidator",
        "undocumented",
        None,
        "the request-body JSON Schema validator Connexion uses (readOnly handling)",
    ),
)

#: Connexion's default middleware stack, which the stock stack runs and whose positions the
#: compiled app reproduces (MiddlewarePosition names a class of this list).
STOCK_MIDDLEWARES = (
    "ServerErrorMiddleware",
    "ExceptionMiddleware",
    "SwaggerUIMiddleware",
    "RoutingMiddleware",
    "SecurityMiddleware",
    "RequestValidationMiddleware",
    "ResponseValidationMiddleware",
    "LifespanMiddleware",
    "ContextMiddleware",
)


def _resolve(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = inspect.getattr_static(found, part)
    return found


def check() -> list[str]:
    """What no longer holds in the installed Connexion (empty when all is as pinned)."""
    problems = []
    installed = version("connexion")
    if installed != PINNED:
        problems.append(f"connexion {installed} is installed; the adapter was checked on {PINNED}")
    for entry in INTERNALS:
        try:
            found = _resolve(entry.path)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{entry.path} is gone ({type(exc).__name__}); used for: {entry.why}")
            continue
        if entry.parameters is None:
            continue
        function = found.__func__ if isinstance(found, staticmethod | classmethod) else found
        names = tuple(inspect.signature(function).parameters)
        if names != entry.parameters:
            problems.append(
                f"{entry.path} now takes {names}, not {entry.parameters}; used for: {entry.why}"
            )
    from connexion.middleware.main import ConnexionMiddleware

    stock = tuple(cls.__name__ for cls in ConnexionMiddleware.default_middlewares)
    if stock != STOCK_MIDDLEWARES:
        problems.append(f"Connexion's default middlewares are now {stock}")
    middleware = ConnexionMiddleware(object())
    for attribute in ("app", "middlewares", "middleware_stack"):
        if not hasattr(middleware, attribute):
            problems.append(f"ConnexionMiddleware has no attribute {attribute!r} any more")
    return problems
