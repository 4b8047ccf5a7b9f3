"""/products"""

from __future__ import annotations

import re

from handlers._common import Body, match_cursor, paging_headers
from persistence import products
from persistence.products import ProductRow
from storefront.http.deps import services


def _public(product: ProductRow) -> Body:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": float(product.price),
        "category": product.category,
    }


#: A product cursor is the product's id (imported ids match ``prod_[A-Za-z0-9_-]{1,59}``).
#: Clients treat cursors as opaque; the format may change.
PRODUCT_CURSOR = re.compile(r"^([A-Za-z0-9_-]{1,64})$")


def product_cursor(product: ProductRow) -> str | None:
    return product.id if PRODUCT_CURSOR.match(product.id) else None


def parse_product_cursor(parameter: str, cursor: str | None) -> str | None:
    found = match_cursor(parameter, cursor, PRODUCT_CURSOR)
    return None if found is None else found.group(1)


async def list_products(
    limit: int,
    offset: int,
    category: str | None = None,
    search: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> tuple[list[Body], int, dict[str, str]]:
    db = services().db
    # Any search may read far more than a page (a term too short for the trigram index reads
    # the whole catalogue, a common one counts every match): bounded, and off the event loop.
    read = db.read if search is None else db.scan
    page = await read(
        products.list_products,
        category=category,
        search=search,
        limit=limit,
        offset=offset,
        after=parse_product_cursor("after", after),
        before=parse_product_cursor("before", before),
    )
    headers = paging_headers(page, limit=limit, offset=offset, cursor=product_cursor)
    return [_public(p) for p in page.rows], 200, headers
