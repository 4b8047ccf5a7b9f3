"""Every per-request dependency a handler may ask for, named in one place.

Handlers run inside Connexion's context (``connexion.request``, ``connexion.context``), on
either stack; these read what the lower layers published for the current request.
"""

from __future__ import annotations

from connexion import request
from connexion.context import scope as current_scope

from storefront.access.services import Services, from_scope
from storefront.access.state import Caller, caller_of


def services() -> Services:
    """The app's services (database, tokens, limiter, ...), from the lifespan state."""
    # The scope itself, not ``request.scope``: Connexion's request proxy builds a new request
    # object on every access.
    return from_scope(current_scope)


def caller() -> Caller | None:
    """Who is calling, once a credential has been proven."""
    return caller_of(current_scope)


__all__ = ["Caller", "Services", "caller", "request", "services"]
