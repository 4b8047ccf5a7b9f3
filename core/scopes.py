"""The scopes a client or an API key may hold, and which scope satisfies which.

The one vocabulary read by the security check (``storefront.access.authn``), the token grant
(``storefront.access.oauth``), the admin commands and the discovery document. ``openapi.yaml``
names each operation's scope in its ``OAuth2`` requirement and lists the API's scopes in the
client-credentials flow, where Swagger UI's Authorize dialog shows them; tests/test_openapi.py
holds the two equal.

The rule: a scope satisfies itself; ``read`` satisfies every ``<resource>:read`` and ``write``
every ``<resource>:write``. Nothing else: as ``write`` has never allowed reading,
``users:write`` does not allow ``users:read`` (a client that creates users need not see them),
and a resource scope never satisfies the broad one.
"""

from __future__ import annotations

from collections.abc import Iterable

READ = "read"
WRITE = "write"
#: The kinds of access, each with a broad scope over every resource.
ACCESSES = (READ, WRITE)
#: The resources with scopes of their own.
RESOURCES = ("users", "products")

#: The API's scopes, each with what it allows: what Swagger UI's Authorize dialog and the
#: discovery document show (``openapi.yaml``'s ``flows.clientCredentials.scopes``, equal).
API_SCOPES: dict[str, str] = {
    READ: "Read every resource: users and products.",
    WRITE: "Create, update and delete every resource: users and products (not read them).",
    "users:read": "Read users.",
    "users:write": "Create, update and delete users (not read them).",
    "products:read": "Read products.",
    "products:write": "Create, update and delete products (not read them).",
}
#: Not an API scope: lets a client (a resource server) introspect any client's tokens at
#: POST /auth/introspect, where others may introspect only their own.
INTROSPECT = "introspect"
#: Every scope a client may hold, in the order tokens and listings show them.
CLIENT_SCOPES: tuple[str, ...] = (*API_SCOPES, INTROSPECT)
_ORDER = {scope: n for n, scope in enumerate(CLIENT_SCOPES)}


def satisfies(held: str, needed: str) -> bool:
    """Whether holding ``held`` allows what ``needed`` allows."""
    if held == needed:
        return True
    resource, sep, access = needed.partition(":")
    return bool(sep) and resource in RESOURCES and access in ACCESSES and held == access


def allows(held: Iterable[str], needed: str) -> bool:
    """Whether any of the scopes ``held`` satisfies ``needed``."""
    return any(satisfies(scope, needed) for scope in held)


def missing(required: Iterable[str], held: Iterable[str]) -> list[str]:
    """The scopes of ``required`` that nothing ``held`` satisfies, in ``required``'s order."""
    have = list(held)
    return [scope for scope in dict.fromkeys(required) if not allows(have, scope)]


def broader(needed: str) -> str | None:
    """The broad scope that also satisfies ``needed`` (``write`` for ``users:write``), if any."""
    resource, sep, access = needed.partition(":")
    return access if sep and resource in RESOURCES and access in ACCESSES else None


def ordered(scopes: Iterable[str]) -> list[str]:
    """``scopes`` without repeats, in the vocabulary's order (any unknown one last, as given),
    so that "write read" and "read write" are one string."""
    unique = list(dict.fromkeys(scopes))
    return sorted(unique, key=lambda s: _ORDER.get(s, len(_ORDER)))


def unknown(scopes: Iterable[str]) -> list[str]:
    """The scopes no client may hold, in the order given."""
    return [scope for scope in dict.fromkeys(scopes) if scope not in _ORDER]
