"""/users: the seed's shapes, validation, paging, conflicts and the not-found bodies.

Building an app costs a good part of a second, so related cases share one test (and one app)
as subtests instead of being parametrized into tests of their own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx2 import Response
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from core.ids import new_id
from core.settings import Settings
from persistence.models import User
from storefront import admin
from storefront.app import create_app
from tests.helpers import assert_error, db_rows, parse_links

# A representative part of the HTTP suite also runs through PgBouncer (tests/conftest.py).
pytestmark = pytest.mark.pgbouncer

USER_ID = re.compile(r"^user_[A-Za-z0-9_-]{12,}$")
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
NOT_FOUND = {"error": "User not found", "message": "The specified user ID does not exist."}
PASSWORD = "correct horse battery"
USER_KEYS = {"id", "name", "email", "created_at"}

Headers = dict[str, str]
#: Requests in flight at once in the concurrency tests (the issue asks for 50).
CONCURRENCY = 50


@pytest.fixture
def h(auth: Callable[..., Headers]) -> Headers:
    return auth("read write")


def new_user(
    api: TestClient,
    h: Headers,
    *,
    name: str = "Alice Wonderland",
    email: str = "alice@example.com",
    password: str = PASSWORD,
) -> dict[str, Any]:
    body = {"name": name, "email": email, "password": password}
    response = api.post("/users", headers=h, json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def assert_no_secret(response: Response, password: str = PASSWORD) -> None:
    assert password not in response.text
    assert "argon2" not in response.text
    assert "password" not in response.text


def assert_user_shape(body: dict[str, Any], *, updated: bool = False) -> None:
    assert set(body) == (USER_KEYS | {"updated_at"} if updated else USER_KEYS)
    assert USER_ID.match(body["id"]), body["id"]
    assert isinstance(body["name"], str)
    assert isinstance(body["email"], str)
    assert RFC3339_Z.match(body["created_at"]), body["created_at"]
    if updated:
        assert RFC3339_Z.match(body["updated_at"]), body["updated_at"]
        assert parse_time(body["updated_at"]) >= parse_time(body["created_at"])


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def user_count(settings: Settings) -> int:
    [(count,)] = db_rows(settings, "SELECT count(*) FROM users")
    return int(count)


# --- create -------------------------------------------------------------------------------


def test_create_returns_the_seed_shape_and_a_location(api: TestClient, h: Headers) -> None:
    response = api.post(
        "/users",
        headers=h,
        json={"name": "Charlie Chaplin", "email": "charlie@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert_user_shape(body)
    assert body["name"] == "Charlie Chaplin"
    assert body["email"] == "charlie@example.com"
    assert_no_secret(response)

    location = response.headers["location"]
    assert location == "/users/" + body["id"]  # relative: no STOREFRONT_PUBLIC_URL is set
    fetched = api.get(location, headers=h)
    assert fetched.status_code == 200
    assert fetched.json() == body

    other = new_user(api, h, name="  Dora  ", email="dora@example.com")
    assert other["id"] != body["id"]
    assert other["name"] == "Dora"  # trimmed


@pytest.mark.stock_stack
def test_length_limits_are_inclusive(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    for i, (name, password) in enumerate([("n" * 100, "x" * 8), ("N", "y" * 128)]):
        with subtests.test(name=name, password=password):
            user = new_user(api, h, name=name, password=password, email=f"u{i}@example.com")
            assert user["name"] == name


def test_the_name_limit_applies_after_trimming(api: TestClient, h: Headers) -> None:
    # The contract: "name (1-100 chars after trimming)".
    assert new_user(api, h, name="  " + "m" * 100 + " ")["name"] == "m" * 100


def test_the_password_and_its_hash_are_never_returned(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    created = new_user(api, h)
    [(stored_hash,)] = db_rows(settings, "SELECT password_hash FROM users")
    for response in (
        api.get("/users", headers=h),
        api.get(f"/users/{created['id']}", headers=h),
        api.put(f"/users/{created['id']}", headers=h, json={"name": "Alicia"}),
        api.put(f"/users/{created['id']}", headers=h, json={"password": PASSWORD + "!"}),
    ):
        assert response.status_code == 200
        assert_no_secret(response)
        assert stored_hash not in response.text
        assert stored_hash.split("$")[-1] not in response.text


def test_duplicate_email_is_a_conflict_in_any_case(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    new_user(api, h, email="alice@example.com")
    for email in ("alice@example.com", "ALICE@example.com", "Alice@Example.COM"):
        with subtests.test(email=email):
            response = api.post(
                "/users", headers=h, json={"name": "Other", "email": email, "password": PASSWORD}
            )
            assert_error(response, 409)
    assert user_count(settings) == 1


LONG_EMAIL = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com"

BAD_CREATE_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"id": "user_chosenbyclient"}, "id"),
    ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),
    ({"admin": True}, "admin"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "\t\n"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": 42}, "name"),
    ({"name": None}, "name"),
    ({"email": "not-an-email"}, "email"),
    ({"email": "a@"}, "email"),
    ({"email": "a b@example.com"}, "email"),
    ({"email": LONG_EMAIL}, "email"),
    ({"email": ["a@example.com"]}, "email"),
    ({"password": "x" * 7}, "password"),
    ({"password": "y" * 129}, "password"),
    ({"password": ""}, "password"),
    ({"password": 123456789}, "password"),
]


@pytest.mark.stock_stack
def test_create_rejects_bad_fields(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    valid = {"name": "A", "email": "a@example.com", "password": PASSWORD}
    for change, field in BAD_CREATE_BODIES:
        with subtests.test(change=change):
            response = api.post("/users", headers=h, json={**valid, **change})
            assert_error(response, 400, field)
    for missing in ("name", "email", "password"):
        with subtests.test(missing=missing):
            body = {k: v for k, v in valid.items() if k != missing}
            assert_error(api.post("/users", headers=h, json=body), 400, missing)
    assert user_count(settings) == 0


@pytest.mark.stock_stack
def test_a_bad_password_is_not_echoed(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    body = {"name": "A", "email": "a@example.com"}
    for password in ("tooShrt", "L0ng" * 33, 87654321, None, True):
        with subtests.test(password=password):
            response = api.post("/users", headers=h, json={**body, "password": password})
            assert_error(response, 400, "password")
            assert str(password) not in response.json()["message"]
            assert repr(password) not in response.json()["message"]


@pytest.mark.stock_stack
def test_a_bad_password_is_not_logged(
    api: TestClient, h: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "tooShrt"
    with caplog.at_level(logging.DEBUG):
        response = api.post(
            "/users", headers=h, json={"name": "A", "email": "a@example.com", "password": secret}
        )
    assert response.status_code == 400
    logged = [record.getMessage() for record in caplog.records]
    assert all(secret not in line for line in logged), logged


@pytest.mark.stock_stack
def test_create_needs_a_json_object(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    fields = {"name": "A", "email": "a@example.com", "password": PASSWORD}
    json_type = {**h, "Content-Type": "application/json"}
    with subtests.test("text/plain"):
        plain = {**h, "Content-Type": "text/plain"}
        assert_error(api.post("/users", headers=plain, content=b'{"name": "A"}'), 415)
    with subtests.test("form"):
        assert_error(api.post("/users", headers=h, data=fields), 415)
    with subtests.test("malformed JSON"):
        assert_error(api.post("/users", headers=json_type, content=b'{"name": "A",'), 400)
    with subtests.test("not UTF-8"):
        assert_error(api.post("/users", headers=json_type, content=b'{"name": "\xff"}'), 400)
    with subtests.test("array"):
        assert_error(api.post("/users", headers=h, json=list(fields.values())), 400)
    with subtests.test("empty body"):
        assert_error(api.post("/users", headers=json_type, content=b""), 400)
    with subtests.test("null"):
        assert_error(api.post("/users", headers=json_type, content=b"null"), 400)
    assert user_count(settings) == 0


def test_concurrent_creates_with_one_email_make_one_user(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    # The TestClient's blocking portal runs each thread's request on the app's event loop,
    # so these ten requests are in flight at once.
    def create(i: int) -> int:
        response = api.post(
            "/users",
            headers=h,
            json={"name": f"Racer {i}", "email": "race@example.com", "password": PASSWORD},
        )
        if response.status_code != 201:
            assert_error(response, 409)
        return response.status_code

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        statuses = sorted(pool.map(create, range(CONCURRENCY)))
    assert statuses == [201] + [409] * (CONCURRENCY - 1)
    assert user_count(settings) == 1


# --- get, update, delete of one user ------------------------------------------------------


def test_unknown_user_is_the_seeds_404(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    new_user(api, h)
    for user_id in ("user_doesnotexist0", "nope", "user_", "user_ABCDEFGHIJKLMNOP"):
        for method, kwargs in (
            ("GET", {}),
            ("PUT", {"json": {"name": "X"}}),
            ("DELETE", {}),
        ):
            with subtests.test(method=method, user_id=user_id):
                response = api.request(method, f"/users/{user_id}", headers=h, **kwargs)
                assert response.status_code == 404, response.text
                assert response.headers["content-type"].startswith("application/json")
                assert response.json() == NOT_FOUND


def test_put_changes_only_the_given_fields(api: TestClient, h: Headers) -> None:
    created = new_user(api, h)
    assert "updated_at" not in created
    assert "updated_at" not in api.get(f"/users/{created['id']}", headers=h).json()
    assert "updated_at" not in api.get("/users", headers=h).json()[0]

    response = api.put(f"/users/{created['id']}", headers=h, json={"name": "Alice W."})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_user_shape(body, updated=True)
    assert body["id"] == created["id"]
    assert body["name"] == "Alice W."
    assert body["email"] == created["email"]
    assert body["created_at"] == created["created_at"]
    assert api.get(f"/users/{created['id']}", headers=h).json() == body
    assert api.get("/users", headers=h).json() == [body]

    response = api.put(f"/users/{created['id']}", headers=h, json={"email": "alice.w@example.com"})
    assert response.status_code == 200, response.text
    again = response.json()
    assert (again["name"], again["email"]) == ("Alice W.", "alice.w@example.com")
    assert again["created_at"] == created["created_at"]
    assert parse_time(again["updated_at"]) >= parse_time(body["updated_at"])

    # The seed's example: both fields at once.
    both = {"name": "Alice", "email": "alice@example.com"}
    response = api.put(f"/users/{created['id']}", headers=h, json=both)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in both} == both


def test_password_change_is_applied_but_not_visible(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    created = new_user(api, h)
    [(before,)] = db_rows(settings, "SELECT password_hash FROM users")
    new_password = "a brand new passphrase"
    response = api.put(f"/users/{created['id']}", headers=h, json={"password": new_password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_user_shape(body, updated=True)
    assert {k: body[k] for k in USER_KEYS} == created
    assert_no_secret(response, new_password)
    [(after,)] = db_rows(settings, "SELECT password_hash FROM users")
    assert after != before
    assert new_password not in after


def test_put_to_another_users_email_is_a_conflict(api: TestClient, h: Headers) -> None:
    alice = new_user(api, h, email="alice@example.com")
    bob = new_user(api, h, name="Bob", email="bob@example.com")
    for email in ("alice@example.com", "ALICE@EXAMPLE.COM"):
        response = api.put(f"/users/{bob['id']}", headers=h, json={"email": email})
        assert_error(response, 409)
    assert api.get(f"/users/{bob['id']}", headers=h).json() == bob

    # One's own address, in another case, is no conflict.
    response = api.put(f"/users/{alice['id']}", headers=h, json={"email": "Alice@example.com"})
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "Alice@example.com"


@pytest.mark.stock_stack
def test_put_rejects_bad_bodies(api: TestClient, h: Headers, subtests: pytest.Subtests) -> None:
    created = new_user(api, h)
    url = f"/users/{created['id']}"
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, ""),
        ({"id": "user_somethingelse1"}, "id"),
        ({"name": "Fine", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),
        ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),
        ({"name": "Fine", "role": "admin"}, "role"),
        ({"name": "   "}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": None}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"password": "x" * 7}, "password"),
        ({"password": "y" * 129}, "password"),
    ]
    for body, field in bad:
        with subtests.test(body=body):
            response = api.put(url, headers=h, json=body)
            assert_error(response, 400, field)
            if isinstance(body.get("password"), str):
                assert body["password"] not in response.text
    with subtests.test("text/plain"):
        plain = {**h, "Content-Type": "text/plain"}
        assert_error(api.put(url, headers=plain, content=b'{"name": "X"}'), 415)
    with subtests.test("malformed JSON"):
        json_type = {**h, "Content-Type": "application/json"}
        assert_error(api.put(url, headers=json_type, content=b'{"name": '), 400)
    assert api.get(url, headers=h).json() == created


def test_delete_then_gone(api: TestClient, h: Headers, settings: Settings) -> None:
    alice = new_user(api, h)
    bob = new_user(api, h, name="Bob", email="bob@example.com")
    response = api.delete(f"/users/{alice['id']}", headers=h)
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(f"/users/{alice['id']}", headers=h).json() == NOT_FOUND
    for method in ("DELETE", "PUT"):
        again = api.request(method, f"/users/{alice['id']}", headers=h, json={"name": "X"})
        assert again.status_code == 404
        assert again.json() == NOT_FOUND
    assert api.get(f"/users/{bob['id']}", headers=h).json() == bob
    assert api.get("/users", headers=h).json() == [bob]
    assert db_rows(settings, "SELECT id FROM users") == [(bob["id"],)]

    # The address is free again.
    assert new_user(api, h)["id"] != alice["id"]


# --- URLs ---------------------------------------------------------------------------------

FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


def test_urls_are_relative_whatever_host_the_client_sends(api: TestClient, h: Headers) -> None:
    forged = h | FORGED
    created = api.post(
        "/users",
        headers=forged,
        json={"name": "Ann", "email": "ann@example.com", "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/users/{created.json()['id']}"
    new_user(api, h, name="Bob", email="bob@example.com")

    first = api.get("/users?limit=1", headers=forged)
    links = parse_links(first.headers["link"])
    assert set(links) == {"next"}
    assert links["next"].startswith("/users?")
    assert parse_qs(urlsplit(links["next"]).query)["limit"] == ["1"]
    second = api.get(links["next"], headers=forged)
    links = parse_links(second.headers["link"])
    assert links["prev"].startswith("/users?")
    by_offset = api.get("/users?limit=1&offset=1", headers=forged)
    assert parse_links(by_offset.headers["link"])["prev"] == "/users?limit=1&offset=0"
    for response in (created, first, second, by_offset):
        assert "evil.example" not in str(response.headers)


def test_urls_are_absolute_under_the_configured_public_url(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    configured = settings.model_copy(update={"public_url": "https://api.example.com/shop"})
    with create_app(configured).test_client() as public:
        created = public.post(
            "/users",
            headers=h | FORGED,
            json={"name": "Ann", "email": "ann@example.com", "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        assert created.headers["location"] == f"https://api.example.com/shop/users/{user_id}"
        new_user(public, h, name="Bob", email="bob@example.com")
        new_user(public, h, name="Cy", email="cy@example.com")
        page = public.get("/users?limit=1&offset=1", headers=h | FORGED)
        links = parse_links(page.headers["link"])
        assert links["prev"] == "https://api.example.com/shop/users?limit=1&offset=0"
        assert links["next"].startswith("https://api.example.com/shop/users?limit=1&after=")


# --- caching ------------------------------------------------------------------------------


def assert_not_stored(response: Response) -> None:
    """No cache may keep it, and one that does must tell callers apart by credential."""
    assert response.headers["cache-control"] == "no-store"
    varied = {name.strip().lower() for name in response.headers["vary"].split(",")}
    assert {"authorization", "x-api-key"} <= varied


def test_responses_that_carry_a_user_are_never_stored(
    api: TestClient,
    h: Headers,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[[str], admin.NewApiKey],
    subtests: pytest.Subtests,
) -> None:
    created = api.post(
        "/users", headers=h, json={"name": "Ann", "email": "ann@example.com", "password": PASSWORD}
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    key = {"X-API-Key": make_api_key(make_client("read write").client_id).api_key}
    responses = {
        "POST /users": created,
        "GET /users": api.get("/users", headers=h),
        "GET /users (API key)": api.get("/users", headers=key),
        "GET /users/{id}": api.get(f"/users/{user_id}", headers=h),
        "GET /users/{id} (API key)": api.get(f"/users/{user_id}", headers=key),
        "PUT /users/{id}": api.put(f"/users/{user_id}", headers=h, json={"name": "Anne"}),
    }
    for name, response in responses.items():
        with subtests.test(name):
            assert response.status_code in {200, 201}, response.text
            assert "ann@example.com" in response.text  # it does carry the user
            assert_not_stored(response)


# --- list and paging ----------------------------------------------------------------------


def test_list_shape(api: TestClient, h: Headers) -> None:
    empty = api.get("/users", headers=h)
    assert empty.status_code == 200
    assert empty.json() == []
    assert empty.headers["x-total-count"] == "0"
    assert "link" not in empty.headers

    alice = new_user(api, h)
    bob = new_user(api, h, name="Bob The Builder", email="bob@example.com")
    response = api.get("/users", headers=h)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == [alice, bob]
    for user in body:
        assert_user_shape(user)
    assert response.headers["x-total-count"] == "2"
    assert parse_links(response.headers.get("link")) == {}
    assert_no_secret(response)


def test_following_next_links_yields_every_user_once(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    # Created a few at a time (hashing dominates); the expected order comes from the stored
    # timestamps, which have microseconds where the API's have seconds.
    with ThreadPoolExecutor(max_workers=4) as pool:
        users = list(
            pool.map(
                lambda i: new_user(api, h, name=f"User {i}", email=f"user{i}@example.com"),
                range(25),
            )
        )
    rows = db_rows(settings, "SELECT created_at, id FROM users")
    created = [user_id for _, user_id in sorted(rows)]
    assert set(created) == {user["id"] for user in users}

    default = api.get("/users", headers=h)
    assert [u["id"] for u in default.json()] == created[:20]  # the default limit is 20
    assert default.headers["x-total-count"] == "25"
    assert set(parse_links(default.headers.get("link"))) == {"next"}

    seen: list[str] = []
    url: str | None = "/users?limit=10"
    pages: list[str] = []
    while url is not None:
        assert len(pages) < 3, "more pages than 25 users at 10 a page need"
        response = api.get(url, headers=h)
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == "25"
        page = response.json()
        assert len(page) == (10 if len(pages) < 2 else 5)
        seen.extend(user["id"] for user in page)
        links = parse_links(response.headers.get("link"))
        if pages:
            assert [u["id"] for u in api.get(links["prev"], headers=h).json()] == [
                u["id"] for u in api.get(pages[-1], headers=h).json()
            ]
        else:
            assert "prev" not in links
        pages.append(url)
        url = links.get("next")
    assert len(pages) == 3
    assert seen == created  # every user exactly once, oldest first


def test_offset_and_limit(api: TestClient, h: Headers) -> None:
    ids = [new_user(api, h, email=f"u{i}@example.com")["id"] for i in range(5)]
    response = api.get("/users?limit=2&offset=1", headers=h)
    assert [u["id"] for u in response.json()] == ids[1:3]
    assert response.headers["x-total-count"] == "5"
    links = parse_links(response.headers.get("link"))
    assert set(links) == {"next", "prev"}
    assert [u["id"] for u in api.get(links["next"], headers=h).json()] == ids[3:5]
    assert [u["id"] for u in api.get(links["prev"], headers=h).json()] == ids[0:2]

    beyond = api.get("/users?offset=10", headers=h)
    assert beyond.status_code == 200
    assert beyond.json() == []
    assert beyond.headers["x-total-count"] == "5"
    assert "next" not in parse_links(beyond.headers.get("link"))

    last = api.get("/users?limit=100&offset=4", headers=h)
    assert [u["id"] for u in last.json()] == ids[4:]
    assert set(parse_links(last.headers.get("link"))) == {"prev"}

    one = api.get("/users?limit=1", headers=h)
    assert [u["id"] for u in one.json()] == ids[:1]


@pytest.mark.stock_stack
def test_bad_paging_parameters_are_400s(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    for query, parameter in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("page=2", "page"),
    ]:
        with subtests.test(query=query):
            assert_error(api.get(f"/users?{query}", headers=h), 400, parameter)
    for query in ("limit=1", "limit=100", "offset=0", "limit=20&offset=0"):
        with subtests.test(query=query):
            assert api.get(f"/users?{query}", headers=h).status_code == 200


# --- who may do what ----------------------------------------------------------------------


@pytest.mark.stock_stack
def test_read_scope_reads_but_does_not_write(
    api: TestClient, h: Headers, auth: Callable[..., Headers], settings: Settings
) -> None:
    alice = new_user(api, h)
    read = auth("read")
    assert api.get("/users", headers=read).status_code == 200
    assert api.get(f"/users/{alice['id']}", headers=read).status_code == 200
    # A duplicate email is not revealed to a client without write: 403, not 409.
    body = {"name": "X", "email": "alice@example.com", "password": PASSWORD}
    assert_error(api.post("/users", headers=read, json=body), 403)
    assert_error(api.put(f"/users/{alice['id']}", headers=read, json={"name": "X"}), 403)
    assert_error(api.delete(f"/users/{alice['id']}", headers=read), 403)
    assert api.get(f"/users/{alice['id']}", headers=h).json() == alice
    assert user_count(settings) == 1


@pytest.mark.stock_stack
def test_write_scope_alone_does_not_read(
    api: TestClient, h: Headers, auth: Callable[..., Headers]
) -> None:
    alice = new_user(api, h)
    write = auth("write")
    assert_error(api.get("/users", headers=write), 403)
    assert_error(api.get(f"/users/{alice['id']}", headers=write), 403)
    response = api.put(f"/users/{alice['id']}", headers=write, json={"name": "Alicia"})
    assert response.status_code == 200


@pytest.mark.stock_stack
def test_every_route_needs_credentials(api: TestClient, subtests: pytest.Subtests) -> None:
    body = {"name": "A", "email": "a@example.com", "password": PASSWORD}
    for method, path in [
        ("GET", "/users"),
        ("POST", "/users"),
        ("GET", "/users/user_abcdefghijkl"),
        ("PUT", "/users/user_abcdefghijkl"),
        ("DELETE", "/users/user_abcdefghijkl"),
    ]:
        with subtests.test(method=method, path=path):
            kwargs: dict[str, Any] = {"json": body} if method in {"POST", "PUT"} else {}
            response = api.request(method, path, **kwargs)
            assert_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_concurrent_updates_of_one_user_all_succeed_in_order(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    # SQLite writers queue on BEGIN IMMEDIATE; a deferred transaction would fail with
    # "database is locked" when two read-then-write transactions meet.
    user = new_user(api, h)

    def rename(i: int) -> tuple[int, str]:
        response = api.put(f"/users/{user['id']}", headers=h, json={"name": f"Name {i}"})
        return response.status_code, response.json().get("updated_at", "")

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        results = list(pool.map(rename, range(CONCURRENCY)))
    assert {status for status, _ in results} == {200}
    final = api.get(f"/users/{user['id']}", headers=h).json()
    assert final["name"] in {f"Name {i}" for i in range(CONCURRENCY)}
    assert final["updated_at"] == max(stamp for _, stamp in results)
    assert user_count(settings) == 1


# --- keyset paging ------------------------------------------------------------------------


def seed_users(settings: Settings, count: int, *, ties: int = 3) -> list[str]:
    """``count`` users straight into the database (no password hashing), ``ties`` to a
    timestamp so that ids decide their order; returns their ids in list order."""
    start = datetime(2020, 1, 1, tzinfo=UTC)

    def insert(session: Session) -> list[tuple[datetime, str]]:
        keys = []
        for i in range(count):
            created = start + timedelta(seconds=i // ties, microseconds=7)
            user = User(
                id=new_id("user_"),
                name=f"Seeded {i}",
                email=f"seeded{i}@example.com",
                password_hash="not-a-hash",
                created_at=created,
            )
            session.add(user)
            keys.append((created, user.id))
        session.flush()
        return keys

    return [user_id for _, user_id in sorted(admin.run(settings, insert))]


def follow(api: TestClient, h: Headers, url: str | None, rel: str) -> list[list[str]]:
    """The ids of every page from ``url`` on, following ``rel`` links."""
    pages: list[list[str]] = []
    while url is not None:
        assert len(pages) < 100, "a loop in the links"
        response = api.get(url, headers=h)
        assert response.status_code == 200, response.text
        pages.append([user["id"] for user in response.json()])
        url = parse_links(response.headers.get("link")).get(rel)
    return pages


def test_next_links_carry_a_cursor_and_visit_every_user_once(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    expected = seed_users(settings, 23)
    first = api.get("/users?limit=5", headers=h)
    assert first.headers["x-total-count"] == "23"
    next_url = parse_links(first.headers.get("link"))["next"]
    query = parse_qs(urlsplit(next_url).query)
    assert set(query) == {"limit", "after"}  # a cursor, not an offset
    assert query["limit"] == ["5"]

    pages = follow(api, h, "/users?limit=5", "next")
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [user_id for page in pages for user_id in page] == expected

    # Every cursor page keeps the total and links back with a `before` cursor.
    second = api.get(next_url, headers=h)
    assert second.headers["x-total-count"] == "23"
    links = parse_links(second.headers.get("link"))
    assert set(parse_qs(urlsplit(links["prev"]).query)) == {"limit", "before"}
    assert [u["id"] for u in api.get(links["prev"], headers=h).json()] == expected[:5]


def test_prev_links_walk_back_to_the_first_page(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    expected = seed_users(settings, 12)
    last = follow(api, h, "/users?limit=5", "next")[-1]
    assert last == expected[10:]
    # From the last page, prev links lead back page by page; the first page has no prev.
    response = api.get("/users?limit=5", headers=h)
    url: str | None = parse_links(response.headers.get("link"))["next"]
    while url is not None:
        page = api.get(url, headers=h)
        url = parse_links(page.headers.get("link")).get("next")
    backwards = follow(api, h, parse_links(page.headers["link"])["prev"], "prev")
    assert backwards == [expected[5:10], expected[0:5]]


def test_cursor_paging_is_stable_while_users_come_and_go(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    expected = seed_users(settings, 20)
    seen: list[str] = []
    url: str | None = "/users?limit=4"
    deleted: list[str] = []
    created: list[str] = []
    pages = 0
    while url is not None:
        response = api.get(url, headers=h)
        assert response.status_code == 200, response.text
        seen.extend(user["id"] for user in response.json())
        url = parse_links(response.headers.get("link")).get("next")
        pages += 1
        if pages == 2:
            # Users already seen go away, and a new one arrives (it sorts last): an offset
            # would now skip two users; the cursor skips none.
            for user_id in seen[:2]:
                assert api.delete(f"/users/{user_id}", headers=h).status_code == 204
                deleted.append(user_id)
            created.append(new_user(api, h, email="late@example.com")["id"])
    assert seen == expected + created
    assert len(set(seen)) == len(seen)
    assert deleted == expected[:2]


def test_cursor_windows_and_offsets(api: TestClient, h: Headers, settings: Settings) -> None:
    expected = seed_users(settings, 10)
    cursors = []
    url: str | None = "/users?limit=1"
    while url is not None:
        response = api.get(url, headers=h)
        url = parse_links(response.headers.get("link")).get("next")
        if url is not None:
            cursors.append(parse_qs(urlsplit(url).query)["after"][0])
    assert len(cursors) == 9  # the cursor of each user but the last, in order

    def ids(query: str) -> list[str]:
        response = api.get(f"/users?{query}", headers=h)
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == "10"
        return [user["id"] for user in response.json()]

    assert ids(f"after={cursors[2]}&limit=3") == expected[3:6]
    assert ids(f"after={cursors[2]}&offset=2&limit=3") == expected[5:8]
    assert ids(f"before={cursors[5]}&limit=3") == expected[2:5]
    assert ids(f"before={cursors[5]}&limit=3&offset=1") == expected[1:4]
    assert ids(f"before={cursors[1]}") == expected[:1]
    assert ids(f"after={cursors[2]}&before={cursors[6]}") == expected[3:6]
    assert ids(f"after={cursors[6]}&before={cursors[2]}") == []
    # Cursors beyond either end of time are clamped, not refused.
    assert ids("after=-999999999999999999.user_a") == expected
    assert ids("after=999999999999999999.user_a") == []
    assert ids("before=-999999999999999999.user_a") == []


def test_an_empty_cursor_page_links_nowhere(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    seed_users(settings, 3)
    response = api.get("/users?after=999999999999999999.user_a", headers=h)
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-total-count"] == "3"
    assert parse_links(response.headers.get("link")) == {}


def test_malformed_cursors_are_400s(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    seed_users(settings, 3)
    for parameter in ("after", "before"):
        for cursor in [
            "",
            "abc",
            "1",
            "1.",
            ".user_abc",
            "1.user abc",
            "1.user_abc\x00",
            "1x.user_abc",
            "1.5.user_abc",
            "1234567890123456789.user_abc",  # 19 digits
            "1." + "u" * 41,
            "eyJjcmVhdGVkIjogMX0",  # base64 of something
            "1.user_abc%",
        ]:
            with subtests.test(parameter=parameter, cursor=cursor):
                response = api.get("/users", headers=h, params={parameter: cursor})
                assert_error(response, 400, parameter)
                assert "Traceback" not in response.text
