"""Products written over HTTP: POST, GET, PUT and DELETE /products/{id}, with ETags,
preconditions, Idempotency-Key, the importer's field rules, the name-and-category rule, and
lists, counts and remembered searches that see every write at once."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from core.errors import InvalidInput
from core.settings import Settings
from persistence.products import SEARCH_PAGES
from storefront.app import create_app
from storefront.importer import import_file
from tests.helpers import assert_error, db_rows

Headers = dict[str, str]
STRONG = re.compile(r'^"[!#-~]+"$')
GADGET = {
    "name": "Gadget Pro",
    "description": "The latest and greatest gadget.",
    "price": 99.99,
    "category": "Electronics",
}


@pytest.fixture
def h(auth: Callable[..., Headers]) -> Headers:
    return auth("read write")


def create(api: TestClient, h: Headers, **fields: Any) -> tuple[str, str]:
    response = api.post("/products", headers=h, json={**GADGET, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.headers["etag"]


def product_count(settings: Settings) -> int:
    [(count,)] = db_rows(settings, "SELECT count(*) FROM products")
    return int(count)


def test_create_read_update_delete(api: TestClient, h: Headers) -> None:
    created = api.post("/products", headers=h, json={**GADGET, "name": "  Gadget Pro \t"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert re.fullmatch(r"prod_[A-Za-z0-9_-]{16}", body["id"])
    assert body == {**GADGET, "id": body["id"]}  # the name stored trimmed
    assert created.headers["location"] == f"/products/{body['id']}"
    assert STRONG.match(created.headers["etag"])
    assert "cache-control" not in created.headers  # public catalogue data, as GET /products

    got = api.get(created.headers["location"], headers=h)
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["etag"] == created.headers["etag"]

    put = api.put(f"/products/{body['id']}", headers=h, json={"price": 5})
    assert put.status_code == 200, put.text
    assert put.json() == {**body, "price": 5}
    assert put.headers["etag"] != created.headers["etag"]
    assert api.get(f"/products/{body['id']}", headers=h).json()["price"] == 5

    assert api.delete(f"/products/{body['id']}", headers=h).status_code == 204
    for method in ("GET", "PUT", "DELETE"):
        gone = api.request(
            method,
            f"/products/{body['id']}",
            headers=h,
            json={"price": 1} if method == "PUT" else None,
        )
        assert gone.json() == {
            "error": "Product not found",
            "message": "The specified product ID does not exist.",
        }
        assert gone.status_code == 404


def test_description_is_optional_and_kept_as_given(api: TestClient, h: Headers) -> None:
    bare = api.post("/products", headers=h, json={"name": "Mug", "price": 0, "category": "K"})
    assert bare.status_code == 201, bare.text
    assert bare.json()["description"] == ""
    spaced = api.post("/products", headers=h, json={**GADGET, "description": " two  spaces "})
    assert spaced.json()["description"] == " two  spaces "


def test_etags_304s_and_preconditions(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    product_id, first = create(api, h)
    with subtests.test("If-None-Match with the current tag is a 304 without a body"):
        for header in (first, f"W/{first}", "*"):
            response = api.get(f"/products/{product_id}", headers={**h, "If-None-Match": header})
            assert response.status_code == 304
            assert response.content == b""
            assert response.headers["etag"] == first
    current = api.put(f"/products/{product_id}", headers=h, json={"name": "Second"}).headers["etag"]
    with subtests.test("an older tag gets the product"):
        response = api.get(f"/products/{product_id}", headers={**h, "If-None-Match": first})
        assert response.status_code == 200
        assert response.json()["name"] == "Second"
    with subtests.test("writes over another version are 412s that change nothing"):
        for header in (first, f"W/{current}", '"nope"'):
            for method, kwargs in (("PUT", {"json": {"name": "Lost"}}), ("DELETE", {})):
                response = api.request(
                    method, f"/products/{product_id}", headers={**h, "If-Match": header}, **kwargs
                )
                body = assert_error(response, 412, "If-Match", "product")
                assert body["error"] == "Precondition Failed"
        after = api.get(f"/products/{product_id}", headers=h)
        assert after.json()["name"] == "Second"
        assert after.headers["etag"] == current
    with subtests.test("If-None-Match: * on a write is a 412"):
        response = api.put(
            f"/products/{product_id}", headers={**h, "If-None-Match": "*"}, json={"price": 1}
        )
        assert_error(response, 412, "If-None-Match")
    with subtests.test("a malformed If-Match is a 400"):
        response = api.delete(f"/products/{product_id}", headers={**h, "If-Match": "3"})
        assert_error(response, 400, "If-Match")
    with subtests.test("the current tag writes"):
        put = api.put(
            f"/products/{product_id}", headers={**h, "If-Match": current}, json={"price": 1.5}
        )
        assert put.status_code == 200, put.text
        deleted = api.delete(
            f"/products/{product_id}", headers={**h, "If-Match": put.headers["etag"]}
        )
        assert deleted.status_code == 204


def test_if_match_required_when_the_server_says_so(
    settings: Settings, h: Headers, api: TestClient
) -> None:
    product_id, tag = create(api, h)
    strict = create_app(settings.model_copy(update={"require_if_match": True}))
    with strict.test_client() as client:
        for method, kwargs in (("PUT", {"json": {"price": 2}}), ("DELETE", {})):
            response = client.request(method, f"/products/{product_id}", headers=h, **kwargs)
            assert_error(response, 428, "If-Match", "product")
        put = client.put(
            f"/products/{product_id}", headers={**h, "If-Match": tag}, json={"price": 2}
        )
        assert put.status_code == 200, put.text


def test_an_idempotent_post_is_replayed_and_forgotten_with_the_product(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    key = {"Idempotency-Key": "5d1c1f0e-create-gadget"}
    first = api.post("/products", headers={**h, **key}, json=GADGET)
    assert first.status_code == 201, first.text
    retry = api.post("/products", headers={**h, **key}, json=GADGET)
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["etag"] == first.headers["etag"]
    assert product_count(settings) == 1
    other = api.post("/products", headers={**h, **key}, json={**GADGET, "price": 1})
    assert_error(other, 422, "Idempotency-Key")
    assert api.delete(first.headers["location"], headers=h).status_code == 204
    gone = api.post("/products", headers={**h, **key}, json=GADGET)
    assert_error(gone, 410)
    assert product_count(settings) == 0


@pytest.mark.stock_stack
def test_each_field_is_checked_and_named(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("name missing", {"name": None}, "'name' is a required property"),
        ("name blank", {"name": "   "}, "'name' must be 1 to 200 characters"),
        ("name too long", {"name": "n" * 201}, "'name' must be 1 to 200 characters"),
        ("name with NUL", {"name": "a\x00b"}, "'name' must be 1 to 200 characters"),
        ("name not a string", {"name": 3}, "'name' must be of type string"),
        ("category blank", {"category": ""}, "'category' must be"),
        ("category too long", {"category": "c" * 101}, "'category' must be 1 to 100 characters"),
        ("description too long", {"description": "d" * 5001}, "'description' must be at most"),
        ("price negative", {"price": -1}, "'price' must be at least 0"),
        ("price too large", {"price": 10**10}, "'price' must be at most 9999999999.99"),
        ("price of three decimals", {"price": 1.234}, "'price' must be a number from 0"),
        ("price a string", {"price": "9.99"}, "'price' must be of type number"),
        ("an unknown field", {"id": "prod_mine"}, "Additional properties are not allowed"),
    ]
    for label, change, words in cases:
        with subtests.test(label):
            body = {k: v for k, v in {**GADGET, **change}.items() if v is not None}
            response = api.post("/products", headers=h, json=body)
            assert assert_error(response, 400)["message"].startswith(words), response.text
    product_id, _ = create(api, h)
    for label, body, words in [
        ("an empty update", {}, "The request body must have at least 1 field"),
        ("a bad price", {"price": 0.001}, "'price' must be a number from 0"),
        ("a blank name", {"name": " \t"}, "'name' must be 1 to 200 characters"),
    ]:
        with subtests.test(f"PUT: {label}"):
            response = api.put(f"/products/{product_id}", headers=h, json=body)
            assert assert_error(response, 400)["message"].startswith(words), response.text
    assert product_count(settings) == 1


@pytest.mark.stock_stack
def test_writes_need_the_write_scope(
    api: TestClient, auth: Callable[..., Headers], h: Headers
) -> None:
    product_id, _ = create(api, h)
    reader = auth("read")
    assert api.get(f"/products/{product_id}", headers=reader).status_code == 200
    for method, path, kwargs in (
        ("POST", "/products", {"json": GADGET}),
        ("PUT", f"/products/{product_id}", {"json": {"price": 1}}),
        ("DELETE", f"/products/{product_id}", {}),
    ):
        response = api.request(method, path, headers=reader, **kwargs)
        assert_error(response, 403, "write")
    assert api.get(f"/products/{product_id}", headers=auth("write")).status_code == 403


def test_a_name_is_taken_once_per_category(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    product_id, _ = create(api, h)
    conflict = {
        "error": "Product already exists",
        "message": "Another product already has this name in this category (compared "
        "case-insensitively); update that product, or choose another name.",
    }
    with subtests.test("POST of the same name and category, in other cases"):
        response = api.post(
            "/products", headers=h, json={**GADGET, "name": "GADGET pro", "category": "electronics"}
        )
        assert response.status_code == 409
        assert response.json() == conflict
    with subtests.test("the same name in another category is another product"):
        other_id, _ = create(api, h, category="Toys")
    with subtests.test("PUT moving a product onto a taken pair"):
        response = api.put(f"/products/{other_id}", headers=h, json={"category": "ELECTRONICS"})
        assert response.status_code == 409
        assert response.json() == conflict
    with subtests.test("a product may keep its own name"):
        response = api.put(f"/products/{product_id}", headers=h, json={"name": "gadget PRO"})
        assert response.status_code == 200, response.text
    with subtests.test("the name is free again once its product is renamed"):
        api.put(f"/products/{product_id}", headers=h, json={"name": "Gadget Max"})
        create(api, h)


def test_lists_counts_and_searches_see_each_write_at_once(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    def listed(query: str) -> tuple[list[str], str]:
        response = api.get(f"/products?{query}", headers=h)
        assert response.status_code == 200, response.text
        return [p["name"] for p in response.json()], response.headers["x-total-count"]

    create(api, h, name="Walnut Board", category="Kitchen")
    queries = ("search=walnut", "search=wal&category=kitchen", "category=Kitchen", "limit=5")
    for query in queries:  # twice: the second is a remembered page
        assert listed(query) == (["Walnut Board"], "1")
        assert listed(query) == (["Walnut Board"], "1")
    assert len(SEARCH_PAGES) > 0

    second_id, _ = create(api, h, name="Walnut Bowl", category="Kitchen", price=12)
    for query in queries:
        assert listed(query) == (["Walnut Board", "Walnut Bowl"], "2") or listed(query) == (
            ["Walnut Bowl", "Walnut Board"],
            "2",
        )

    api.put(f"/products/{second_id}", headers=h, json={"name": "Oak Bowl"})
    assert listed("search=walnut") == (["Walnut Board"], "1")
    assert listed("search=oak") == (["Oak Bowl"], "1")
    assert listed("category=kitchen")[1] == "2"

    api.put(f"/products/{second_id}", headers=h, json={"category": "Garden"})
    assert listed("category=kitchen") == (["Walnut Board"], "1")
    assert listed("category=garden") == (["Oak Bowl"], "1")

    api.delete(f"/products/{second_id}", headers=h)
    assert listed("search=oak") == ([], "0")
    assert listed("category=garden") == ([], "0")
    assert listed("limit=5") == (["Walnut Board"], "1")


def test_the_total_count_stays_exact_under_concurrent_writes(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    def post(n: int) -> str:
        return create(api, h, name=f"Product {n}")[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(post, range(24)))
        gone = ids[::3]
        deleted = list(
            pool.map(lambda i: api.delete(f"/products/{i}", headers=h).status_code, gone)
        )
        more = list(pool.map(post, range(24, 32)))
    assert deleted == [204] * len(gone)
    rows = product_count(settings)
    assert rows == len(ids) + len(more) - len(gone)
    total = api.get("/products", headers=h).headers["x-total-count"]
    assert total == str(rows)
    assert api.get("/products?category=electronics", headers=h).headers["x-total-count"] == str(
        rows
    )


def test_an_import_gives_a_changed_product_a_new_etag(
    api: TestClient, h: Headers, settings: Settings, tmp_path: Path
) -> None:
    product_id, tag = create(api, h)
    path = tmp_path / "catalogue.json"

    def load(price: str) -> None:
        row = {**GADGET, "id": product_id, "price": price}
        path.write_text(json.dumps([row]).replace(f'"{price}"', price), encoding="utf-8")
        import_file(settings, path, progress=False)

    load("99.99")  # unchanged: not written, the same tag
    assert api.get(f"/products/{product_id}", headers=h).headers["etag"] == tag
    load("89.99")
    changed = api.get(f"/products/{product_id}", headers=h)
    assert changed.json()["price"] == 89.99
    assert changed.headers["etag"] != tag
    assert_error(
        api.put(f"/products/{product_id}", headers={**h, "If-Match": tag}, json={"price": 1}),
        412,
    )


#: Rows both the importer and the API refuse, and the field each names.
BAD_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"name": "  "}, "name"),
    ({"name": "n" * 201}, "name"),
    ({"category": "c" * 101}, "category"),
    ({"description": "d" * 5001}, "description"),
    ({"price": -0.5}, "price"),
    ({"price": 1.005}, "price"),
    ({"price": 10000000000}, "price"),
]


def test_the_importer_and_the_api_refuse_the_same_rows(
    api: TestClient, h: Headers, settings: Settings, tmp_path: Path, subtests: pytest.Subtests
) -> None:
    path = tmp_path / "bad.json"
    for change, field in BAD_ROWS:
        with subtests.test(field=field, change=str(change)[:40]):
            row = {**GADGET, **change}
            path.write_text(json.dumps([row]), encoding="utf-8")
            with pytest.raises(InvalidInput, match=f"field '{field}'"):
                import_file(settings, path, progress=False)
            response = api.post("/products", headers=h, json=row)
            assert f"'{field}'" in assert_error(response, 400)["message"]
    assert product_count(settings) == 0
    with subtests.test("and accept the same good ones"):
        row = {**GADGET, "name": " Mug ", "price": 0.5, "description": ""}
        path.write_text(json.dumps([row]), encoding="utf-8")
        import_file(settings, path, progress=False)
        imported = api.get("/products", headers=h).json()
        assert [p["name"] for p in imported] == ["Mug"]
        created = api.post("/products", headers=h, json={**row, "category": "Other"})
        assert created.status_code == 201, created.text
        assert {k: v for k, v in created.json().items() if k not in ("id", "category")} == {
            k: v for k, v in imported[0].items() if k not in ("id", "category")
        }
