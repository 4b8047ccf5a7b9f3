"""/products"""

from __future__ import annotations

from handlers._common import Body, paging_headers, services
from persistence import products
from persistence.products import ProductRow


def _public(product: ProductRow) -> Body:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": float(product.price),
        "category": product.category,
    }


async def list_products(
    limit: int, offset: int, category: str | None = None, search: str | None = None
) -> tuple[list[Body], int, dict[str, str]]:
    page, total = await services().db.read(
        products.list_products, category=category, search=search, limit=limit, offset=offset
    )
    return [_public(p) for p in page], 200, paging_headers(total=total, limit=limit, offset=offset)
