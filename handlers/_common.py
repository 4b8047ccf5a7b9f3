"""What several handlers share: serialisation, paging headers, cursors."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import URL, QueryParams
from starlette.types import Scope

from core.errors import InvalidInput
from persistence.paging import Page
from storefront.http.deps import request_scope, services

R = TypeVar("R")

#: A JSON object as handlers receive and return it.
Body = dict[str, Any]


#: On every response that carries a user: no cache, shared or private, may keep a copy (a
#: user's email outliving its deletion in a proxy or on a shared disk), and a cache that keeps
#: one anyway must not hand it to a caller with other credentials.
#: Read-only: Connexion adds Content-Type to the headers dict a handler returns, in place, so
#: a handler returns a copy (``headers | PRIVATE``, ``dict(PRIVATE)``); returning this one
#: itself would put Content-Type into every later response built from it (it did, once).
PRIVATE = MappingProxyType({"Cache-Control": "no-store", "Vary": "Authorization, X-API-Key"})


def rfc3339(moment: datetime) -> str:
    """An aware UTC time as RFC 3339 with ``Z``, to the second (isoformat is C code: a third
    cheaper than strftime, twenty times per list page)."""
    return moment.isoformat(timespec="seconds")[:19] + "Z"


def paging_headers(
    page: Page[R],
    *,
    limit: int,
    offset: int,
    cursor: Callable[[R], str | None],
) -> dict[str, str]:
    """``X-Total-Count`` and an RFC 8288 ``Link`` with ``next`` / ``prev`` when they exist.

    ``next`` carries an ``after`` cursor (the last row's, from ``cursor``): following it reads
    the index from that row on, at the same cost at any depth. ``prev`` is an offset link on
    a page read by offset, as the contract has it, and a ``before`` cursor (the first row's) on
    a page read by cursor. The other query parameters are kept.
    """
    here = Target.of(request_scope())
    cursored = here.has("after") or here.has("before")
    links: list[tuple[str, str]] = []
    if page.has_next and page.rows:
        after = cursor(page.rows[-1])
        if after is not None:
            links.append((here.with_params(("offset", "before"), limit=limit, after=after), "next"))
        elif not cursored:  # a key no cursor can carry: page on by offset instead
            links.append((here.with_params((), limit=limit, offset=offset + limit), "next"))
    if cursored:
        before = cursor(page.rows[0]) if page.has_prev and page.rows else None
        if before is not None:
            links.append(
                (here.with_params(("offset", "after"), limit=limit, before=before), "prev")
            )
    elif offset > 0:
        prev = max(offset - limit, 0)
        links.append((here.with_params((), limit=limit, offset=prev), "prev"))
    headers = {"X-Total-Count": str(page.total)}
    if links:
        headers["Link"] = ", ".join(
            f'<{absolute_url(target)}>; rel="{rel}"' for target, rel in links
        )
    return headers


#: A request path that Starlette's ``URL`` hands back as it is: printable ASCII without the
#: characters it escapes (``?``, ``#``, ``\\``) or a leading ``//``; and a query string
#: likewise (printable ASCII, no ``#``).
_PLAIN_PATH = re.compile(r"/(?!/)[!$->@-\[\]-~]*")
_PLAIN_QUERY = re.compile(rb"[!\"$-~]*")


class Target:
    """This request's path and query, and the same with some query parameters replaced: what
    Starlette's ``URL(...).remove_query_params(...).include_query_params(...)`` gives, from
    one parse of the query instead of a URL and a parse per step (a fifth of a list request's
    time). A path or query that is not plain is left to Starlette (:class:`_StarletteTarget`);
    ``tests/handlers/test_common.py`` holds the two to the same output."""

    def __init__(self, path: str, pairs: list[tuple[str, str]]) -> None:
        self.path = path
        self.pairs = pairs
        self.names = {name for name, _ in pairs}

    @staticmethod
    def of(scope: Scope) -> Target | _StarletteTarget:
        path, query = scope["path"], scope.get("query_string", b"")
        if not Target.plain(path, query):
            return _StarletteTarget(scope)
        return Target(path, parse_qsl(query.decode("ascii"), keep_blank_values=True))

    @staticmethod
    def plain(path: str, query: bytes) -> bool:
        return _PLAIN_PATH.fullmatch(path) is not None and _PLAIN_QUERY.fullmatch(query) is not None

    def has(self, name: str) -> bool:
        return name in self.names

    def with_params(self, removed: tuple[str, ...], **added: str | int) -> str:
        """The path and query with ``removed`` and ``added``'s names taken out and ``added``
        appended (as Starlette's ``MultiDict.update`` orders them)."""
        dropped = {*removed, *added}
        kept = [(name, value) for name, value in self.pairs if name not in dropped]
        query = urlencode(kept + [(name, str(value)) for name, value in added.items()])
        return f"{self.path}?{query}" if query else self.path


class _StarletteTarget:
    """:class:`Target` through Starlette's ``URL``, for requests whose path or query is not
    plain: whatever Starlette makes of them, as before."""

    def __init__(self, scope: Scope) -> None:
        url = URL(scope=scope)
        self.here = URL(url.path + (f"?{url.query}" if url.query else ""))
        self.params = QueryParams(scope.get("query_string", b""))

    def has(self, name: str) -> bool:
        return name in self.params

    def with_params(self, removed: tuple[str, ...], **added: str | int) -> str:
        target = self.here.remove_query_params(list(removed)) if removed else self.here
        return str(target.include_query_params(**added))


def match_cursor(
    parameter: str, cursor: str | None, pattern: re.Pattern[str]
) -> re.Match[str] | None:
    """The query parameter ``parameter`` (``after`` / ``before``) matched against a list's
    cursor ``pattern``: None when absent, a 400 naming the parameter when malformed."""
    if cursor is None:
        return None
    found = pattern.match(cursor)
    if found is None:
        # Worded as the spec's x-invalid-message of the cursor parameters, which refuses a
        # cursor of no list's form before this one is reached.
        raise InvalidInput(
            f"Invalid query parameter '{parameter}': not a cursor this server issued; follow "
            "the Link header's next or prev URL as it is, or leave the parameter out."
        )
    return found


def absolute_url(path: str) -> str:
    """``path`` (with its query) under ``STOREFRONT_PUBLIC_URL``; without one, ``path`` as it
    is: a relative reference, which RFC 8288 §3.1 and RFC 9110 §10.2.2 allow, resolved by the
    client against the URL it called. Never the request's Host header: a client may send any
    host it likes there, and a cache or a log could hand the link to someone else."""
    base = services().settings.public_url
    return path if base is None else base + path
