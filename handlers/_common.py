"""What several handlers share: the request's services, serialisation, paging headers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connexion import request
from connexion.context import scope as current_scope

from storefront.services import Services, from_scope

#: A JSON object as handlers receive and return it.
Body = dict[str, Any]


def services() -> Services:
    # The scope itself, not ``request.scope``: Connexion's request proxy builds a new request
    # object on every access.
    return from_scope(current_scope)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def paging_headers(*, total: int, limit: int, offset: int) -> dict[str, str]:
    """``X-Total-Count`` and an RFC 8288 ``Link`` with ``next`` / ``prev`` when they exist."""
    url = request.url
    links = []
    if offset + limit < total:
        links.append(
            f'<{url.include_query_params(limit=limit, offset=offset + limit)}>; rel="next"'
        )
    if offset > 0:
        prev = max(offset - limit, 0)
        links.append(f'<{url.include_query_params(limit=limit, offset=prev)}>; rel="prev"')
    headers = {"X-Total-Count": str(total)}
    if links:
        headers["Link"] = ", ".join(links)
    return headers


def absolute_url(path: str) -> str:
    base: str = str(request.base_url).rstrip("/")
    return base + path
