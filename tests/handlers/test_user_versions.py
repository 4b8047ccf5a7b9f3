"""ETag, If-None-Match and If-Match on /users/{id}: a strong tag per version, 304s, and
writes that go ahead only over the version the client read, even against concurrent writers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from storefront.app import create_app
from tests.helpers import assert_error, db_rows

Headers = dict[str, str]
#: A strong entity tag (RFC 9110 §8.8.3): no W/ prefix.
STRONG = re.compile(r'^"[!#-~]+"$')
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
}
#: Writers in flight at once in the concurrency tests.
WRITERS = 20


@pytest.fixture
def h(auth: Callable[..., Headers]) -> Headers:
    return auth("read write")


def create(api: TestClient, h: Headers, email: str = "ada@example.com") -> tuple[str, str]:
    body = {"name": "Ada", "email": email, "password": "analytical1"}
    response = api.post("/users", headers=h, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"], response.headers["etag"]


def test_the_etag_is_strong_and_changes_on_every_update(api: TestClient, h: Headers) -> None:
    user_id, created_tag = create(api, h)
    got = api.get(f"/users/{user_id}", headers=h)
    assert got.status_code == 200
    assert STRONG.match(got.headers["etag"]), got.headers["etag"]
    assert got.headers["etag"] == created_tag

    seen = [created_tag]
    for name in ("B", "C", "C"):  # quick succession, within one second; even with no change
        put = api.put(f"/users/{user_id}", headers=h, json={"name": name})
        assert put.status_code == 200
        assert STRONG.match(put.headers["etag"])
        assert put.headers["etag"] not in seen
        seen.append(put.headers["etag"])
        assert api.get(f"/users/{user_id}", headers=h).headers["etag"] == put.headers["etag"]
    # updated_at has a second's resolution: it could not have told these versions apart.
    assert len(seen) == 4


def test_if_none_match_with_the_current_tag_is_a_304_without_a_body(
    api: TestClient, h: Headers, subtests: pytest.Subtests
) -> None:
    user_id, tag = create(api, h)
    full = api.get(f"/users/{user_id}", headers=h)
    for header in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        with subtests.test(if_none_match=header):
            response = api.get(f"/users/{user_id}", headers={**h, "If-None-Match": header})
            assert response.status_code == 304
            assert response.content == b""
            assert response.headers["etag"] == tag
            # A 304 is charged, and says so, like the 200 it stands for.
            assert set(response.headers) & set(full.headers) >= RATE_LIMIT_HEADERS
            assert response.headers["x-ratelimit-limit"] == full.headers["x-ratelimit-limit"]
            spent = int(full.headers["x-ratelimit-remaining"]) - int(
                response.headers["x-ratelimit-remaining"]
            )
            assert spent >= 1
    with subtests.test("a tag of an older version gets the user"):
        api.put(f"/users/{user_id}", headers=h, json={"name": "Newer"})
        response = api.get(f"/users/{user_id}", headers={**h, "If-None-Match": tag})
        assert response.status_code == 200
        assert response.json()["name"] == "Newer"
        assert response.headers["etag"] != tag


def test_writes_over_another_version_are_412s_that_change_nothing(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    user_id, first = create(api, h)
    current = api.put(f"/users/{user_id}", headers=h, json={"name": "Second"}).headers["etag"]
    for header in (first, f"W/{current}", '"not-a-version"', "", ", ,"):
        for method, kwargs in (("PUT", {"json": {"name": "Lost"}}), ("DELETE", {})):
            with subtests.test(method=method, if_match=header):
                response = api.request(
                    method, f"/users/{user_id}", headers={**h, "If-Match": header}, **kwargs
                )
                assert_error(response, 412, "If-Match")
    after = api.get(f"/users/{user_id}", headers=h)
    assert after.json()["name"] == "Second"
    assert after.headers["etag"] == current

    with subtests.test("the current tag, or one of a list, writes"):
        put = api.put(
            f"/users/{user_id}",
            headers={**h, "If-Match": f"{first}, {current}"},
            json={"name": "3"},
        )
        assert put.status_code == 200, put.text
        assert put.json()["name"] == "3"
    with subtests.test("* writes over whatever version exists"):
        put = api.put(f"/users/{user_id}", headers={**h, "If-Match": "*"}, json={"name": "4"})
        assert put.status_code == 200, put.text
        deleted = api.delete(f"/users/{user_id}", headers={**h, "If-Match": put.headers["etag"]})
        assert deleted.status_code == 204
    with subtests.test("a user that is gone is a 404, whatever If-Match says"):
        for header in ("*", current):
            response = api.delete(f"/users/{user_id}", headers={**h, "If-Match": header})
            assert response.status_code == 404
    assert db_rows(settings, "SELECT count(*) FROM users") == [(0,)]


def test_concurrent_writers_over_one_version_let_exactly_one_through(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    # All read version 1; each writes "if still version 1". Were the check and the write two
    # transactions, several would pass the check before the first write and all succeed.
    user_id, tag = create(api, h)

    def rename(i: int) -> tuple[int, Any]:
        response = api.put(
            f"/users/{user_id}", headers={**h, "If-Match": tag}, json={"name": f"Writer {i}"}
        )
        if response.status_code != 200:
            assert_error(response, 412)
        return response.status_code, response.json().get("name")

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(rename, range(WRITERS)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [412] * (WRITERS - 1)
    [winner] = [name for status, name in results if status == 200]
    assert api.get(f"/users/{user_id}", headers=h).json()["name"] == winner
    assert db_rows(settings, "SELECT version FROM users") == [(2,)]


def test_a_conditional_delete_racing_conditional_updates_wins_or_loses_whole(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    user_id, tag = create(api, h)

    def write(i: int) -> int:
        conditional = {**h, "If-Match": tag}
        if i == WRITERS // 2:
            return api.delete(f"/users/{user_id}", headers=conditional).status_code
        url = f"/users/{user_id}"
        return api.put(url, headers=conditional, json={"name": f"W{i}"}).status_code

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        statuses = list(pool.map(write, range(WRITERS)))
    # Exactly one writer saw version 1; after it, the others find version 2 (412) or no
    # user at all (404).
    assert sum(1 for s in statuses if s in {200, 204}) == 1
    assert set(statuses) <= {200, 204, 404, 412}
    if 204 in statuses:
        assert db_rows(settings, "SELECT count(*) FROM users") == [(0,)]
    else:
        assert db_rows(settings, "SELECT version FROM users") == [(2,)]


def test_if_match_can_be_required(
    settings: Settings, h: Headers, subtests: pytest.Subtests
) -> None:
    strict = settings.model_copy(update={"require_if_match": True})
    with create_app(strict).test_client() as api:
        user_id, tag = create(api, h)
        with subtests.test("PUT without If-Match"):
            response = api.put(f"/users/{user_id}", headers=h, json={"name": "X"})
            assert_error(response, 428, "If-Match")
        with subtests.test("DELETE without If-Match"):
            assert_error(api.delete(f"/users/{user_id}", headers=h), 428, "If-Match")
        assert api.get(f"/users/{user_id}", headers=h).json()["name"] == "Ada"
        with subtests.test("with it"):
            put = api.put(f"/users/{user_id}", headers={**h, "If-Match": tag}, json={"name": "Y"})
            assert put.status_code == 200
            deleted = api.delete(f"/users/{user_id}", headers={**h, "If-Match": "*"})
            assert deleted.status_code == 204


def test_if_match_sent_as_several_fields_is_one_list(api: TestClient, h: Headers) -> None:
    user_id, tag = create(api, h)
    # Two header lines are one list (RFC 9110 §5.3): the second names the current version.
    response = api.put(
        f"/users/{user_id}",
        headers=[*h.items(), ("If-Match", '"41"'), ("If-Match", tag)],
        json={"name": "Listed"},
    )
    assert response.status_code == 200, response.text
