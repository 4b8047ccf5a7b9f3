"""What several handlers share: serialisation, paging headers, cursors."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from core.errors import InvalidInput
from persistence.paging import Page
from storefront.http.deps import request

R = TypeVar("R")

#: A JSON object as handlers receive and return it.
Body = dict[str, Any]


#: On every response that carries a user: no cache, shared or private, may keep a copy (a
#: user's email outliving its deletion in a proxy or on a shared disk), and a cache that keeps
#: one anyway must not hand it to a caller with other credentials.
PRIVATE = {"Cache-Control": "no-store", "Vary": "Authorization, X-API-Key"}


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    url = request.url
    cursored = "after" in request.query_params or "before" in request.query_params
    links = []
    if page.has_next and page.rows:
        after = cursor(page.rows[-1])
        if after is not None:
            target = url.remove_query_params(["offset", "before"])
            links.append(f'<{target.include_query_params(limit=limit, after=after)}>; rel="next"')
        elif not cursored:  # a key no cursor can carry: page on by offset instead
            links.append(
                f'<{url.include_query_params(limit=limit, offset=offset + limit)}>; rel="next"'
            )
    if cursored:
        before = cursor(page.rows[0]) if page.has_prev and page.rows else None
        if before is not None:
            target = url.remove_query_params(["offset", "after"])
            links.append(f'<{target.include_query_params(limit=limit, before=before)}>; rel="prev"')
    elif offset > 0:
        prev = max(offset - limit, 0)
        links.append(f'<{url.include_query_params(limit=limit, offset=prev)}>; rel="prev"')
    headers = {"X-Total-Count": str(page.total)}
    if links:
        headers["Link"] = ", ".join(links)
    return headers


def match_cursor(
    parameter: str, cursor: str | None, pattern: re.Pattern[str]
) -> re.Match[str] | None:
    """The query parameter ``parameter`` (``after`` / ``before``) matched against a list's
    cursor ``pattern``: None when absent, a 400 naming the parameter when malformed."""
    if cursor is None:
        return None
    found = pattern.match(cursor)
    if found is None:
        raise InvalidInput(
            f"Invalid query parameter '{parameter}': not a cursor of this list; take cursors "
            "from the URLs of the Link header."
        )
    return found


def absolute_url(path: str) -> str:
    base: str = str(request.base_url).rstrip("/")
    return base + path
