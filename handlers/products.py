"""/products"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from core.product_rules import clean_category, clean_description, clean_name, price_of_json
from handlers._common import Body, absolute_url, match_cursor, paging_headers
from persistence import product_records, products
from persistence.product_records import ProductRecord
from persistence.products import ProductRow
from persistence.rows import Precondition
from storefront.http import conditional, idempotency
from storefront.http.deps import header, services

#: Product responses carry no Cache-Control, as GET /products carries none: the catalogue is
#: the same for every caller (no Vary on credentials is needed), and a shared cache stores no
#: response to a request with Authorization unless told it may (RFC 9111 §3.5).


def _public(product: ProductRow | ProductRecord) -> Body:
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


def _changes(body: Body) -> dict[str, Any]:
    """The fields ``body`` gives, checked and cleaned by the rules the importer uses too
    (``core.product_rules``): a 400 naming the field otherwise."""
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = clean_name(body["name"])
    if "description" in body:
        changes["description"] = clean_description(body["description"])
    if "price" in body:
        changes["price"] = price_of_json(body["price"])
    if "category" in body:
        changes["category"] = clean_category(body["category"])
    return changes


async def _nothing_to_prepare() -> None:
    return None


async def create_product(body: Body) -> tuple[Body, int, dict[str, str]]:
    changes = _changes(body)
    fields: dict[str, Any] = {"description": "", **changes}
    key = idempotency.key_of(header(idempotency.HEADER))
    location = absolute_url("/products/")  # read here: create runs on a worker thread on SQLite

    def create(session: Session, _: None) -> tuple[Body, int, dict[str, str]]:
        product = product_records.create_product(session, **fields)
        headers = {"Location": location + product.id, "ETag": conditional.etag(product.version)}
        return _public(product), 201, headers

    if key is None:
        return await services().db.write(create, None)
    return await idempotency.run_once(
        key,
        operation="create_product",
        request_body=body,
        prepare=_nothing_to_prepare,
        perform=create,
    )


async def get_product(id_: str) -> tuple[Body | None, int, dict[str, str]]:
    product = await product_records.get_product(services().db, product_id=id_)
    headers = {"ETag": conditional.etag(product.version)}
    if conditional.not_modified(header("if-none-match"), product.version):
        return None, 304, headers
    return _public(product), 200, headers


def _precondition() -> Precondition | None:
    # Products keep no modification time: If-Unmodified-Since does not apply (RFC 9110
    # §13.1.4), and the spec does not offer it on them.
    return conditional.write_condition(
        if_match=header("if-match"),
        if_none_match=header("if-none-match"),
        if_unmodified_since=None,
        required=services().settings.require_if_match,
        noun="product",
    )


async def update_product(id_: str, body: Body) -> tuple[Body, int, dict[str, str]]:
    precondition = _precondition()
    changes = _changes(body)
    product = await services().db.write(
        product_records.update_product, product_id=id_, precondition=precondition, **changes
    )
    return _public(product), 200, {"ETag": conditional.etag(product.version)}


async def delete_product(id_: str) -> tuple[None, int]:
    precondition = _precondition()
    await services().db.write(
        product_records.delete_product, product_id=id_, precondition=precondition
    )
    return None, 204
