"""/products: the seed's shape, the category and search filters, paging and scopes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from httpx2 import Response
from sqlalchemy import Connection, text
from starlette.testclient import TestClient

import persistence.products
from core.settings import Settings
from storefront import admin
from storefront.app import create_app
from storefront.importer import import_file
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
    assert import_file(settings, path, progress=False).total == len(products)


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


@pytest.mark.stock_stack
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


@pytest.mark.stock_stack
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
    assert 'scope="products:read"' in challenge

    anonymous = api.get("/products")
    assert_error(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")


# --- the search index and keyset paging ---------------------------------------------------


def matching(products: list[dict[str, Any]], term: str) -> list[str]:
    """What search=term must return: a case-insensitive substring of name or description."""
    term = term.lower()
    return sorted(
        p["id"] for p in products if term in p["name"].lower() or term in p["description"].lower()
    )


@pytest.fixture
def upsert(settings: Settings, tmp_path: Path) -> Callable[[list[dict[str, Any]]], None]:
    """Import products through the importer (an upsert by id), as often as a test likes."""
    imports = count()

    def load_more(products: list[dict[str, Any]]) -> None:
        path = tmp_path / f"import{next(imports)}.json"
        path.write_text(json.dumps(products), encoding="utf-8")
        assert import_file(settings, path, progress=False).total == len(products)

    return load_more


@pytest.mark.usefixtures("catalogue")
def test_search_terms_are_literal_text(
    api: TestClient,
    h: Headers,
    upsert: Callable[[list[dict[str, Any]]], None],
    subtests: pytest.Subtests,
) -> None:
    extra = [
        {
            "id": "prod_q1",
            "name": 'The "Quoted" Lamp',
            "description": "It's AND-or-NOT: near(1, 2) * ^prefix col:value {a b} -minus +plus.",
            "price": 3,
            "category": "Lamps",
        },
        {
            "id": "prod_q2",
            "name": "Tab\tand  spaces",
            "description": "Ends with the term abc",
            "price": 4,
            "category": "Lamps",
        },
    ]
    everything = CATALOGUE + extra
    upsert(extra)
    for term in [
        '"Quoted"',
        '"',
        'e "q',
        "It's",
        "'s A",
        "AND-or-NOT",
        "near(1, 2)",
        "* ^prefix",
        "col:value",
        "{a b}",
        "-minus +plus",
        "Tab\tand  sp",
        "abc",  # at the very end of a column
        "ab",
        "c",
        "lamp",  # a name
        "mugdish",  # across name and description: no match
        "mug dishwasher",
        "ug",
        "100",
        "% c",
        "o_s",
        "ET PRO.",
    ]:
        with subtests.test(term=term):
            response = api.get("/products", headers=h, params={"search": term})
            assert ids(response) == matching(everything, term)
            assert response.headers["x-total-count"] == str(len(matching(everything, term)))


def test_the_index_follows_updates_and_deletes(
    api: TestClient,
    h: Headers,
    settings: Settings,
    upsert: Callable[[list[dict[str, Any]]], None],
) -> None:
    def search(term: str) -> list[str]:
        return ids(api.get("/products", headers=h, params={"search": term}))

    upsert(CATALOGUE)
    assert search("gadget") == ["prod_001", "prod_007"]
    # The importer updates existing ids in place (INSERT … ON CONFLICT DO UPDATE).
    renamed = {**CATALOGUE[0], "name": "Gizmo Deluxe", "description": "Formerly a gadget."}
    widget = {**CATALOGUE[6], "description": "Works with anything."}
    upsert([renamed, widget, {**CATALOGUE[1], "price": 1}])  # a price change only
    assert search("gadget") == ["prod_001"]
    assert search("gizmo") == ["prod_001"]
    assert search("deluxe") == ["prod_001"]
    assert search("works with any") == ["prod_007"]
    assert search("stylish") == ["prod_002"]
    assert search("pro") == []  # both "Gadget Pro"s are gone
    delete = text("DELETE FROM products WHERE id IN ('prod_001', 'prod_004')")
    admin.run(settings, lambda session: session.execute(delete))
    assert search("gizmo") == []
    assert search("snake_case") == []
    assert search("mug") == ["prod_005"]
    response = api.get("/products", headers=h, params={"search": "Mug"})
    assert response.headers["x-total-count"] == "1"


def test_search_at_scale_pages_like_the_plain_list(
    api: TestClient, h: Headers, upsert: Callable[[list[dict[str, Any]]], None]
) -> None:
    """Common terms (SQLite walks the id index) and rare ones (it sorts the matches) page
    alike, by offset and by cursor, forwards and backwards."""
    products = [
        {
            "id": f"prod_{(i * 7919) % 1000:03d}x{i}",
            "name": f"Item {i} {'common' if i % 2 else 'plain'}",
            "description": "rare find" if i % 97 == 5 else "ordinary",
            "price": 1,
            "category": "Many" if i % 3 else "Few",
        }
        for i in range(400)
    ]
    upsert(products)
    for params in [
        {"search": "common"},
        {"search": "rare find"},
        {"search": "common", "category": "few"},
        {"search": "ordinary", "category": "MANY"},
        {"search": "item"},
    ]:
        expected = sorted(
            p["id"]
            for p in products
            if params["search"] in (p["name"] + "\0" + p["description"]).lower()
            and params.get("category", p["category"]).lower() == p["category"].lower()
        )
        pages = []
        url: str | None = "/products?" + urlencode({**params, "limit": 30})
        while url is not None:
            response = api.get(url, headers=h)
            assert response.headers["x-total-count"] == str(len(expected))
            pages.append(ids(response))
            url = parse_links(response.headers.get("link")).get("next")
        assert [i for page in pages for i in page] == expected, params
        assert len(pages) == max(1, -(-len(expected) // 30))
        middle = api.get("/products?" + urlencode({**params, "limit": 7, "offset": 40}), headers=h)
        assert ids(middle) == expected[40:47]
        if len(expected) > 30:
            first = api.get("/products?" + urlencode({**params, "limit": 30}), headers=h)
            second = api.get(parse_links(first.headers["link"])["next"], headers=h)
            prev = parse_links(second.headers["link"])["prev"]
            assert ids(api.get(prev, headers=h)) == expected[:30]


@pytest.mark.usefixtures("catalogue")
def test_product_cursors(api: TestClient, h: Headers, subtests: pytest.Subtests) -> None:
    first = api.get("/products?limit=3", headers=h)
    next_url = parse_links(first.headers["link"])["next"]
    assert parse_qs(urlsplit(next_url).query) == {"limit": ["3"], "after": ["prod_003"]}
    assert ids(api.get("/products?after=prod_003&limit=2", headers=h)) == ["prod_004", "prod_005"]
    assert ids(api.get("/products?before=prod_003", headers=h)) == ["prod_001", "prod_002"]
    after = ids(api.get("/products?after=prod_0035", headers=h))
    assert after == ["prod_004", "prod_005", "prod_006", "prod_007"]
    for parameter in ("after", "before"):
        for cursor in ["", "prod 1", "prod_1%", "x" * 65, "prod_\u00e9"]:
            with subtests.test(parameter=parameter, cursor=cursor):
                response = api.get("/products", headers=h, params={parameter: cursor})
                assert_error(response, 400, parameter)


@pytest.mark.usefixtures("catalogue")
def test_unicode_case_folding_of_indexed_terms(
    api: TestClient, h: Headers, backend: str, upsert: Callable[[list[dict[str, Any]]], None]
) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL's lower() folds as its locale says")
    upsert(
        [
            {
                "id": "prod_u1",
                "name": "ÉCLAIR AU CAFÉ",
                "description": "Pâtisserie.",
                "price": 2,
                "category": "Food",
            }
        ]
    )
    # Three characters or more: the FTS5 trigram index folds all of Unicode.
    assert ids(api.get("/products", headers=h, params={"search": "éclair"})) == ["prod_u1"]
    assert ids(api.get("/products", headers=h, params={"search": "PÂTISS"})) == ["prod_u1"]
    # Shorter: LIKE on lower(), as before the index; SQLite's lower() folds ASCII only, so
    # a non-ASCII capital in the text is found by neither case of the letter.
    assert ids(api.get("/products", headers=h, params={"search": "é"})) == []
    assert ids(api.get("/products", headers=h, params={"search": "É"})) == []
    assert ids(api.get("/products", headers=h, params={"search": "fé"})) == []
    assert ids(api.get("/products", headers=h, params={"search": "ât"})) == ["prod_u1"]


def test_a_search_past_its_budget_is_a_422_and_the_server_serves_on(
    api: TestClient,
    h: Headers,
    settings: Settings,
    upsert: Callable[[list[dict[str, Any]]], None],
) -> None:
    """A one-letter term reads every product: 5,000 take a few milliseconds, far past a
    budget of 1 ms, and well within the default one (250 ms)."""
    products = [
        {
            "id": f"prod_{i:05d}",
            "name": f"Item {i} {'bolt' if i % 3 else 'nut'}",
            "description": "steel" if i % 2 else "brass",
            "price": 1,
            "category": "Hardware",
        }
        for i in range(5000)
    ]
    upsert(products)
    matches = sum("e" in (p["name"] + p["description"]).lower() for p in products)
    finished = api.get("/products", headers=h, params={"search": "e", "limit": 5})
    assert ids(finished) == ["prod_00000", "prod_00001", "prod_00002", "prod_00003", "prod_00004"]
    assert finished.headers["x-total-count"] == str(matches)

    tight = create_app(settings.model_copy(update={"search_budget": 0.001}))
    with tight.test_client() as client:
        # Terms not counted yet ("e" was: its exact count is remembered, and only its page
        # would be read now; see persistence.products.Remembered).
        for params in [{"search": "o"}, {"search": "st", "category": "hardware"}]:
            refused = client.get("/products", headers=h, params=params)
            body = assert_error(refused, 422, "1 ms", "longer search term", "category")
            assert body["error"] == "Search too broad"
            assert "x-total-count" not in refused.headers
            assert "x-ratelimit-remaining" in refused.headers
        # The same server answers what needs no search at once, and the next search too.
        plain = client.get("/products", headers=h, params={"limit": 2})
        assert ids(plain) == ["prod_00000", "prod_00001"]
        assert plain.headers["x-total-count"] == "5000"
        assert client.get("/users", headers=h).status_code == 200
        assert_error(client.get("/products", headers=h, params={"search": "l"}), 422)


#: A search's statement that would run for a minute unless its budget stops it.
ENDLESS = {
    "sqlite": (
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 1000000000) "
        "SELECT count(*) FROM r"
    ),
    "postgresql": "SELECT pg_sleep(60)",
}


def test_other_requests_are_served_while_a_search_runs_to_its_budget(
    h: Headers,
    settings: Settings,
    backend: str,
    catalogue: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A search stands in for one that reads millions of rows; while it runs, the same
    server answers other requests, and then the search is a 422, not a 500.

    Told by order, not by the clock: the other answers all come back while the search is
    still in flight (the budget leaves a loaded machine a second for five small reads)."""
    budget = 1.0

    list_products = persistence.products.list_products

    def endless_search(connection: Connection, **filters: Any) -> Any:
        if filters.get("search") is None:
            return list_products(connection, **filters)
        connection.execute(text(ENDLESS[backend]))
        raise AssertionError("the budget should have stopped the search")

    monkeypatch.setattr(persistence.products, "list_products", endless_search)
    app = create_app(settings.model_copy(update={"search_budget": budget}))
    with app.test_client() as client, ThreadPoolExecutor(1) as pool:
        client.get("/products", headers=h)  # connections opened before the search starts
        search = pool.submit(client.get, "/products", headers=h, params={"search": "pro"})
        time.sleep(0.05)
        served = [client.get("/products", headers=h, params={"limit": 1}) for _ in range(5)]
        assert not search.done()  # the five were answered while the search ran
        assert [ids(r) for r in served] == [["prod_001"]] * 5
        refused = search.result(timeout=10)
    assert_error(refused, 422, "1000 ms", "longer search term")
    assert refused.json()["error"] == "Search too broad"
