"""Every per-request dependency a handler may ask for, named in one place.

Handlers run inside Connexion's context (``connexion.request``, ``connexion.context``), on
either stack; these read what the lower layers published for the current request.
"""

from __future__ import annotations

from connexion import request
from starlette.types import Scope

from storefront.access.ratelimit import RateLimitReport, rate_limit_report_of
from storefront.access.services import Services, from_scope
from storefront.access.state import Caller, caller_of
from storefront.http.state import current_scope, form_values_of


def services() -> Services:
    """The app's services (database, tokens, limiter, ...), from the lifespan state."""
    # The scope itself, not ``request.scope``: Connexion's request proxy builds a new request
    # object on every access (and its scope is the proxy again).
    return from_scope(request_scope())


def request_scope() -> Scope:
    """This request's ASGI scope: what ``request.url`` or ``request.query_params`` would be
    made from, read without them (``connexion.request`` makes a new request object on every
    attribute access, and each of those parses the URL or the query again)."""
    return current_scope()


def header(name: str) -> str | None:
    """A request header by its lower-case name, None when absent; repeated fields combined
    with ", " (RFC 9110 §5.3). Straight from the scope: ``request.headers`` builds a request
    and a header map first, a cost worth avoiding on every GET /users/{id} for an
    If-None-Match that is mostly absent."""
    wanted = name.encode("latin-1")
    found = [value for key, value in request_scope()["headers"] if key == wanted]  # lower-case
    if not found:
        return None
    return ", ".join(value.decode("latin-1") for value in found)


def header_fields(name: str) -> list[str]:
    """Every field of a request header by its lower-case name, in order (none: an empty
    list), read straight from the scope: for a header that must not be sent twice."""
    wanted = name.encode("latin-1")
    return [value.decode("latin-1") for key, value in request_scope()["headers"] if key == wanted]


def form_values(name: str) -> list[str] | None:
    """Every value of the form field ``name`` as sent, in order: what the handler's ``body``
    shows joined with "," when the field is repeated. None when no form was read."""
    return form_values_of(request_scope(), name)


def caller() -> Caller | None:
    """Who is calling, once a credential has been proven."""
    return caller_of(request_scope())


def rate_limit_report() -> RateLimitReport | None:
    """The caller's budgets as GET /rate_limit shows them (None: the rate-limit store was
    unreachable, failing open)."""
    return rate_limit_report_of(request_scope())


__all__ = [
    "Caller",
    "RateLimitReport",
    "Services",
    "caller",
    "form_values",
    "header",
    "header_fields",
    "rate_limit_report",
    "request",
    "request_scope",
    "services",
]
