"""Connexion's security handler for the ``DPoP`` HTTP authentication scheme (RFC 9449).

``openapi.yaml`` declares the scheme as ``type: http, scheme: DPoP``, and names its security
function in ``x-dpopInfoFunc`` (``storefront.access.authn.dpop_info``), as ``x-tokenInfoFunc``
names the bearer token's. Connexion's ``security_map`` takes a handler per HTTP scheme: this
one answers ``Authorization: DPoP <token>`` and leaves every other field to the other schemes
(``NO_VALUE``, Connexion's "not mine"), so that bearer tokens and API keys work as before.
Scopes are checked by the security function, as for API keys: OpenAPI lets only OAuth2
requirements name scopes.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from connexion.lifecycle import ConnexionRequest
from connexion.security import NO_VALUE

from storefront.access.dpop import SCHEME

INFO_FUNC = "x-dpopInfoFunc"
_SCHEME = SCHEME.lower().encode("latin-1")


def _function(dotted: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    module, _, name = dotted.rpartition(".")
    found: Callable[..., Awaitable[dict[str, Any]]] = getattr(importlib.import_module(module), name)
    return found


class DPoPSecurityHandler:
    def get_fn(
        self, security_scheme: dict[str, Any], required_scopes: list[str]
    ) -> Callable[[ConnexionRequest], Any]:
        info = _function(security_scheme[INFO_FUNC])

        def verify(request: ConnexionRequest) -> Any:
            # Not a coroutine function: "not mine" is answered without making a coroutine,
            # and Connexion awaits what it returns when that is one (the security function's).
            # Straight from the scope (lower-case names): the request's header map costs more.
            for name, field in request.scope["headers"]:
                if name == b"authorization":
                    scheme, _, token = field.partition(b" ")
                    if scheme.lower() != _SCHEME:
                        return NO_VALUE
                    return info(token.strip().decode("latin-1"), request)
            return NO_VALUE

        return verify


#: For Connexion's public ``security_map`` option, on both stacks.
DPOP_SECURITY_MAP: dict[str, type[Any]] = {"dpop": DPoPSecurityHandler}
