"""Every name of a library's that Storefront uses outside the library's documented API, and why.

``BORROWED`` lists the Connexion, Starlette, uvicorn, uvloop, SQLAlchemy, limits and redis-py
names that the libraries' documentation does not describe, each with the reason Storefront
relies on it. ``DOCUMENTED`` lists the documented API Storefront uses, each with the page
that documents it; ``HOOKS`` the methods and attributes a library documents as meant to be
overridden.

Two checks keep this true, both run by ``tests/test_internals_registry.py``:

- the code is read (``tests/borrowed.py``) for every name of these libraries it reaches
  (imports; attributes read, called or assigned; methods and attributes of their classes
  that ours override), and a name that is neither documented here nor registered fails the
  test, as does an entry the code no longer uses;
- ``check()`` says what moved when an installed library no longer has a registered name, or
  a callable's parameters changed, or a library that has private names or overrides here is
  not at the release pinned in ``pyproject.toml`` (``PINNED``).

Kinds:

- ``private``: an underscored name we call, override, read or assign;
- ``undocumented``: a public-looking name the library's documentation does not describe;
- ``override``: a method of a library's class that a class of ours overrides, which the library
  does not document as a hook.

A name counts as documented when the library's reference describes it: a page, an API entry
generated from its docstring, or a code example in the documentation. A constructor's
parameter documents the parameter, not an attribute of the same name; release notes alone do
not document a name.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
import types
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

Kind = Literal["private", "undocumented", "override"]

#: The release of each library that has private names or overrides below, as pinned in
#: pyproject.toml: upgrading one means bumping both, running tests/test_internals_registry.py
#: and re-reading each of its entries' reasons.
PINNED = {"connexion": "3.3.0", "uvicorn": "0.55.0", "uvloop": "0.23.0"}


@dataclass(frozen=True)
class Borrowed:
    library: str
    #: "module:qualname", named where the name is held (the class that defines it).
    path: str
    kind: Kind
    why: str
    #: The parameters a callable must have, in order (None: only that the name exists).
    parameters: tuple[str, ...] | None = None


Row = tuple[str, Kind, str, tuple[str, ...] | None]


def _entries(library: str, rows: list[Row]) -> tuple[Borrowed, ...]:
    return tuple(Borrowed(library, *row) for row in rows)


CONNEXION: tuple[Borrowed, ...] = _entries(
    "connexion",
    [
        # The compiled app (storefront.http.compiled.app).
        (
            "connexion.apps.abstract:AbstractApp.middleware",
            "undocumented",
            "CompiledApp reaches its ConnexionMiddleware: to replace the app it wraps, to "
            "insert middlewares into its list, and to see whether it has started",
            None,
        ),
        (
            "connexion.apps.abstract:AbstractApp.add_middleware",
            "override",
            "CompiledApp puts BEFORE_SECURITY, BEFORE_VALIDATION and BEFORE_CONTEXT middlewares "
            "between its pipeline's stages and BEFORE_ROUTING before its operations layer, "
            "where the stock stack has them; other positions go to Connexion's",
            ("self", "middleware_class", "position", "options"),
        ),
        (
            "connexion.middleware.main:ConnexionMiddleware.app",
            "undocumented",
            "replaced by NoOperation: what no operation took is a 404, without a Starlette app "
            "that would route every request a second time",
            None,
        ),
        (
            "connexion.middleware.main:ConnexionMiddleware.middlewares",
            "undocumented",
            "a BEFORE_SWAGGER or BEFORE_ROUTING middleware is inserted into this list, before "
            "SwaggerUIGate or the operations layer",
            None,
        ),
        (
            "connexion.middleware.main:ConnexionMiddleware.middleware_stack",
            "undocumented",
            "None until the app starts: a middleware added later is refused, as Connexion "
            "refuses it",
            None,
        ),
        (
            "connexion.middleware.swagger_ui:SwaggerUIMiddleware",
            "undocumented",
            "SwaggerUIGate subclasses it, to ask it only about the paths it serves",
            ("app",),
        ),
        (
            "connexion.middleware.swagger_ui:SwaggerUIMiddleware.add_api",
            "override",
            "SwaggerUIGate extends it: once an API is added, it learns which paths Swagger UI "
            "serves",
            ("self", "specification", "base_path", "arguments", "kwargs"),
        ),
        (
            "connexion.middleware.swagger_ui:SwaggerUIMiddleware.router",
            "undocumented",
            "SwaggerUIGate reads its routes (Starlette Mounts and Routes, their paths) for the "
            "static start of each path Swagger UI serves",
            None,
        ),
        (
            "connexion.middleware.swagger_ui:SwaggerUIMiddleware.app",
            "undocumented",
            "SwaggerUIGate calls the next app itself for a path Swagger UI does not serve",
            None,
        ),
        # The compiled router (storefront.http.compiled.routing).
        (
            "connexion.middleware.abstract:SpecMiddleware",
            "undocumented",
            "OperationsMiddleware subclasses it, so that the app hands it every API it adds",
            None,
        ),
        (
            "connexion.middleware.abstract:RoutedAPI",
            "undocumented",
            "CompiledAPI subclasses it: it builds each operation of the spec with the app's "
            "resolver, as the stock routed middlewares do",
            ("specification", "args", "next_app", "kwargs"),
        ),
        (
            "connexion.middleware.abstract:RoutedAPI.add_paths",
            "undocumented",
            "called once, in CompiledAPI's constructor: makes an operation per path and method",
            ("self",),
        ),
        (
            "connexion.middleware.abstract:RoutedAPI.operations",
            "undocumented",
            "the operations add_paths made, by operation id: the router's table",
            None,
        ),
        (
            "connexion.middleware.abstract:AbstractSpecAPI.base_path",
            "undocumented",
            "the API's base path: the start of every route, and what the routing context says",
            None,
        ),
        (
            "connexion.middleware.abstract:ROUTING_CONTEXT",
            "undocumented",
            "the scope extension Connexion's routing fills (api_base_path, operation_id): the "
            "compiled router fills it as Connexion's does, the route label reads it",
            None,
        ),
        (
            "connexion.frameworks.starlette:starlettify_path",
            "undocumented",
            "compiles the spec's paths as Connexion's router does",
            ("swagger_path", "types"),
        ),
        (
            "connexion.security:SecurityHandlerFactory",
            "undocumented",
            "built once per API with the app's security_map, as the security middleware builds "
            "it, for each operation's verification function",
            ("security_handlers",),
        ),
        # Each compiled operation (storefront.http.compiled.pipeline).
        (
            "connexion.operations:AbstractOperation",
            "undocumented",
            "the type of the operations the pipeline is built from (documented as the "
            "operation context variable's OpenAPIOperation, whose members it reads)",
            None,
        ),
        (
            "connexion.middleware.security:SecurityOperation",
            "undocumented",
            "built once per operation: its verification function is the security stage",
            None,
        ),
        (
            "connexion.middleware.security:SecurityOperation.from_operation",
            "undocumented",
            "how the security middleware builds it for an operation",
            ("cls", "operation", "next_app", "security_handler_factory"),
        ),
        (
            "connexion.middleware.security:SecurityOperation.verification_fn",
            "undocumented",
            "the function that checks the request's credentials (401 / 403 as Connexion raises "
            "them), called by the security stage as SecurityOperation.__call__ calls it",
            None,
        ),
        (
            "connexion.middleware.context:ContextOperation",
            "undocumented",
            "sets the connexion.request / connexion.context proxies before the handler",
            ("next_app", "operation"),
        ),
        (
            "connexion.middleware.response_validation:ResponseValidationOperation",
            "undocumented",
            "response validation (the tests turn it on), wrapped as the stock stack wraps it",
            ("next_app", "operation", "validator_map"),
        ),
        (
            "connexion.decorators.parameter:get_arguments",
            "undocumented",
            "binds bodies and non-scalar parameters exactly as Connexion's parameter decorator",
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
        ),
        (
            "connexion.decorators.parameter:inspect_function_arguments",
            "undocumented",
            "the handler's arguments (and the security functions'), read once",
            ("function",),
        ),
        (
            "connexion.decorators.parameter:pythonic",
            "undocumented",
            "keyword names of parameters, as pythonic_params makes them",
            ("name",),
        ),
        (
            "connexion.decorators.parameter:sanitized",
            "undocumented",
            "keyword names of parameters without pythonic_params",
            ("name",),
        ),
        (
            "connexion.decorators.parameter:unwrap_decorators",
            "undocumented",
            "whether the handler is a coroutine function, under its decorators",
            ("function",),
        ),
        (
            "connexion.decorators.parameter:CONTEXT_NAME",
            "undocumented",
            "the argument name a handler uses to ask for the context",
            None,
        ),
        (
            "connexion.decorators.response:AsyncResponseDecorator",
            "undocumented",
            "turns a handler's (body, status, headers) into a response, built once per operation",
            ("framework", "jsonifier"),
        ),
        (
            "connexion.decorators.response:BaseResponseDecorator.build_framework_response",
            "undocumented",
            "a result the direct JSON path does not send becomes a response as the decorator "
            "makes it",
            ("self", "handler_response"),
        ),
        (
            "connexion.jsonifier:Jsonifier.json",
            "undocumented",
            "a JSON response is sent directly only when the jsonifier's module is the standard "
            "library's json (then its JSON is json.dumps with its encoder class)",
            None,
        ),
        (
            "connexion.jsonifier:Jsonifier.dumps_args",
            "undocumented",
            "the jsonifier's json.dumps arguments: sent directly only when they are the encoder "
            "class alone, built once",
            None,
        ),
        (
            "connexion.frameworks.starlette:Starlette",
            "undocumented",
            "the framework the response decorator builds Starlette responses with",
            None,
        ),
        (
            "connexion.frameworks.starlette:Starlette.is_framework_response",
            "undocumented",
            "a handler's own response object is sent as it is, as the decorator sends it",
            ("response",),
        ),
        (
            "connexion.frameworks.starlette:Starlette.connexion_to_framework_response",
            "undocumented",
            "a handler's ConnexionResponse becomes a Starlette response, as the decorator makes it",
            ("cls", "response"),
        ),
        (
            "connexion.utils:make_type",
            "undocumented",
            "converts scalar path and query values as Connexion's binder does",
            ("value", "type_", "format_"),
        ),
        (
            "connexion.utils:is_nullable",
            "undocumented",
            "nullable parameters and bodies, as Connexion reads them",
            ("param_def",),
        ),
        ("connexion.utils:is_null", "undocumented", "nullable values", ("value",)),
        (
            "connexion.utils:split_content_type",
            "undocumented",
            "media type and charset of a request body, and of the spec's produces",
            ("content_type",),
        ),
        (
            "connexion.utils:is_json_mimetype",
            "undocumented",
            "which operations produce JSON (sent directly) and take JSON bodies",
            ("mimetype",),
        ),
        # The compiled stack's security handlers (storefront.http.compiled.security).
        (
            "connexion.security:AbstractSecurityHandler._accepts_kwarg",
            "private",
            "overridden with a cached version: it inspects a signature twice per request",
            ("func", "keyword"),
        ),
        (
            "connexion.security:OAuthSecurityHandler",
            "undocumented",
            "subclassed, with the cached _accepts_kwarg, for the security_map",
            None,
        ),
        (
            "connexion.security:ApiKeySecurityHandler",
            "undocumented",
            "subclassed, with the cached _accepts_kwarg, for the security_map",
            None,
        ),
        (
            "connexion.security:BearerSecurityHandler",
            "undocumented",
            "subclassed, with the cached _accepts_kwarg, for the security_map",
            None,
        ),
        (
            "connexion.security:BasicSecurityHandler",
            "undocumented",
            "subclassed, with the cached _accepts_kwarg, for the security_map",
            None,
        ),
        (
            "connexion.security:NO_VALUE",
            "undocumented",
            "what a security_map handler returns for a request that is not its scheme's, so "
            "that the next scheme is tried (the DPoP scheme's handler, storefront.http."
            "dpop_scheme, leaves Bearer fields to the OAuth2 scheme this way)",
            None,
        ),
        (
            "connexion.security:SECURITY_HANDLERS",
            "undocumented",
            "Connexion's security_map, which ours extends",
            None,
        ),
        # Both stacks' validators (storefront.http.validators), registered by validator_map.
        (
            "connexion.validators.json:JSONRequestBodyValidator._parse",
            "private",
            "replaced: the body read, decoded and parsed within STOREFRONT_MAX_JSON_* (errors "
            "as 400 / 415), the parsed body kept for the binder. The validation page shows "
            "overriding _parse in a custom validator, with other parameters",
            ("self", "stream", "scope"),
        ),
        (
            "connexion.validators.json:JSONRequestBodyValidator._validate",
            "private",
            "replaced: error messages that name the field but never echo its value",
            ("self", "body"),
        ),
        (
            "connexion.validators.json:JSONRequestBodyValidator._validator",
            "private",
            "replaced by a validator built once per operation instead of per request",
            None,
        ),
        (
            "connexion.validators.abstract:AbstractRequestBodyValidator._schema",
            "private",
            "the body's schema: the validators build their own jsonschema validator of it, and "
            "the form validator checks whether a form is plain",
            None,
        ),
        (
            "connexion.validators.abstract:AbstractRequestBodyValidator._encoding",
            "private",
            "the request's charset: the JSON body is decoded with it (LookupError: a 415)",
            None,
        ),
        (
            "connexion.validators.abstract:AbstractRequestBodyValidator.wrap_receive",
            "override",
            "a plain form is read, parsed and checked directly, without an async generator or "
            "a FormData; anything else is Connexion's",
            ("self", "receive", "scope"),
        ),
        (
            "connexion.validators.form_data:FormDataValidator._parse",
            "private",
            "extended: form limits as a 400, the parsed body kept for the binder, a plain form "
            "parsed directly",
            ("self", "stream", "scope"),
        ),
        (
            "connexion.validators.form_data:FormDataValidator._validate",
            "private",
            "a plain form holds its schema when every required field is there; anything else "
            "is Connexion's check",
            ("self", "body"),
        ),
        (
            "connexion.validators.form_data:FormDataValidator._validator",
            "private",
            "replaced by a validator built once per operation instead of per request",
            None,
        ),
        (
            "connexion.validators.form_data:FormDataValidator._form_parser_cls",
            "private",
            "replaced: a url-encoded parser with STOREFRONT_MAX_FORM_FIELDS / _FIELD_BYTES",
            None,
        ),
        (
            "connexion.validators.form_data:FormDataValidator._uri_parser",
            "private",
            "the URI parser Connexion gave the validator, where the requestBody's encoding is",
            None,
        ),
        (
            "connexion.uri_parsing:AbstractURIParser._body_encoding",
            "private",
            "the requestBody's encoding map: a form is checked directly only when no field has "
            "one (read with getattr: when it is gone, every form takes Connexion's path)",
            None,
        ),
        (
            "connexion.validators.parameter:ParameterValidator.validate_parameter",
            "override",
            "replaced: parameter errors name the parameter",
            ("parameter_type", "value", "param", "param_name"),
        ),
        (
            "connexion.validators.parameter:ParameterValidator.validate_request",
            "undocumented",
            "the validation stage's check of the parameters that the direct checks do not pass",
            ("self", "request"),
        ),
        (
            "connexion.validators.parameter:ParameterValidator.parameters",
            "undocumented",
            "the operation's parameters by location: the direct checks are worked out from them",
            None,
        ),
        (
            "connexion.validators.parameter:ParameterValidator.security_query_params",
            "undocumented",
            "query parameters a security scheme takes: known to strict validation",
            None,
        ),
        (
            "connexion.validators.parameter:ParameterValidator.strict_validation",
            "undocumented",
            "whether an unknown query parameter is refused",
            None,
        ),
        (
            "connexion.json_schema:Draft4RequestValidator",
            "undocumented",
            "the request-body JSON Schema validator Connexion uses (readOnly handling)",
            ("schema", "resolver", "format_checker", "registry", "_resolver"),
        ),
        (
            "connexion.lifecycle:ConnexionRequest.scope",
            "undocumented",
            "the request's ASGI scope, where the per-request state is (served by proxy from "
            "Starlette's Request, whose page shows its mapping interface, not this attribute)",
            None,
        ),
        # Errors (storefront.http.problems).
        (
            "connexion.exceptions:ProblemException.title",
            "undocumented",
            "a problem's own title, kept in the error body (the exceptions page documents the "
            "constructor's arguments, not attributes)",
            None,
        ),
        (
            "connexion.exceptions:OAuthScopeProblem.required_scopes",
            "undocumented",
            "the 403's message and WWW-Authenticate name the scope that is missing",
            None,
        ),
        (
            "connexion.exceptions:OAuthScopeProblem.token_scopes",
            "undocumented",
            "the 403's message and WWW-Authenticate name the scopes granted",
            None,
        ),
        # The test run (tests/spec_validation.py, installed by tests/conftest.py).
        (
            "connexion.spec:Specification",
            "undocumented",
            "the spec the compiled router reads; the tests wrap its validation",
            None,
        ),
        (
            "connexion.spec:Specification._validate_spec",
            "private",
            "the tests have it remember the documents it passed (the same document is "
            "validated once a run); the run fails at start when it is not a classmethod",
            ("cls", "spec"),
        ),
    ],
)

STARLETTE: tuple[Borrowed, ...] = _entries(
    "starlette",
    [
        (
            "starlette.routing:compile_path",
            "undocumented",
            "the compiled router compiles the spec's paths as Starlette's Route does",
            ("path",),
        ),
        (
            "starlette.concurrency:run_in_threadpool",
            "undocumented",
            "a sync handler runs in the thread pool, as Connexion runs it (named in the release "
            "notes only)",
            ("func", "args", "kwargs"),
        ),
        (
            "starlette.formparsers:MultiPartException",
            "undocumented",
            "the url-encoded parser raises Starlette's FormParser's error past a limit, so that "
            "both parsers' limits are handled alike",
            ("message",),
        ),
        (
            "starlette.formparsers:MultiPartException.message",
            "undocumented",
            "which limit was passed, to name the setting in the 400",
            None,
        ),
        (
            "starlette.datastructures:URL.include_query_params",
            "undocumented",
            "a Link header's target for a path or query that is not plain (release notes only)",
            ("self", "kwargs"),
        ),
        (
            "starlette.datastructures:URL.remove_query_params",
            "undocumented",
            "a Link header's target for a path or query that is not plain (release notes only)",
            ("self", "keys"),
        ),
    ],
)

UVICORN: tuple[Borrowed, ...] = _entries(
    "uvicorn",
    [
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
            "undocumented",
            "storefront serve's protocol subclasses it (uvicorn's http= takes a class, not "
            "documented), to bound request heads and answer malformed HTTP in the error shape",
            ("config", "server_state", "app_state", "_loop"),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.connection_made",
            "override",
            "a connection past STOREFRONT_MAX_CONNECTIONS is refused (503) before a byte of it "
            "is read; every other one must send its first byte within the first-byte timeout",
            ("self", "transport"),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.connection_lost",
            "override",
            "the connection's timer is stopped when it closes",
            ("self", "exc"),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.data_received",
            "override",
            "replaced, not called (tests/test_uvicorn_pins.py pins its source): each parser "
            "error told apart (an unknown method is a 501, an upgrade ends the connection), "
            "refusals answered in order, the head and body timers armed",
            ("self", "data"),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol._unset_keepalive_if_required",
            "private",
            "what uvicorn's data_received does first, kept in the replacement; and when a "
            "pipelined request is under way as the previous answer completes",
            ("self",),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_response_complete",
            "override",
            "a refusal waiting behind earlier answers is sent once they are out (RFC 9112 "
            "§9.3.2); keep-alive's timer does not close a connection whose next request is "
            "under way",
            ("self",),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_message_begin",
            "override",
            "a new request: its head starts being measured",
            ("self",),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_headers_complete",
            "override",
            "a head over the limits (431) or with a transfer coding this server does not "
            "implement (400, 501) is refused here, before uvicorn calls the app; a chunked "
            "request is held until its last chunk",
            ("self",),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_body",
            "override",
            "a chunked body is held (and refused past STOREFRONT_MAX_BODY_BYTES); a refused "
            "request's body is not handed on",
            ("self", "body"),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_message_complete",
            "override",
            "a held chunked request reaches the app whole, with a Content-Length; a refused "
            "request is not completed",
            ("self",),
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.connections",
            "undocumented",
            "the server's open connections (its set, shared by every protocol), counted against "
            "STOREFRONT_MAX_CONNECTIONS",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.parser",
            "undocumented",
            "the connection's httptools parser: fed by the replaced data_received, asked the "
            "request's HTTP version",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.scope",
            "undocumented",
            "the request being parsed: its headers replaced by a held chunked body's, and "
            "told apart from the cycle's (an upgrade on the request being answered)",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.pipeline",
            "undocumented",
            "requests parsed and waiting for the app: a refusal waits until they are answered",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.expect_100_continue",
            "undocumented",
            "a held chunked request is sent 100 Continue itself, and uvicorn's own is switched off",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.logger",
            "undocumented",
            "malformed HTTP is logged as uvicorn logs it",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.headers",
            "undocumented",
            "the head's fields, counted and measured against the limits",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.url",
            "undocumented",
            "the request target, measured with the fields",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.transport",
            "undocumented",
            "a refusal is written, the write side ended and the connection closed on it",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.cycle",
            "undocumented",
            "the request being answered: a refused pipelined request ends its keep-alive",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.client",
            "undocumented",
            "the peer's address, in the refusal's log line",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.loop",
            "undocumented",
            "the loop that closes a refused connection after it has lingered",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.server_state",
            "undocumented",
            "the server's default headers, sent with a refusal too",
            None,
        ),
        (
            "uvicorn.server:ServerState.default_headers",
            "undocumented",
            "the headers uvicorn adds to every response (Date, ...), added to a refusal",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.response_complete",
            "undocumented",
            "whether the request before a refused pipelined one is still being answered",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.scope",
            "undocumented",
            "whether the request being answered is the one an upgrade came with",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.body",
            "undocumented",
            "a held chunked request's whole body, handed to the cycle (assigned)",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.response_started",
            "undocumented",
            "a body that stops arriving: a 408 unless the app has started its answer",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.disconnected",
            "undocumented",
            "a body that stops arriving: the app reading it sees the client leave (assigned)",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.message_event",
            "undocumented",
            "set when the app reading a body must wake to see the client gone",
            None,
        ),
        (
            "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.keep_alive",
            "undocumented",
            "set False: the answer being sent is the connection's last (assigned)",
            None,
        ),
    ],
)

UVLOOP: tuple[Borrowed, ...] = (
    Borrowed(
        "uvloop",
        "uvloop:Loop",
        "undocumented",
        "subclassed by storefront serve's event loop (uvloop documents new_event_loop, "
        "install, run and EventLoopPolicy, not the class)",
    ),
    Borrowed(
        "uvloop",
        "uvloop:Loop.create_server",
        "override",
        "listens and accepts itself, up to ACCEPT_BATCH connections per turn where libuv "
        "accepts one, and hands each to uvloop; TLS and other options go to uvloop's",
        (
            "self",
            "protocol_factory",
            "host",
            "port",
            "family",
            "flags",
            "sock",
            "backlog",
            "ssl",
            "reuse_address",
            "reuse_port",
            "ssl_handshake_timeout",
            "ssl_shutdown_timeout",
            "start_serving",
        ),
    ),
)

SQLALCHEMY: tuple[Borrowed, ...] = (
    Borrowed(
        "sqlalchemy",
        "sqlalchemy.util:greenlet_spawn",
        "undocumented",
        "runs a PostgreSQL unit of work in one greenlet (the bridge under AsyncConnection's "
        "run_sync, which spawned three per unit of work, ~80 µs a read)",
        ("fn", "args", "_require_await", "kwargs"),
    ),
    Borrowed(
        "sqlalchemy",
        "sqlalchemy.exc:DBAPIError.instance",
        "undocumented",
        "a driver error from a statement run on the DB-API connection (PreparedQuery, the "
        "pooled begin) is raised as SQLAlchemy raises it, connection_invalidated included",
        (
            "cls",
            "statement",
            "params",
            "orig",
            "dbapi_base_err",
            "hide_parameters",
            "connection_invalidated",
            "dialect",
            "ismulti",
        ),
    ),
)

LIMITS: tuple[Borrowed, ...] = (
    Borrowed(
        "limits",
        "limits.limits:RateLimitItem.amount",
        "undocumented",
        "a budget's size, for its decisions and X-RateLimit-Limit (the API page documents the "
        "constructor's amount parameter, not an attribute)",
    ),
)

REDIS: tuple[Borrowed, ...] = (
    Borrowed(
        "redis",
        "redis.asyncio.sentinel:Sentinel.aclose",
        "undocumented",
        "shutdown closes the Sentinels' connections (the asyncio example closes clients and "
        "pools, not the Sentinel)",
        ("self",),
    ),
    Borrowed(
        "redis",
        "redis.asyncio.sentinel:MasterNotFoundError",
        "undocumented",
        "/readyz says no primary is known; the error is documented on the synchronous "
        "Sentinel, and imported from the asyncio module that re-exports it",
    ),
)

BORROWED: tuple[Borrowed, ...] = (
    CONNEXION + STARLETTE + UVICORN + UVLOOP + SQLALCHEMY + LIMITS + REDIS
)


@dataclass(frozen=True)
class Documented:
    """Names that a page of a library's documentation describes."""

    #: "module" or "module:qualname" (a class, or an object whose class is meant).
    path: str
    #: The names it documents there; ("*",): every public one (for a class, its inherited
    #: members too: the page lists them).
    names: tuple[str, ...]
    doc: str


SQLA = "https://docs.sqlalchemy.org/en/21/"
CNX = "https://connexion.readthedocs.io/en/stable/"
STL = "https://www.starlette.io/"
_ALL = ("*",)

DOCUMENTED: tuple[Documented, ...] = (
    # Connexion
    Documented("connexion", ("AsyncApp",), CNX + "middleware.html"),
    Documented("connexion", ("request",), CNX + "context.html"),
    Documented(
        "connexion:AsyncApp",
        ("add_api", "add_middleware", "add_error_handler"),
        CNX + "middleware.html",  # add_middleware; add_api: routing.html; errors: exceptions.html
    ),
    Documented(
        "connexion.middleware",
        ("ConnexionMiddleware", "MiddlewarePosition"),
        CNX + "middleware.html",
    ),
    # The page's example of a custom stack filters this list of classes.
    Documented(
        "connexion.middleware.main:ConnexionMiddleware",
        ("default_middlewares",),
        CNX + "middleware.html",
    ),
    Documented("connexion.middleware:MiddlewarePosition", _ALL, CNX + "middleware.html"),
    Documented("connexion.options", ("SwaggerUIOptions",), CNX + "swagger_ui.html"),
    Documented("connexion.lifecycle", ("ConnexionRequest",), CNX + "context.html"),
    Documented("connexion.lifecycle:ConnexionRequest", _ALL, CNX + "context.html"),
    # It serves its Starlette request's attributes by proxy (its docstring, on that page):
    # Starlette's requests page documents these.
    Documented(
        "connexion.lifecycle:ConnexionRequest", ("method", "url", "headers"), STL + "requests/"
    ),
    Documented("connexion.lifecycle", ("ConnexionResponse",), CNX + "exceptions.html"),
    Documented("connexion.exceptions", _ALL, CNX + "exceptions.html"),
    Documented(
        "connexion.validators",
        (
            "VALIDATOR_MAP",
            "FormDataValidator",
            "JSONRequestBodyValidator",
            "ParameterValidator",
            "AbstractRequestBodyValidator",
        ),
        CNX + "validation.html#custom-validators",
    ),
    Documented("connexion.datastructures", ("MediaTypeDict",), CNX + "validation.html"),
    Documented("connexion.jsonifier", ("Jsonifier",), CNX + "response.html"),
    # The operation context variable: OpenAPIOperation, its inherited members included.
    Documented("connexion.operations:OpenAPIOperation", _ALL, CNX + "context.html#operation"),
    # Starlette
    Documented("starlette.types", _ALL, STL + "middleware/#pure-asgi-middleware"),
    Documented("starlette.datastructures", ("URL",), STL + "middleware/"),
    Documented("starlette.datastructures:URL", ("path", "query"), STL + "requests/#url"),
    Documented("starlette.datastructures", ("QueryParams",), STL + "requests/#query-parameters"),
    Documented(
        "starlette.datastructures", ("FormData", "UploadFile"), STL + "requests/#request-files"
    ),
    Documented("starlette.exceptions", ("HTTPException",), STL + "exceptions/"),
    Documented(
        "starlette.exceptions:HTTPException",
        ("status_code", "detail", "headers"),
        STL + "exceptions/",
    ),
    Documented(
        "starlette.middleware.cors", ("CORSMiddleware",), STL + "middleware/#corsmiddleware"
    ),
    Documented("starlette.routing", ("Router",), STL + "routing/#host-based-routing"),
    Documented("starlette.routing:Router", ("routes",), STL + "routing/#host-based-routing"),
    # uvicorn
    Documented("uvicorn", ("run",), "https://www.uvicorn.org/deployment/#running-programmatically"),
    # SQLAlchemy
    Documented(
        "sqlalchemy",
        ("select", "exists", "table", "column", "Select", "ScalarSelect", "FromClause"),
        SQLA + "core/selectable.html",
    ),
    Documented("sqlalchemy", ("insert", "update", "delete", "Insert"), SQLA + "core/dml.html"),
    Documented(
        "sqlalchemy",
        (
            "bindparam",
            "case",
            "text",
            "true",
            "false",
            "tuple_",
            "or_",
            "literal_column",
            "func",
            "ColumnElement",
        ),
        SQLA + "core/sqlelement.html",
    ),
    Documented("sqlalchemy", ("Table", "Column", "MetaData"), SQLA + "core/metadata.html"),
    Documented(
        "sqlalchemy",
        ("ForeignKey", "ForeignKeyConstraint", "PrimaryKeyConstraint", "UniqueConstraint", "Index"),
        SQLA + "core/constraints.html",
    ),
    Documented(
        "sqlalchemy",
        (
            "BigInteger",
            "Date",
            "Boolean",
            "DateTime",
            "Integer",
            "LargeBinary",
            "Numeric",
            "SmallInteger",
            "String",
            "Text",
        ),
        SQLA + "core/type_basics.html",
    ),
    Documented("sqlalchemy", ("TypeDecorator",), SQLA + "core/custom_types.html"),
    Documented("sqlalchemy", ("Connection", "Engine", "Row"), SQLA + "core/connections.html"),
    Documented("sqlalchemy", ("create_engine",), SQLA + "core/engines.html"),
    Documented("sqlalchemy", ("inspect",), SQLA + "core/inspection.html"),
    Documented("sqlalchemy.types", ("TypeEngine",), SQLA + "core/type_api.html"),
    Documented(
        "sqlalchemy:func", _ALL, SQLA + "core/sqlelement.html#sqlalchemy.sql.expression.func"
    ),
    Documented("sqlalchemy.event", ("listen", "listens_for"), SQLA + "core/event.html"),
    Documented("sqlalchemy.exc", _ALL, SQLA + "core/exceptions.html"),
    Documented(
        "sqlalchemy.exc:DBAPIError",
        ("orig",),
        SQLA + "core/exceptions.html#sqlalchemy.exc.DBAPIError",
    ),
    Documented(
        "sqlalchemy.exc:DBAPIError",
        ("connection_invalidated",),
        SQLA + "core/pooling.html#disconnect-handling-pessimistic",
    ),
    Documented("sqlalchemy.exc:StatementError", ("orig",), SQLA + "core/exceptions.html"),
    Documented("sqlalchemy.engine", ("Connection", "URL", "make_url"), SQLA + "core/engines.html"),
    Documented("sqlalchemy.engine", ("Dialect", "ExecutionContext"), SQLA + "core/internals.html"),
    Documented("sqlalchemy.engine:Connection", _ALL, SQLA + "core/connections.html"),
    Documented("sqlalchemy.engine:Engine", _ALL, SQLA + "core/connections.html"),
    Documented("sqlalchemy.engine:Result", _ALL, SQLA + "core/connections.html"),
    Documented("sqlalchemy.engine:ScalarResult", _ALL, SQLA + "core/connections.html"),
    Documented("sqlalchemy.engine:CursorResult", _ALL, SQLA + "core/connections.html"),
    Documented("sqlalchemy.engine:URL", _ALL, SQLA + "core/engines.html"),
    # Core Internals: classes documented for dialect authors, with the members that have
    # docstrings there (the page renders no others).
    Documented(
        "sqlalchemy.engine:Dialect",
        ("name", "driver", "loaded_dbapi", "is_disconnect", "identifier_preparer"),
        SQLA + "core/internals.html#sqlalchemy.engine.Dialect",
    ),
    Documented(
        "sqlalchemy.sql.compiler:IdentifierPreparer",
        ("quote",),
        SQLA + "core/internals.html#sqlalchemy.sql.compiler.IdentifierPreparer",
    ),
    Documented(
        "sqlalchemy.engine:ExecutionContext",
        ("execution_options",),
        SQLA + "core/internals.html#sqlalchemy.engine.ExecutionContext",
    ),
    Documented(
        "sqlalchemy.engine:Compiled",
        ("params", "string"),
        SQLA + "core/internals.html#sqlalchemy.engine.Compiled",
    ),
    Documented(
        "sqlalchemy.sql.compiler:SQLCompiler",
        ("binds", "positiontup"),
        SQLA + "core/internals.html#sqlalchemy.sql.compiler.SQLCompiler",
    ),
    Documented("sqlalchemy.sql.expression:ClauseElement", _ALL, SQLA + "core/sqlelement.html"),
    Documented("sqlalchemy.sql.expression:ColumnOperators", _ALL, SQLA + "core/sqlelement.html"),
    Documented("sqlalchemy.sql.expression:Operators", _ALL, SQLA + "core/sqlelement.html"),
    Documented("sqlalchemy.sql.expression:Select", _ALL, SQLA + "core/selectable.html"),
    Documented("sqlalchemy.sql.expression:FromClause", _ALL, SQLA + "core/selectable.html"),
    Documented("sqlalchemy.sql.expression:SelectBase", _ALL, SQLA + "core/selectable.html"),
    Documented("sqlalchemy.sql.expression:Executable", _ALL, SQLA + "core/selectable.html"),
    Documented("sqlalchemy.sql.expression:Insert", _ALL, SQLA + "core/dml.html"),
    Documented("sqlalchemy.sql.expression:Update", _ALL, SQLA + "core/dml.html"),
    Documented("sqlalchemy.sql.expression:Delete", _ALL, SQLA + "core/dml.html"),
    Documented("sqlalchemy.schema:Table", _ALL, SQLA + "core/metadata.html"),
    Documented("sqlalchemy.schema:HasConditionalDDL", _ALL, SQLA + "core/constraints.html"),
    Documented(
        "sqlalchemy.dialects.postgresql", ("insert", "ARRAY"), SQLA + "dialects/postgresql.html"
    ),
    Documented("sqlalchemy.dialects.postgresql:Insert", _ALL, SQLA + "dialects/postgresql.html"),
    Documented("sqlalchemy.dialects.sqlite", ("insert",), SQLA + "dialects/sqlite.html"),
    Documented("sqlalchemy.dialects.sqlite:Insert", _ALL, SQLA + "dialects/sqlite.html"),
    Documented(
        "sqlalchemy.pool",
        ("ConnectionPoolEntry", "NullPool", "PoolProxiedConnection", "QueuePool"),
        SQLA + "core/pooling.html",
    ),
    Documented("sqlalchemy.pool:ManagesConnection", _ALL, SQLA + "core/pooling.html"),
    Documented("sqlalchemy.pool:PoolProxiedConnection", _ALL, SQLA + "core/pooling.html"),
    Documented("sqlalchemy.pool:QueuePool", _ALL, SQLA + "core/pooling.html"),
    Documented(
        "sqlalchemy.orm",
        ("Session", "sessionmaker"),
        SQLA + "orm/session_api.html",
    ),
    Documented(
        "sqlalchemy.orm",
        ("DeclarativeBase", "mapped_column"),
        SQLA + "orm/mapping_api.html",
    ),
    Documented(
        "sqlalchemy.orm",
        ("Mapped", "InstrumentedAttribute", "QueryableAttribute"),
        SQLA + "orm/internals.html",
    ),
    Documented("sqlalchemy.orm:Session", _ALL, SQLA + "orm/session_api.html"),
    Documented("sqlalchemy.orm:QueryableAttribute", _ALL, SQLA + "orm/internals.html"),
    Documented(
        "sqlalchemy.ext.asyncio",
        ("AsyncEngine", "AsyncConnection", "create_async_engine"),
        SQLA + "orm/extensions/asyncio.html",
    ),
    Documented("sqlalchemy.ext.asyncio:AsyncEngine", _ALL, SQLA + "orm/extensions/asyncio.html"),
    Documented(
        "sqlalchemy.ext.asyncio:AsyncConnection", _ALL, SQLA + "orm/extensions/asyncio.html"
    ),
    # limits (its API page renders every member, inherited ones too)
    Documented(
        "limits",
        ("parse", "parse_many", "RateLimitItem"),
        "https://limits.readthedocs.io/en/stable/api.html",
    ),
    Documented(
        "limits:RateLimitItem",
        ("get_expiry", "key_for", "multiples", "GRANULARITY"),
        "https://limits.readthedocs.io/en/stable/api.html#limits.RateLimitItem",
    ),
    Documented(
        "limits.aio.strategies",
        (
            "FixedWindowRateLimiter",
            "MovingWindowRateLimiter",
            "SlidingWindowCounterRateLimiter",
            "RateLimiter",
        ),
        "https://limits.readthedocs.io/en/stable/api.html#async-strategies",
    ),
    Documented(
        "limits.aio.storage", ("Storage",), "https://limits.readthedocs.io/en/stable/api.html"
    ),
    Documented(
        "limits.aio.storage:Storage", _ALL, "https://limits.readthedocs.io/en/stable/api.html"
    ),
    Documented(
        "limits.storage",
        ("storage_from_string",),
        "https://limits.readthedocs.io/en/stable/api.html",
    ),
    Documented(
        "limits.errors", ("StorageError",), "https://limits.readthedocs.io/en/stable/api.html"
    ),
    # redis-py
    Documented(
        "redis.asyncio",
        ("Redis", "ConnectionPool"),
        "https://redis.readthedocs.io/en/stable/examples/asyncio_examples.html",
    ),
    Documented(
        "redis.asyncio:ConnectionPool",
        ("from_url", "aclose"),
        "https://redis.readthedocs.io/en/stable/examples/asyncio_examples.html",
    ),
    Documented(
        "redis.asyncio.sentinel",
        ("Sentinel",),
        "https://redis.readthedocs.io/en/stable/examples/asyncio_examples.html#Sentinel-Client",
    ),
    Documented(
        "redis.asyncio.sentinel:Sentinel",
        ("master_for",),
        "https://redis.readthedocs.io/en/stable/examples/asyncio_examples.html#Sentinel-Client",
    ),
    Documented(
        "redis.commands.core:CoreCommands",
        _ALL,
        "https://redis.readthedocs.io/en/stable/commands.html",
    ),
    Documented("redis.exceptions", _ALL, "https://redis.readthedocs.io/en/stable/exceptions.html"),
)

#: What the libraries document as meant to be overridden in a subclass.
HOOKS: tuple[Documented, ...] = (
    Documented(
        "sqlalchemy:TypeDecorator",
        ("impl", "cache_ok", "process_bind_param", "process_result_value"),
        SQLA + "core/custom_types.html#augmenting-existing-types",
    ),
)


# ---------------------------------------------------------------------------------------------


def resolve(path: str) -> tuple[Any, str]:
    """(what holds the name, the name) for "module:qualname"; "module" alone is the module.

    A class member is held by the class of the MRO that defines it, or whose source assigns
    it on ``self``."""
    module_name, _, qualname = path.partition(":")
    holder: Any = importlib.import_module(module_name)
    if not qualname:
        return holder, ""
    *outer, name = qualname.split(".")
    for part in outer:
        holder = inspect.getattr_static(holder, part)
    if isinstance(holder, type):
        owner = _owner(holder, name)
        if owner is None and _proxies(holder):
            return holder, name  # served by __getattr__: not checkable in place
        if owner is None:
            raise AttributeError(f"{holder.__qualname__} has no attribute {name!r}")
        return owner, name
    if not isinstance(holder, types.ModuleType):
        holder = type(holder)
    if not hasattr(holder, name):
        raise AttributeError(f"{holder.__name__} has no attribute {name!r}")
    return holder, name


def _owner(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass) or name in instance_attributes(klass):
            return klass
    return None


@functools.cache
def _classes_in(filename: str) -> dict[str, ast.ClassDef]:
    """The classes of a source file by qualified name (the file parsed once)."""
    try:
        with open(filename, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    found: dict[str, ast.ClassDef] = {}
    pending: list[tuple[ast.AST, str]] = [(tree, "")]
    while pending:
        node, prefix = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                found.setdefault(prefix + child.name, child)
                pending.append((child, prefix + child.name + "."))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                pending.append((child, prefix + child.name + ".<locals>."))
            else:
                pending.append((child, prefix))
    return found


@functools.cache
def instance_attributes(cls: type) -> frozenset[str]:
    """The attributes a class's own source assigns on ``self`` or declares in its body."""
    filename = getattr(sys.modules.get(cls.__module__), "__file__", None) or ""
    node = _classes_in(filename).get(cls.__qualname__) if filename.endswith(".py") else None
    if node is None:
        return frozenset()
    found = {
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(item):
                targets: list[ast.expr] = []
                if isinstance(sub, ast.Assign):
                    targets = list(sub.targets)
                elif isinstance(sub, ast.AnnAssign | ast.AugAssign):
                    targets = [sub.target]
                for target in targets:
                    for one in target.elts if isinstance(target, ast.Tuple) else [target]:
                        if (
                            isinstance(one, ast.Attribute)
                            and isinstance(one.value, ast.Name)
                            and one.value.id == "self"
                        ):
                            found.add(one.attr)
    return frozenset(found)


def _proxies(cls: type) -> bool:
    """Whether a class serves attributes it does not have through ``__getattr__``."""
    return any("__getattr__" in vars(klass) for klass in cls.__mro__ if klass is not object)


def _public_names(cls: type) -> set[str]:
    names = set(dir(cls))
    for klass in cls.__mro__:
        names |= instance_attributes(klass)
    return {n for n in names if not n.startswith("_")}


def _target(path: str) -> Any:
    """The module or class a Documented path names (for an object: its class)."""
    module_name, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split(".") if qualname else []:
        found = getattr(found, part)
    return found if isinstance(found, type | types.ModuleType) else type(found)


def _index(entries: tuple[Documented, ...]) -> dict[tuple[int, str], list[Documented]]:
    """(id of what holds the name, the name) -> the entries that document it. An object's
    entry (SQLAlchemy's func, whose attributes are made on demand) documents any name of its
    class: "*"."""
    found: dict[tuple[int, str], list[Documented]] = {}
    for entry in entries:
        module_name, _, qualname = entry.path.partition(":")
        target = _target(entry.path)
        keys: set[tuple[int, str]] = set()
        if isinstance(target, types.ModuleType):
            keys = {(id(target), name) for name in entry.names}
        elif not isinstance(getattr(importlib.import_module(module_name), qualname), type):
            keys = {(id(target), "*")}
        else:
            names = _public_names(target) if entry.names == _ALL else set(entry.names)
            for name in names:
                owner = _owner(target, name)
                if owner is None and _proxies(target):
                    owner = target
                if owner is not None:
                    keys.add((id(owner), name))
        for key in keys:
            found.setdefault(key, []).append(entry)
    return found


@functools.cache
def _documented() -> dict[tuple[int, str], list[Documented]]:
    return _index(DOCUMENTED)


@functools.cache
def _hooks() -> dict[tuple[int, str], list[Documented]]:
    return _index(HOOKS)


@functools.cache
def _documented_classes() -> tuple[tuple[type, frozenset[str], Documented], ...]:
    found = []
    for entry in DOCUMENTED:
        target = _target(entry.path)
        if isinstance(target, type):
            names = _public_names(target) if entry.names == _ALL else set(entry.names)
            found.append((target, frozenset(names), entry))
    return tuple(found)


def documenting(holder: Any, name: str) -> list[Documented]:
    """The DOCUMENTED entries that document ``name`` as held by ``holder`` (a module, or the
    class that defines it): its own, or a documented subclass's (Connexion documents the
    operations that the code declares as AbstractOperation as OpenAPIOperation)."""
    index = _documented()
    found = index.get((id(holder), name), []) + index.get((id(holder), "*"), [])
    if isinstance(holder, type):
        found += [
            entry
            for target, names, entry in _documented_classes()
            if target is not holder and issubclass(target, holder) and name in names
        ]
    return found


def is_documented(holder: Any, name: str, receiver: type | None = None) -> bool:
    """Whether the documentation describes ``name`` as held by ``holder``, read on an instance
    of ``receiver``: a DOCUMENTED entry, or an interface that the standard library documents
    (asyncio's event loop, for uvloop's Loop)."""
    if documenting(holder, name):
        return True
    if isinstance(holder, types.ModuleType):
        return False
    return any(
        name in vars(klass) and klass.__module__.partition(".")[0] in sys.stdlib_module_names
        for klass in (receiver or holder).__mro__
        if klass is not object
    )


def documented_hooks(holder: type, name: str) -> list[Documented]:
    return _hooks().get((id(holder), name), [])


def check() -> list[str]:
    """What no longer holds in the installed libraries (empty when all is as registered)."""
    problems = []
    for library, pinned in PINNED.items():
        installed = version(library)
        if installed != pinned:
            problems.append(
                f"{library} {installed} is installed; its entries were read on {pinned}"
            )
    for entry in BORROWED:
        try:
            holder, name = resolve(entry.path)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{entry.path} is gone ({exc}); used for: {entry.why}")
            continue
        if entry.parameters is None:
            continue
        found = inspect.getattr_static(holder, name) if name else holder
        function = found.__func__ if isinstance(found, staticmethod | classmethod) else found
        try:
            names = tuple(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            problems.append(f"{entry.path} is no longer a callable; used for: {entry.why}")
            continue
        if names != entry.parameters:
            problems.append(
                f"{entry.path} now takes {names}, not {entry.parameters}; used for: {entry.why}"
            )
    connexion_middleware = importlib.import_module("connexion.middleware.main").ConnexionMiddleware
    stock = tuple(cls.__name__ for cls in connexion_middleware.default_middlewares)
    if stock != STOCK_MIDDLEWARES:
        problems.append(f"Connexion's default middlewares are now {stock}")
    return problems


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
