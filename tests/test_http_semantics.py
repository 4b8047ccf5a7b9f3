"""HTTP semantics a client sees on the wire, against a real ``storefront serve``: the
challenge of a failed client authentication (RFC 6749 §5.2), conditional requests read
strictly (RFC 9110 §13), and an Idempotency-Key replay once its user is deleted.

On SQLite and PostgreSQL; the module's tests share one server per backend (starting it is
most of the cost), each with users of its own. The server validates its own responses against
openapi.yaml, so every header and status here is also one the spec declares.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.helpers import assert_error, db_rows
from tests.servers import Server, clean_env, serving, storefront_json

BASIC_CHALLENGE = 'Basic realm="storefront", charset="UTF-8"'


@pytest.fixture(scope="module")
def server(
    module_database_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("semantics")
    env = clean_env(
        **module_database_env,
        STOREFRONT_KEY_DIR=str(directory / "keys"),
        STOREFRONT_VALIDATE_RESPONSES="true",
        # The challenges' tests fail to authenticate on purpose, many times.
        STOREFRONT_AUTH_FAILURE_LIMIT="10000/minute",
    )
    with serving(directory, env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> dict[str, str]:
    return storefront_json(server.env, "clients", "create", "--name", "semantics")


@pytest.fixture
def api(server: Server, client: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client of the server, authorized with a fresh read+write token."""
    form = {"grant_type": "client_credentials", **client}
    token = httpx.post(f"{server.base}/auth/token", data=form).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as http:
        yield http


def settings_of(server: Server) -> Settings:
    """The server's database settings, to look at what it stored."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=server.env["STOREFRONT_DATABASE_URL"],
    )


def new_user(api: httpx.Client, **headers: str) -> httpx.Response:
    unique = uuid.uuid4().hex[:12]
    body = {"name": f"Ada {unique}", "email": f"ada.{unique}@example.com", "password": "pw-123456"}
    response = api.post("/users", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response


# RFC 6749 §5.2: a client that used the Authorization header gets a challenge.


ENDPOINTS = {
    "/auth/introspect": "token",
    "/auth/revoke": "token",
    "/auth/token": "grant_type",
}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_bearer_token_alone_is_invalid_client_with_a_basic_challenge(
    server: Server, client: dict[str, str], api: httpx.Client, path: str
) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")
    form = {ENDPOINTS[path]: token if ENDPOINTS[path] == "token" else "client_credentials"}

    response = httpx.post(f"{server.base}{path}", data=form, headers=api.headers)

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["error_description"] == body["message"]
    assert "HTTP Basic" in body["message"]
    assert response.headers["cache-control"] == "no-store"
    # Refused, not carried out: the token still works.
    assert api.get("/users", params={"limit": 1}).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_the_token_endpoints_other_challenges_stay_as_they_were(
    server: Server, client: dict[str, str], api: httpx.Client, path: str
) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")
    form = {ENDPOINTS[path]: token if ENDPOINTS[path] == "token" else "client_credentials"}
    wrong = (client["client_id"], "not-the-secret")

    basic = httpx.post(f"{server.base}{path}", data=form, auth=wrong)
    in_form = httpx.post(
        f"{server.base}{path}",
        data={**form, "client_id": wrong[0], "client_secret": wrong[1]},
    )
    right = httpx.post(f"{server.base}{path}", data=form, auth=tuple(client.values()))

    assert (basic.status_code, basic.json()["error"]) == (401, "invalid_client")
    assert basic.headers["www-authenticate"] == BASIC_CHALLENGE
    # Form credentials never draw a challenge: a browser would show a login dialog.
    assert (in_form.status_code, in_form.json()["error"]) == (401, "invalid_client")
    assert "www-authenticate" not in in_form.headers
    assert right.status_code == 200, right.text
    assert "www-authenticate" not in right.headers


# RFC 9110 §13: conditional requests, strictly.

#: Fields that are not `*` or a list of entity tags; N stands for the user's current version.
MALFORMED = [
    'w/"N"',  # the weak prefix is a capital W
    'W/ "N"',  # nothing between W/ and the quote
    'x"N"x',
    'garbage "N" garbage',
    '"N""N"',  # two tags need a comma
    '"N"x',
    '*, "N"',  # * stands alone
    "N",  # unquoted
]


def _field(template: str, version: str) -> str:
    return template.replace("N", version)


def _state(api: httpx.Client, user_id: str) -> tuple[int, str | None, Any]:
    response = api.get(f"/users/{user_id}")
    return response.status_code, response.headers.get("etag"), response.json()


def test_a_malformed_if_match_is_a_400_naming_it_and_nothing_is_written(
    api: httpx.Client, subtests: pytest.Subtests
) -> None:
    created = new_user(api)
    user_id, version = created.json()["id"], created.headers["etag"].strip('"')
    before = _state(api, user_id)
    for template in MALFORMED:
        field = _field(template, version)
        for method, options in (("PUT", {"json": {"name": "Lost update"}}), ("DELETE", {})):
            with subtests.test(method=method, if_match=field):
                response = api.request(
                    method, f"/users/{user_id}", headers={"If-Match": field}, **options
                )
                body = assert_error(response, 400, "'If-Match'")
                assert body["error"] == "Bad Request"
                assert "entity tags" in body["message"]
    assert _state(api, user_id) == before


def test_a_weak_tag_never_matches_if_match(api: httpx.Client) -> None:
    created = new_user(api)
    user_id, tag = created.json()["id"], created.headers["etag"]
    before = _state(api, user_id)

    for method, options in (("PUT", {"json": {"name": "Lost update"}}), ("DELETE", {})):
        response = api.request(
            method, f"/users/{user_id}", headers={"If-Match": f"W/{tag}"}, **options
        )
        assert_error(response, 412, "If-Match")
    assert _state(api, user_id) == before
    # A list with the strong tag among empty elements and a weak one writes.
    written = api.put(
        f"/users/{user_id}", headers={"If-Match": f", W/{tag},{tag} ,,"}, json={"name": "Ada B"}
    )
    assert written.status_code == 200, written.text
    assert written.json()["name"] == "Ada B"


def test_a_malformed_if_none_match_is_a_400_not_a_304(api: httpx.Client) -> None:
    created = new_user(api)
    user_id, version = created.json()["id"], created.headers["etag"].strip('"')

    for template in MALFORMED:
        response = api.get(
            f"/users/{user_id}", headers={"If-None-Match": _field(template, version)}
        )
        assert_error(response, 400, "'If-None-Match'")
    # The well-formed ones still work: weakly compared, a 304 without a body.
    for field in (f'"{version}"', f'W/"{version}"', f'"0", "{version}"', "*"):
        response = api.get(f"/users/{user_id}", headers={"If-None-Match": field})
        assert (response.status_code, response.content) == (304, b"")


def test_if_none_match_on_a_write_of_an_existing_user_is_a_412(api: httpx.Client) -> None:
    created = new_user(api)
    user_id, tag = created.json()["id"], created.headers["etag"]
    before = _state(api, user_id)

    for field, words in (("*", "If-None-Match: *"), (tag, "If-None-Match names")):
        for method, options in (("PUT", {"json": {"name": "Lost update"}}), ("DELETE", {})):
            response = api.request(
                method, f"/users/{user_id}", headers={"If-None-Match": field}, **options
            )
            body = assert_error(response, 412, words)
            assert body["error"] == "Precondition Failed"
    assert _state(api, user_id) == before
    # Another version than the current one: the write goes ahead.
    written = api.put(f"/users/{user_id}", headers={"If-None-Match": '"0"'}, json={"name": "B"})
    assert (written.status_code, written.json()["name"]) == (200, "B")


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def test_if_unmodified_since_before_the_last_change_is_a_412(api: httpx.Client) -> None:
    user_id = new_user(api).json()["id"]
    read = api.get(f"/users/{user_id}")
    read_at = read.headers["date"]  # when the client read it, as the server tells
    time.sleep(1.1)  # HTTP-dates have whole seconds: the change falls in a later one
    changed = api.put(f"/users/{user_id}", json={"name": "Changed"})
    assert changed.status_code == 200
    before = _state(api, user_id)

    for method, options in (("PUT", {"json": {"name": "Lost update"}}), ("DELETE", {})):
        response = api.request(
            method, f"/users/{user_id}", headers={"If-Unmodified-Since": read_at}, **options
        )
        body = assert_error(response, 412, "If-Unmodified-Since")
        assert body["error"] == "Precondition Failed"
    # The obsolete forms are HTTP-dates too (a recipient must read all three).
    for old in ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        response = api.put(
            f"/users/{user_id}", headers={"If-Unmodified-Since": old}, json={"name": "Lost"}
        )
        assert_error(response, 412, "If-Unmodified-Since")
    assert _state(api, user_id) == before

    # §13.1.4: ignored beside If-Match, and when it is not an HTTP-date.
    response = changed
    for headers in (
        {"If-Unmodified-Since": read_at, "If-Match": changed.headers["etag"]},
        {"If-Unmodified-Since": "yesterday"},
        {"If-Unmodified-Since": f"{read_at}, {read_at}"},  # a list of dates is not a date
        {},  # the second of the last change itself (its updated_at): not after it
        {"If-Unmodified-Since": http_date(datetime.now(UTC) + timedelta(seconds=2))},
    ):
        last_change = datetime.fromisoformat(response.json()["updated_at"])
        headers = headers or {"If-Unmodified-Since": http_date(last_change)}
        response = api.put(f"/users/{user_id}", headers=headers, json={"name": "Written"})
        assert response.status_code == 200, (headers, response.text)
    assert api.get(f"/users/{user_id}").json()["name"] == "Written"


# Personal data that was deleted is never served again, not even as a replay.


def test_a_replay_after_the_user_was_deleted_is_a_410_without_their_data(
    server: Server, api: httpx.Client
) -> None:
    key = str(uuid.uuid4())
    first = new_user(api, **{"Idempotency-Key": key})
    user = first.json()
    body = {"name": user["name"], "email": user["email"], "password": "pw-123456"}
    replay = api.post("/users", json=body, headers={"Idempotency-Key": key})
    assert (replay.status_code, replay.json()) == (201, user)  # replayed while the user exists

    assert api.delete(f"/users/{user['id']}").status_code == 204
    again = api.post("/users", json=body, headers={"Idempotency-Key": key})

    answer = assert_error(again, 410, "Idempotency-Key", "deleted")
    assert answer["error"] == "Resource deleted"
    assert again.headers["idempotent-replayed"] == "true"
    shown = again.text + "".join(f"{k}: {v}" for k, v in again.headers.items())
    for value in (user["id"], user["name"], user["email"]):
        assert value not in shown
    # Not carried out again: no user has that email.
    assert api.get(f"/users/{user['id']}").status_code == 404
    emails = db_rows(settings_of(server), "SELECT email FROM users")
    assert (user["email"],) not in emails
    # And the database no longer keeps the deleted person's name or email for the key.
    stored = db_rows(
        settings_of(server),
        f"SELECT status, headers, body FROM idempotency_keys WHERE key = '{key}'",  # noqa: S608
    )
    assert stored == [(410, None, None)]
    # The same key with another body is still a 422: the key was used.
    other = api.post("/users", json={**body, "name": "Other"}, headers={"Idempotency-Key": key})
    assert_error(other, 422)


def test_a_replay_of_another_users_create_is_unaffected_by_a_delete(api: httpx.Client) -> None:
    kept_key, gone_key = str(uuid.uuid4()), str(uuid.uuid4())
    kept = new_user(api, **{"Idempotency-Key": kept_key}).json()
    gone = new_user(api, **{"Idempotency-Key": gone_key}).json()
    assert api.delete(f"/users/{gone['id']}").status_code == 204

    body = {"name": kept["name"], "email": kept["email"], "password": "pw-123456"}
    replay = api.post("/users", json=body, headers={"Idempotency-Key": kept_key})
    assert (replay.status_code, replay.json()) == (201, kept)
