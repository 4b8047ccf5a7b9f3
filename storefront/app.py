"""The app factory: the one place that wires the spec, the handlers and storage together."""

from __future__ import annotations

import copy
import ctypes
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any

import connexion
import yaml
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from core.cache import TTLCache
from core.crypto import PasswordHashing, SecretDigester, TokenCodec
from core.errors import StorefrontError
from core.settings import (
    Settings,
    SettingsError,
    jwt_signing_key,
    load_settings,
    secret_pepper,
)
from persistence.db import Database
from storefront.access.discovery import base_url
from storefront.access.dpop import DPoPVerifier
from storefront.access.ratelimit import Limiter
from storefront.access.services import Services
from storefront.access.signing import SigningKeys
from storefront.http import problems
from storefront.http.compiled import SECURITY_MAP, CompiledApp
from storefront.http.doc_pages import SWAGGER_UI_PATH, DocPagesMiddleware
from storefront.http.dpop_scheme import DPOP_SECURITY_MAP
from storefront.http.failures import AuthFailureMiddleware
from storefront.http.limits import RequestLimitsMiddleware
from storefront.http.middleware import RequestMiddleware
from storefront.http.routes import HTTP_METHODS, RouteLabelMiddleware, RouteTable, handler_name
from storefront.http.spec_document import SpecDocumentMiddleware
from storefront.http.validators import BodyLimits, validator_map
from storefront.keyring import bind_secrets
from storefront.logs import configure_logging

logger = logging.getLogger("storefront")

#: What a browser script may read of a cross-origin response.
EXPOSED_HEADERS = [
    "Link",
    "Location",
    "Retry-After",
    "X-Total-Count",
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
    "DPoP-Nonce",  # RFC 9449 §8: the nonce a browser client puts in its next proof
    "WWW-Authenticate",
]


def spec_path() -> Path:
    """``openapi.yaml``: inside the installed package, or at the top of a source checkout."""
    packaged = Path(__file__).with_name("openapi.yaml")
    return packaged if packaged.exists() else Path(__file__).parent.parent / "openapi.yaml"


@cache
def _parsed_spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as fh:
        # The C-accelerated *safe* loader when libyaml is present: parsing is most of start-up.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        spec: dict[str, Any] = yaml.load(fh, Loader=loader)  # noqa: S506 - a safe loader
    return spec


def load_spec() -> dict[str, Any]:
    """The parsed ``openapi.yaml`` (parsed once per process; a fresh copy per caller)."""
    return copy.deepcopy(_parsed_spec())


def oauth_scopes_by_operation(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Handler name -> the scopes its ``OAuth2`` requirement names (the global one by default).

    Every operation is in the map, with [] when it needs no scope, so that a lookup that
    misses means a bug, and is refused (storefront.access.authn), rather than a free pass.
    """
    default = spec.get("security", [])
    scopes: dict[str, list[str]] = {}
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            needed: list[str] = []
            for requirement in operation.get("security", default):
                needed = list(requirement.get("OAuth2", needed))
            scopes[handler_name(operation)] = needed
    return scopes


def operations_with_budget(spec: dict[str, Any], budget: str) -> frozenset[str]:
    """Handler names of the operations whose ``x-rate-limit-budget`` is ``budget``."""
    return frozenset(
        handler_name(operation)
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("x-rate-limit-budget") == budget
    )


def served_spec(settings: Settings) -> dict[str, Any]:
    """``openapi.yaml`` as served: its one server is STOREFRONT_PUBLIC_URL when set (never the
    request's Host), else the relative ``/`` the file names.

    Read-only: without a public URL it is the process's one parsed copy, not a deep copy."""
    if not settings.public_url:
        return _parsed_spec()
    spec = dict(_parsed_spec())  # a shallow copy: only ``servers`` differs
    spec["servers"] = [{"url": settings.public_url, "description": "This Storefront API"}]
    return spec


def build_services(settings: Settings) -> Services:
    db = Database.from_settings(settings)
    # No key yet: the signing keys are the database's, loaded at the first request.
    tokens = TokenCodec(
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.token_ttl,
        resources=settings.resources,
    )
    pepper = secret_pepper(settings)
    return Services(
        settings=settings,
        db=db,
        # STOREFRONT_JWT_SECRET (or the kept key file) is the key-encryption key.
        signing=SigningKeys.from_settings(
            settings, db=db, codec=tokens, secret=jwt_signing_key(settings)
        ),
        digester=SecretDigester(pepper),
        passwords=PasswordHashing(concurrency=settings.password_hash_concurrency),
        limiter=Limiter.from_settings(settings),
        required_scopes=oauth_scopes_by_operation(_parsed_spec()),
        reads_budget_operations=operations_with_budget(_parsed_spec(), "rate_limit_reads"),
        client_status=TTLCache(settings.auth_cache_ttl),
        api_keys=TTLCache(settings.auth_cache_ttl),
        revoked=TTLCache(settings.auth_cache_ttl),
        # Its server nonces are derived from the pepper: every instance knows them.
        dpop=DPoPVerifier.from_settings(settings, base_url=base_url(settings), secret=pepper),
    )


def create_app(
    settings: Settings | None = None, *, freeze_heap: bool = False
) -> connexion.AsyncApp:
    """Build the ASGI app. Nothing connects to anything until the first request.

    ``freeze_heap`` (for a server process, not for tests that build many apps): once started,
    move every object made so far (the parsed spec, validators, compiled operations: most of
    the heap) out of the garbage collector's sight. A full collection would otherwise walk them
    all, again and again, for nothing: they live as long as the process. It was the source of
    the slowest requests (pauses of tens of milliseconds).
    """
    settings = settings or load_settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        await services.limiter.warn_if_unreachable()
        if freeze_heap:
            gc.collect()
            gc.freeze()
        try:
            yield {"services": services}
        finally:
            await services.limiter.close()
            await services.last_use.close()
            await services.usage.close()
            await services.db.dispose()

    spec = load_spec()
    compiled = settings.http_stack == "compiled"
    app: connexion.AsyncApp
    if compiled:
        app = CompiledApp(__name__, lifespan=lifespan, security_map=SECURITY_MAP)
    else:  # Connexion's stock middleware stack, with the same validators and security functions
        app = connexion.AsyncApp(__name__, lifespan=lifespan, security_map=DPOP_SECURITY_MAP)
    routes = RouteTable(spec)
    app.add_api(
        spec,
        strict_validation=True,
        validator_map=validator_map(
            BodyLimits(
                json_depth=settings.max_json_depth,
                json_number_chars=settings.max_json_number_chars,
                form_fields=settings.max_form_fields,
                form_field_bytes=settings.max_form_field_bytes,
            )
        ),
        pythonic_params=True,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(
            # SpecDocumentMiddleware serves the document as written instead (its docstring
            # says what Connexion's own copy gets wrong).
            serve_spec=False,
            swagger_ui=True,
            swagger_ui_path=SWAGGER_UI_PATH,  # its page is DocPagesMiddleware's
            swagger_ui_config={"persistAuthorization": True, "tryItOutEnabled": False},
        ),
    )
    # In front of Swagger UI's routes, at the paths Connexion would serve its copy on.
    app.add_middleware(
        SpecDocumentMiddleware,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        document=served_spec(settings),
    )
    # Outside Connexion's exception middleware, so that error responses get the headers too.
    app.add_middleware(
        RequestMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, usage=services.usage
    )
    # Inside the exception middleware, so that its 413 / 431 are mapped like any error; before
    # routing, so that an oversized request costs nothing more.
    app.add_middleware(
        RequestLimitsMiddleware,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        max_body_bytes=settings.max_body_bytes,
        max_header_count=settings.max_header_count,
        max_header_bytes=settings.max_header_bytes,
    )
    # /, /docs and /redoc: inside the limits (an oversized or upgrade request is refused
    # there first), before routing and security (they need no credentials).
    app.add_middleware(
        DocPagesMiddleware,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        title=spec["info"]["title"],
    )
    # After routing, around security and the handler: every failed authentication passes here.
    app.add_middleware(AuthFailureMiddleware, position=MiddlewarePosition.BEFORE_SECURITY)
    if not compiled:
        app.add_middleware(
            RouteLabelMiddleware,
            position=MiddlewarePosition.BEFORE_SECURITY,
            templates=routes.templates,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            position=MiddlewarePosition.BEFORE_EXCEPTION,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID", "DPoP"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_error_handler(StorefrontError, problems.storefront_error)
    http_error = partial(problems.http_error, routes=routes)
    app.add_error_handler(ProblemException, http_error)
    app.add_error_handler(HTTPException, http_error)
    app.add_error_handler(Exception, problems.unexpected_error)
    return app


#: glibc's mallopt() parameter for the size from which malloc maps memory of its own.
M_MMAP_THRESHOLD = -3
#: Blocks this large or larger are mapped, and unmapped when freed.
MMAP_THRESHOLD = 1024 * 1024


def release_large_blocks() -> bool:
    """Have glibc's malloc give large blocks back to the system when they are freed.

    Each argon2id hash (``core.crypto.PasswordHashing``) mallocs and frees 19 MiB. glibc maps
    a block that large and unmaps it when freed, but then raises its threshold to the freed
    block's size (up to 32 MiB), so that from the second hash on the 19 MiB come from a heap,
    where they stay after the free, one heap per thread that hashed: a worker that had hashed
    a few passwords kept 76-95 MB more for good (4 hashes at once, the default
    STOREFRONT_PASSWORD_HASH_CONCURRENCY; bench/memory.py). A threshold that is set stays
    where it is. Few other blocks are that large, so mapping them costs nothing measurable.

    Returns whether it was set: False where the C library has no mallopt (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def create_app_from_env() -> connexion.AsyncApp:
    """Factory for ``uvicorn --factory`` and the workers of ``storefront serve``."""
    settings = load_settings()
    configure_logging(settings)
    _refuse_foreign_secrets(settings)
    release_large_blocks()  # before the first password hash
    return create_app(settings, freeze_heap=True)


def _refuse_foreign_secrets(settings: Settings) -> None:
    """A server started by ``uvicorn --factory`` rather than ``storefront serve`` checks its
    pepper and signing key against the database too (``serve`` has, before its workers start).
    uvicorn calls the factory inside its event loop; the check runs its own, so in a thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(bind_secrets, settings, generate=True, check_algorithm=True).result()
        except SettingsError as exc:
            logger.error("storefront: %s", exc)
            raise SystemExit(2) from None
