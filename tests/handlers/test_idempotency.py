"""Idempotency-Key on POST /users: replays, conflicts, scope, and what is kept.

Building an app costs a good part of a second, so related cases share one test (and one app)
as subtests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from httpx2 import Response
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from core.crypto import PasswordHashing
from core.settings import Settings
from persistence.idempotency import PURGE_BATCH
from persistence.models import IdempotencyKey, utcnow
from storefront import admin
from tests.helpers import all_cells, assert_error, db_rows

Headers = dict[str, str]
PASSWORD = "correct horse battery"
BODY = {"name": "Ada", "email": "ada@example.com", "password": PASSWORD}
KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324"


@pytest.fixture
def h(auth: Callable[..., Headers]) -> Headers:
    return auth("read write")


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords hashed, in order, by every app of the test."""
    hashed: list[str] = []
    original = PasswordHashing.hash

    async def counting(self: PasswordHashing, password: str) -> str:
        hashed.append(password)
        return await original(self, password)

    monkeypatch.setattr(PasswordHashing, "hash", counting)
    return hashed


def post(api: TestClient, h: Headers, key: str | None, body: dict[str, Any]) -> Response:
    headers = h if key is None else {**h, "Idempotency-Key": key}
    return api.post("/users", headers=headers, json=body)


def user_count(settings: Settings) -> int:
    [(count,)] = db_rows(settings, "SELECT count(*) FROM users")
    return int(count)


def test_a_retry_replays_the_first_response_and_hashes_nothing(
    api: TestClient, h: Headers, settings: Settings, hashes: list[str], subtests: pytest.Subtests
) -> None:
    first = post(api, h, KEY, BODY)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert hashes == [PASSWORD]

    reordered = dict(reversed(BODY.items()))  # the same JSON object, keys in another order
    for form, key, body in (
        ("the same request", KEY, BODY),
        ("the key as a structured-field string", f'"{KEY}"', BODY),
        ("the body's keys in another order", KEY, reordered),
    ):
        with subtests.test(form):
            retry = post(api, h, key, body)
            assert retry.status_code == 201, retry.text
            assert retry.headers["idempotent-replayed"] == "true"
            assert retry.json() == first.json()
            assert retry.headers["location"] == first.headers["location"]
            assert retry.headers["etag"] == first.headers["etag"]
    assert hashes == [PASSWORD]  # no retry hashed the password again
    assert user_count(settings) == 1

    with subtests.test("without a key, the same body is a new request"):
        assert_error(post(api, h, None, BODY), 409)


def test_the_same_key_with_another_body_is_a_422(
    api: TestClient, h: Headers, settings: Settings, hashes: list[str]
) -> None:
    assert post(api, h, KEY, BODY).status_code == 201
    other = {**BODY, "email": "grace@example.com"}
    assert_error(post(api, h, KEY, other), 422, "Idempotency-Key", "different request body")
    assert_error(post(api, h, KEY, {**BODY, "password": "another password"}), 422)
    assert user_count(settings) == 1
    assert len(hashes) == 1


def test_keys_belong_to_the_calling_client(
    api: TestClient,
    h: Headers,
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[[str], admin.NewApiKey],
    token_for: Callable[..., str],
) -> None:
    mine = make_client()
    first = post(api, {"Authorization": f"Bearer {token_for(mine)}"}, KEY, BODY)
    assert first.status_code == 201

    # An API key of the same client shares its keys ...
    api_key = {"X-API-Key": make_api_key(mine.client_id).api_key}
    replay = post(api, api_key, KEY, BODY)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()

    # ... another client's same key is another key: its request runs (and meets the email).
    other = post(api, h, KEY, BODY)
    assert_error(other, 409, "email")
    assert "idempotent-replayed" not in other.headers
    created = post(api, h, KEY, {**BODY, "email": "grace@example.com"})
    assert created.status_code == 201
    assert "idempotent-replayed" not in created.headers
    assert user_count(settings) == 2


@pytest.mark.stock_stack
def test_malformed_keys_are_400s(
    api: TestClient, h: Headers, settings: Settings, subtests: pytest.Subtests
) -> None:
    for key in ("", '""', '"', "a b", "k" * 256, '"' + "k" * 256 + '"', '"unclosed'):
        with subtests.test(key=key[:20]):
            assert_error(post(api, h, key, BODY), 400, "Idempotency-Key", "visible ASCII")
    assert user_count(settings) == 0
    for i, key in enumerate(("k" * 255, '"' + "q" * 255 + '"', "!~", 'a"b')):
        with subtests.test("the longest and oddest keys are fine", key=key[:20]):
            assert post(api, h, key, {**BODY, "email": f"u{i}@example.com"}).status_code == 201


def test_a_failed_request_is_not_remembered(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    taken = post(api, h, None, BODY).json()
    # The email is taken: the keyed request fails, and its retry runs again (and fails again).
    for _ in range(2):
        failed = post(api, h, KEY, BODY)
        assert_error(failed, 409, "email")
        assert "idempotent-replayed" not in failed.headers
    assert db_rows(settings, "SELECT count(*) FROM idempotency_keys") == [(0,)]
    # Once the conflict is gone, the same key creates the user.
    assert api.delete(f"/users/{taken['id']}", headers=h).status_code == 204
    created = post(api, h, KEY, BODY)
    assert created.status_code == 201
    assert created.json()["id"] != taken["id"]


def test_the_stored_response_holds_no_password(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    created = post(api, h, KEY, BODY)
    [(status, headers, body, fingerprint)] = db_rows(
        settings, "SELECT status, headers, body, fingerprint FROM idempotency_keys"
    )
    assert status == 201
    assert json.loads(body) == created.json()
    assert json.loads(headers) == {
        "Location": created.headers["location"],
        "ETag": created.headers["etag"],
        # A replay carries a user too: never stored by a cache either.
        "Cache-Control": "no-store",
        "Vary": "Authorization, X-API-Key",
    }
    assert len(fingerprint) == 64  # an HMAC-SHA256, hex
    assert not any(PASSWORD in cell for cell in all_cells(settings))


@pytest.mark.stock_stack
def test_routes_before_it_leave_the_stored_headers_alone(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    # GET /rate_limit and the token route answer with shared header constants; Connexion adds
    # Content-Type to the dict a handler returns, in place (the stock stack does). Returned as
    # they were, they once carried Content-Type into every stored response built from them
    # afterwards.
    for _ in range(2):
        assert api.get("/rate_limit", headers=h).status_code == 200
    created = post(api, h, KEY, BODY)
    [(headers,)] = db_rows(settings, "SELECT headers FROM idempotency_keys")
    assert set(json.loads(headers)) == {"Location", "ETag", "Cache-Control", "Vary"}
    replayed = post(api, h, KEY, BODY)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.headers["content-type"] == "application/json"
    assert replayed.json() == created.json()


def test_a_retry_while_the_first_runs_is_a_409(
    api: TestClient,
    h: Headers,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashing, finish = threading.Event(), threading.Event()
    original = PasswordHashing.hash

    async def slow(self: PasswordHashing, password: str) -> str:
        hashing.set()
        await anyio.to_thread.run_sync(finish.wait, 10)  # the first request, held in its work
        return await original(self, password)

    monkeypatch.setattr(PasswordHashing, "hash", slow)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(post, api, h, KEY, BODY)
        assert hashing.wait(10)
        try:
            busy = post(api, h, KEY, BODY)
            assert_error(busy, 409, "still being processed")
            assert busy.headers["retry-after"] == "1"
            # A different body is refused as such, running or not.
            assert_error(post(api, h, KEY, {**BODY, "name": "Other"}), 422)
        finally:
            finish.set()
        assert first.result(10).status_code == 201
    assert post(api, h, KEY, BODY).headers["idempotent-replayed"] == "true"
    assert user_count(settings) == 1


def test_expired_keys_are_forgotten_and_purged_a_batch_at_a_time(
    api: TestClient, h: Headers, settings: Settings
) -> None:
    assert post(api, h, KEY, BODY).status_code == 201
    client_id = db_rows(settings, "SELECT client_id FROM idempotency_keys")[0][0]
    past = utcnow().replace(year=2020)

    def expire_and_add(session: Session) -> None:
        for row in session.query(IdempotencyKey):
            row.expires_at = past
        for i in range(PURGE_BATCH + 3):
            session.add(
                IdempotencyKey(
                    client_id=client_id,
                    operation="create_user",
                    key=f"old-{i}",
                    fingerprint="0" * 64,
                    status=201,
                    headers="{}",
                    body="{}",
                    created_at=past,
                    expires_at=past,
                )
            )

    admin.run(settings, expire_and_add)
    # The expired key is as good as new: another body under it is a new request, not a 422.
    again = post(api, h, KEY, {**BODY, "email": "grace@example.com"})
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    # A new key's insert purges one batch of the expired keys, and no more.
    fresh = post(api, h, "another-key", {**BODY, "email": "hopper@example.com"})
    assert fresh.status_code == 201
    expired = db_rows(settings, "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'old-%'")
    assert expired == [(3,)]
