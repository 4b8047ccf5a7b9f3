"""/products: the seed's shape, the category and search filters, paging and scopes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from storefront import admin
from storefront.importer import import_file
from storefront.settings import Settings
from tests.helpers import assert_error, parse_links

Headers = dict[str, str]
PRODUCT_KEYS = {"id", "name", "description", "price", "category"}

CATALOGUE: list[dict[str, Any]] = [
    {
        "id": "prod_001",
        "name": "Gadget Pro",
        "description": "The latest and greatest gadget.",
        "price": 99.99,
        "category": "Electronics",
    },
    {
        "id": "prod_002",
        "name": "Stylish T-Shirt",
        "description": "Comfortable cotton t-shirt.",
        "price": 19.99,
        "category": "Apparel",
    },
    {
        "id": "prod_003",
        "name": "100% Cotton Socks",
        "description": "Warm and soft.",
        "price": 5,
        "category": "apparel",
    },
    {
        "id": "prod_004",
        "name": "snake_case Mug",
        "description": "For Python developers.",
        "price": 12.5,
        "category": "Kitchen",
    },
    {
        "id": "prod_005",
        "name": "Plain Mug",
        "description": "Dishwasher safe, 50 percent off.",
        "price": 7.25,
        "category": "KITCHEN",
    },
    {
        "id": "prod_006",
        "name": "Cable Kit",
        "description": "Adapters, 1/2 inch.",
        "price": 0,
        "category": "Electronics Accessories",
    },
    {
        "id": "prod_007",
        "name": "Widget",
        "description": "Works with any GADGET PRO.",
        "price": 1234.5,
        "category": "Electronics",
    },
]


def load(settings: Settings, tmp_path: Path, products: list[dict[str, Any]]) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(products), encoding="utf-8")
    assert import_file(settings, path, progress=False) == len(products)


@pytest.fixture
def catalogue(settings: Settings, tmp_path: Path) -> list[dict[str, Any]]:
    load(settings, tmp_path, CATALOGUE)
    return CATALOGUE


@pytest.fixture
def h(auth: Callable[..., Headers]) -> Headers:
    return auth("read")


def ids(response: Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [product["id"] for product in response.json()]


def test_shape_and_types(api: TestClient, h: Headers, catalogue: list[dict[str, Any]]) -> None:
    response = api.get("/products", headers=h)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-total-count"] == str(len(catalogue))
    assert "link" not in response.headers
    body = response.json()
    assert isinstance(body, list)
    assert [p["id"] for p in body] == sorted(p["id"] for p in catalogue)
    expected = {p["id"]: p for p in catalogue}
    for product in body:
        assert set(product) == PRODUCT_KEYS
        assert re.fullmatch(r"prod_[A-Za-z0-9_-]+", product["id"])
        for key in ("name", "description", "category"):
            assert isinstance(product[key], str)
        price = product["price"]
        assert isinstance(price, int | float)
        assert not isinstance(price, bool)
        assert price >= 0
        assert round(price, 2) == price
        assert product == expected[product["id"]]
    # A JSON number, not a string: "price": 99.99 in the body itself.
    assert re.search(r'"price":\s*99\.99\b', response.text)


def test_empty_catalogue(api: TestClient, h: Headers) -> None:
    response = api.get("/products", headers=h)
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-total-count"] == "0"


@pytest.mark.usefixtures("catalogue")
def test_category_is_exact_and_case_insensitive(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    for category, expected in [
        ("Electronics", ["prod_001", "prod_007"]),
        ("electronics", ["prod_001", "prod_007"]),
        ("ELECTRONICS", ["prod_001", "prod_007"]),
        ("Apparel", ["prod_002", "prod_003"]),
        ("apparel", ["prod_002", "prod_003"]),
        ("kitchen", ["prod_004", "prod_005"]),
        ("Electronics Accessories", ["prod_006"]),
        ("Electr", []),
        ("Accessories", []),
        ("Toys", []),
        ("%", []),
        ("_", []),
    ]:
        with subtests.test(category=category):
            response = api.get("/products", headers=h, params={"category": category})
            assert ids(response) == expected
            assert response.headers["x-total-count"] == str(len(expected))


@pytest.mark.usefixtures("catalogue")
def test_search_matches_name_or_description_case_insensitively(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    for search, expected in [
        ("gadget", ["prod_001", "prod_007"]),  # a name, and a description in capitals
        ("GADGET PRO", ["prod_001", "prod_007"]),
        ("cotton", ["prod_002", "prod_003"]),
        ("mug", ["prod_004", "prod_005"]),
        ("dishwasher", ["prod_005"]),
        ("50 percent", ["prod_005"]),
        ("t-shirt", ["prod_002"]),
        ("no such thing", []),
    ]:
        with subtests.test(search=search):
            response = api.get("/products", headers=h, params={"search": search})
            assert ids(response) == expected
            assert response.headers["x-total-count"] == str(len(expected))


@pytest.mark.usefixtures("catalogue")
def test_percent_and_underscore_are_literal(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    for search, expected in [
        ("%", ["prod_003"]),
        ("100%", ["prod_003"]),
        ("%cotton", []),  # as a wildcard it would match both cotton products
        ("_", ["prod_004"]),
        ("e_c", ["prod_004"]),
        ("g_d", []),  # as a wildcard it would match "gadget"
        ("%%", []),
        ("__", []),
        ("/", ["prod_006"]),
        ("\\", []),
    ]:
        with subtests.test(search=search):
            assert ids(api.get("/products", headers=h, params={"search": search})) == expected


@pytest.mark.usefixtures("catalogue")
def test_filters_combine(api: TestClient, h: Headers, subtests: pytest.Subtests) -> None:
    for params, expected in [
        ({"category": "electronics", "search": "gadget"}, ["prod_001", "prod_007"]),
        ({"category": "Electronics", "search": "widget"}, ["prod_007"]),
        ({"category": "APPAREL", "search": "Cotton"}, ["prod_002", "prod_003"]),
        ({"category": "Apparel", "search": "%"}, ["prod_003"]),
        ({"category": "kitchen", "search": "_"}, ["prod_004"]),
        ({"category": "Kitchen", "search": "gadget"}, []),
        ({"category": "Toys", "search": "mug"}, []),
    ]:
        with subtests.test(**params):
            response = api.get("/products", headers=h, params=params)
            assert ids(response) == expected
            assert response.headers["x-total-count"] == str(len(expected))


def test_paging_through_a_filtered_list(
    api: TestClient, h: Headers, settings: Settings, tmp_path: Path
) -> None:
    bulk = [
        {
            "id": f"prod_bulk{i:02d}",
            "name": f"Bulk item {i}",
            "description": "One of many.",
            "price": i + 0.5,
            "category": "Bulk",
        }
        for i in range(25)
    ]
    load(settings, tmp_path, CATALOGUE + bulk)

    everything = api.get("/products", headers=h)
    assert len(everything.json()) == 20  # the default limit
    assert everything.headers["x-total-count"] == "32"
    assert set(parse_links(everything.headers.get("link"))) == {"next"}

    seen: list[str] = []
    url: str | None = "/products?category=bulk&limit=10"
    pages = 0
    while url is not None:
        assert pages < 3, "more pages than 25 products at 10 a page need"
        response = api.get(url, headers=h)
        assert response.headers["x-total-count"] == "25"
        page = ids(response)
        assert len(page) == (10 if pages < 2 else 5)
        seen.extend(page)
        links = parse_links(response.headers.get("link"))
        assert ("prev" in links) == (pages > 0)
        for link in links.values():
            assert "category=bulk" in link  # the filter is kept
        url = links.get("next")
        pages += 1
    assert pages == 3
    assert seen == sorted(p["id"] for p in bulk)

    middle = api.get("/products?category=Bulk&limit=5&offset=5", headers=h)
    assert ids(middle) == seen[5:10]
    links = parse_links(middle.headers.get("link"))
    assert ids(api.get(links["prev"], headers=h)) == seen[0:5]
    assert ids(api.get(links["next"], headers=h)) == seen[10:15]


@pytest.mark.usefixtures("catalogue")
def test_bad_parameters_are_400s(api: TestClient, h: Headers, subtests: pytest.Subtests) -> None:
    for query, parameter in [
        ("search=", "search"),
        ("category=", "category"),
        ("search=" + "x" * 101, "search"),
        ("colour=red", "colour"),
        ("q=mug", "q"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
    ]:
        with subtests.test(query=query):
            assert_error(api.get(f"/products?{query}", headers=h), 400, parameter)


@pytest.mark.usefixtures("catalogue")
def test_read_scope_suffices_and_is_needed(
    api: TestClient,
    h: Headers,
    auth: Callable[..., Headers],
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[[str], admin.NewApiKey],
) -> None:
    assert len(ids(api.get("/products", headers=h))) == len(CATALOGUE)
    key = make_api_key(make_client("read").client_id).api_key
    assert len(ids(api.get("/products", headers={"X-API-Key": key}))) == len(CATALOGUE)
    authorization = {"Authorization": f"Bearer {key}"}
    assert len(ids(api.get("/products", headers=authorization))) == len(CATALOGUE)

    forbidden = api.get("/products", headers=auth("write"))
    assert_error(forbidden, 403)
    challenge = forbidden.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="read"' in challenge

    anonymous = api.get("/products")
    assert_error(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
