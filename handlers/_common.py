"""What several handlers share: serialisation, paging headers, cursors."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from starlette.datastructures import URL

from core.errors import InvalidInput
from persistence.paging import Page
from storefront.http.deps import request, services

R = TypeVar("R")

#: A JSON object as handlers receive and return it.
Body = dict[str, Any]


#: On every response that carries a user: no cache, shared or private, may keep a copy (a
#: user's email outliving its deletion in a proxy or on a shared disk), and a cache that keeps
#: one anyway must not hand it to a caller with other credentials.
PRIVATE = {"Cache-Control": "no-store", "Vary": "Authorization, X-API-Key"}


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
    # The path and query of this request, without scheme or host: the targets differ from it
    # only in the query, and absolute_url puts them under the configured base.
    here = URL(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    cursored = "after" in request.query_params or "before" in request.query_params
    targets: list[tuple[URL, str]] = []
    if page.has_next and page.rows:
        after = cursor(page.rows[-1])
        if after is not None:
            target = here.remove_query_params(["offset", "before"])
            targets.append((target.include_query_params(limit=limit, after=after), "next"))
        elif not cursored:  # a key no cursor can carry: page on by offset instead
            targets.append((here.include_query_params(limit=limit, offset=offset + limit), "next"))
    if cursored:
        before = cursor(page.rows[0]) if page.has_prev and page.rows else None
        if before is not None:
            target = here.remove_query_params(["offset", "after"])
            targets.append((target.include_query_params(limit=limit, before=before), "prev"))
    elif offset > 0:
        prev = max(offset - limit, 0)
        targets.append((here.include_query_params(limit=limit, offset=prev), "prev"))
    headers = {"X-Total-Count": str(page.total)}
    if targets:
        headers["Link"] = ", ".join(
            f'<{absolute_url(str(target))}>; rel="{rel}"' for target, rel in targets
        )
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
    """``path`` (with its query) under ``STOREFRONT_PUBLIC_URL``; without one, ``path`` as it
    is: a relative reference, which RFC 8288 §3.1 and RFC 9110 §10.2.2 allow, resolved by the
    client against the URL it called. Never the request's Host header: a client may send any
    host it likes there, and a cache or a log could hand the link to someone else."""
    base = services().settings.public_url
    return path if base is None else base + path
