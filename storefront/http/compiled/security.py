"""Connexion's security handlers, minus the signature inspection they repeat on every call.

``AbstractSecurityHandler._generic_check`` asks ``_accepts_kwarg(func, ...)`` twice per
request, and each answer is an ``inspect.signature`` of the security function: a sixth of the
security layer's time. A function's signature does not change, so the answer is cached. The
override is of a private method (listed in ``storefront.internals``); the stock
stack uses Connexion's handlers as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from connexion.decorators.parameter import inspect_function_arguments
from connexion.security import (
    SECURITY_HANDLERS,
    ApiKeySecurityHandler,
    BasicSecurityHandler,
    BearerSecurityHandler,
    OAuthSecurityHandler,
)

from storefront.http.dpop_scheme import DPOP_SECURITY_MAP


@cache
def _accepts_kwarg(func: Callable[..., Any], keyword: str) -> bool:
    arguments, has_kwargs = inspect_function_arguments(func)
    return bool(has_kwargs or keyword in arguments)


class _CachedSignatures:
    _accepts_kwarg = staticmethod(_accepts_kwarg)


class OAuthHandler(_CachedSignatures, OAuthSecurityHandler):  # type: ignore[misc]
    pass


class ApiKeyHandler(_CachedSignatures, ApiKeySecurityHandler):  # type: ignore[misc]
    pass


class BearerHandler(_CachedSignatures, BearerSecurityHandler):  # type: ignore[misc]
    pass


class BasicHandler(_CachedSignatures, BasicSecurityHandler):  # type: ignore[misc]
    pass


#: For Connexion's public ``security_map`` option.
SECURITY_MAP: dict[str, type[Any]] = {
    **SECURITY_HANDLERS,
    "oauth2": OAuthHandler,
    "apiKey": ApiKeyHandler,
    "bearer": BearerHandler,
    "basic": BasicHandler,
    **DPOP_SECURITY_MAP,
}
