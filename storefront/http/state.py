"""What the HTTP adapter publishes about a request (see ``storefront.access.state`` for how
per-request state travels). One writer each:

- ``storefront.request_id``: the request's id, set by ``RequestMiddleware`` (outermost).
- ``storefront.route``: the spec's path the request matched (``/users/{id}``), a bounded log and
  metrics label, set by whichever router the stack has (``publish_route``).
- ``storefront.form_values``: a plain form body's fields, each with its values as sent (a
  field may be repeated, as RFC 8707's ``resource``), set by the form validator
  (``publish_form_values``), read through ``form_values_of``.

And the request itself, for the per-request dependencies of ``storefront.http.deps``: its
scope, set by ``RequestMiddleware`` as the request enters (``publish_scope``) in a context
variable of the request's own task. (Connexion's ``connexion.context.scope`` holds it too, but
behind a werkzeug LocalProxy whose object is only reached through a private method.)
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import Scope

from storefront.access.state import request_state

REQUEST_ID = "storefront.request_id"
ROUTE = "storefront.route"
FORM_VALUES = "storefront.form_values"
#: The route label of a request that matched no path of the spec.
UNMATCHED = "unmatched"


_CURRENT: ContextVar[Scope] = ContextVar("storefront.scope")


def publish_scope(scope: Scope) -> None:
    _CURRENT.set(scope)


def current_scope() -> Scope:
    """The scope of the request this task serves (LookupError outside of one)."""
    return _CURRENT.get()


def publish_route(scope: Scope, template: str) -> None:
    request_state(scope)[ROUTE] = template


def route_of(scope: Scope) -> str:
    found: str = scope.get("state", {}).get(ROUTE, UNMATCHED)
    return found


def request_id_of(scope: Scope) -> str | None:
    found: str | None = scope.get("state", {}).get(REQUEST_ID)
    return found


def publish_form_values(scope: Scope, values: dict[str, list[str]]) -> None:
    request_state(scope)[FORM_VALUES] = values


def form_values_of(scope: Scope, name: str) -> list[str] | None:
    """Every value of the form field ``name``, in order, as sent (None: no plain form was
    read for this request)."""
    found: dict[str, list[str]] | None = scope.get("state", {}).get(FORM_VALUES)
    if found is None:
        return None
    return found.get(name, [])
