"""Credential lifecycles over HTTP: API keys that expire, their last use, client secrets
rotated with a grace period."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import connexion
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from core.crypto import SecretDigester
from core.settings import Settings
from persistence import clients
from persistence.models import ApiKey, utcnow
from storefront import admin
from storefront.app import create_app
from tests.access.test_authn import assert_unauthorized, bearer
from tests.handlers.test_auth import assert_oauth_error, assert_token, basic, form

MakeClient = Callable[..., admin.NewClient]
MakeKey = Callable[..., admin.NewApiKey]


@pytest.fixture
def client(make_client: MakeClient) -> admin.NewClient:
    return make_client("read write")


def expire(settings: Settings, key_id: str) -> None:
    """Move the key's expiry into the past, as time passing would."""

    def work(session: Session) -> None:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

    admin.run(settings, work)


class Clock:
    """``utcnow`` for a module under test, moved on by hand."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The time as the security functions and the token endpoint see it."""
    now = Clock()
    monkeypatch.setattr("storefront.access.authn.utcnow", now)
    monkeypatch.setattr("storefront.access.oauth.utcnow", now)
    return now


# --- API keys that expire -----------------------------------------------------------------


def test_an_expired_key_is_401_with_a_bearer_challenge(
    api: TestClient, settings: Settings, make_api_key: MakeKey, client: admin.NewClient
) -> None:
    expiring = make_api_key(client.client_id, timedelta(days=90))
    forever = make_api_key(client.client_id, None)
    assert expiring.expires_at is not None
    assert abs(expiring.expires_at - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)
    assert api.get("/users", headers={"X-API-Key": expiring.api_key}).status_code == 200

    expire(settings, expiring.key_id)
    time.sleep(settings.auth_cache_ttl)  # the expiry the server remembers is the one it read
    for headers in ({"X-API-Key": expiring.api_key}, bearer(expiring.api_key)):
        response = api.get("/users", headers=headers)
        assert_unauthorized(response)
        assert response.json() == {"error": "Unauthorized", "message": "The API key has expired."}
        assert (
            'error_description="The API key has expired."' in response.headers["WWW-Authenticate"]
        )
    assert api.get("/users", headers={"X-API-Key": forever.api_key}).status_code == 200


def test_an_expired_key_spends_the_failed_authentication_budget(
    settings: Settings, make_api_key: MakeKey, client: admin.NewClient
) -> None:
    key = make_api_key(client.client_id, timedelta(hours=1))
    expire(settings, key.key_id)
    limited = settings.model_copy(update={"auth_failure_limit": "3/minute"})
    with create_app(limited).test_client() as api:
        statuses = [
            api.get("/products", headers={"X-API-Key": key.api_key}).status_code for _ in range(5)
        ]
    # Like a revoked key: counted as a failed authentication, and the source slowed down.
    assert statuses == [401, 401, 401, 429, 429]


def test_a_cached_key_does_not_outlive_its_expiry(
    settings: Settings,
    make_api_key: MakeKey,
    client: admin.NewClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []
    original = clients.find_active_key

    async def counting(db: Any, *, digest: str) -> clients.KeyRow | None:
        loads.append(digest)
        return await original(db, digest=digest)

    monkeypatch.setattr(clients, "find_active_key", counting)
    key = make_api_key(client.client_id, timedelta(hours=1))
    remembering = settings.model_copy(update={"auth_cache_ttl": 60})
    with create_app(remembering).test_client() as api:
        headers = {"X-API-Key": key.api_key}
        assert api.get("/users", headers=headers).status_code == 200
        clock.offset = timedelta(minutes=59)
        assert api.get("/users", headers=headers).status_code == 200
        clock.offset = timedelta(minutes=60, seconds=1)
        assert_unauthorized(api.get("/users", headers=headers))
    # One read: the refusal came from the remembered expiry, not from a fresh look.
    assert len(loads) == 1


# --- last use -----------------------------------------------------------------------------


class Writes:
    """Counts the last-use writes that reached the database, and those that changed a row."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[bool] = []
        self._lock = threading.Lock()
        original = clients.record_key_use

        def counting(session: Session, *, key_id: str, now: datetime) -> bool:
            changed = original(session, key_id=key_id, now=now)
            with self._lock:
                self.calls.append(changed)
            return changed

        monkeypatch.setattr(clients, "record_key_use", counting)

    @property
    def changed(self) -> int:
        return sum(self.calls)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    return Writes(monkeypatch)


def last_used(settings: Settings, key_id: str) -> datetime | None:
    keys = admin.run(settings, clients.list_api_keys)
    return next(k.last_used_at for k in keys if k.id == key_id)


def test_many_requests_within_a_minute_write_the_last_use_once(
    app: connexion.AsyncApp,
    settings: Settings,
    make_api_key: MakeKey,
    client: admin.NewClient,
    writes: Writes,
) -> None:
    key = make_api_key(client.client_id)
    unused = make_api_key(client.client_id)
    before = utcnow()
    # Its own test client: leaving it runs the shutdown, which waits for the writes started.
    with app.test_client() as api:
        for _ in range(30):
            assert api.get("/products", headers={"X-API-Key": key.api_key}).status_code == 200
    assert writes.calls == [True]
    seen = last_used(settings, key.key_id)
    assert seen is not None
    assert before <= seen <= utcnow()
    assert last_used(settings, unused.key_id) is None


def test_instances_together_write_the_last_use_about_once_a_minute(
    settings: Settings, make_api_key: MakeKey, client: admin.NewClient, writes: Writes
) -> None:
    key = make_api_key(client.client_id)
    for _ in range(3):  # three instances, each with its own memory of what it wrote
        with create_app(settings).test_client() as api:
            for _ in range(5):
                assert api.get("/users", headers=bearer(key.api_key)).status_code == 200
    # Each instance tried once; the database's condition let only the first write.
    assert writes.calls == [True, False, False]


def test_a_failed_last_use_write_does_not_fail_the_request(
    app: connexion.AsyncApp,
    make_api_key: MakeKey,
    client: admin.NewClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: Any, **__: Any) -> bool:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(clients, "record_key_use", broken)
    key = make_api_key(client.client_id)
    with app.test_client() as api:
        assert api.get("/users", headers={"X-API-Key": key.api_key}).status_code == 200
        assert api.get("/users", headers={"X-API-Key": key.api_key}).status_code == 200
    [record] = [r for r in caplog.records if r.name == "storefront.access.last_use"]
    assert record.getMessage() == (
        f"could not record the last use of API key {key.key_id}: RuntimeError"
    )


# --- client secrets rotated with a grace --------------------------------------------------


def rotate(
    settings: Settings, digester: SecretDigester, client_id: str, grace: timedelta
) -> admin.RotatedSecret:
    return admin.run(
        settings,
        lambda s: admin.rotate_client_secret(s, digester, client_id=client_id, grace=grace),
    )


def with_secret(client: admin.NewClient, secret: str) -> admin.NewClient:
    return admin.NewClient(client.client_id, secret, client.name, client.scopes)


def test_the_old_secret_works_until_the_grace_ends(
    api: TestClient,
    settings: Settings,
    digester: SecretDigester,
    client: admin.NewClient,
    clock: Clock,
) -> None:
    rotated = rotate(settings, digester, client.client_id, timedelta(hours=24))
    new = with_secret(client, rotated.client_secret)
    assert rotated.client_secret != client.client_secret
    assert rotated.previous_secret_expires_at is not None

    for who in (client, new):  # inside the grace: both, at every endpoint that authenticates
        token = assert_token(api.post("/auth/token", data=form(who)), "read write")
        basic_auth = basic(who.client_id, who.client_secret)
        response = api.post(
            "/auth/token", data={"grant_type": "client_credentials"}, headers=basic_auth
        )
        assert_token(response, "read write")
        credentials = {"client_id": who.client_id, "client_secret": who.client_secret}
        seen = api.post("/auth/introspect", data={"token": token, **credentials})
        assert seen.json()["active"] is True
        assert api.post("/auth/revoke", data={"token": token, **credentials}).status_code == 200

    clock.offset = timedelta(hours=24, seconds=1)  # the grace is over
    assert_oauth_error(api.post("/auth/token", data=form(client)), 401, "invalid_client")
    for path in ("/auth/introspect", "/auth/revoke"):
        response = api.post(
            path,
            data={
                "token": "x",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            },
        )
        assert_oauth_error(response, 401, "invalid_client")
    assert_token(api.post("/auth/token", data=form(new)), "read write")


def test_grace_zero_ends_the_old_secret_at_once(
    api: TestClient, settings: Settings, digester: SecretDigester, client: admin.NewClient
) -> None:
    rotated = rotate(settings, digester, client.client_id, timedelta(0))
    assert rotated.previous_secret_expires_at is None
    response = api.post("/auth/token", data=form(client))
    assert_oauth_error(response, 401, "invalid_client")
    assert_token(
        api.post("/auth/token", data=form(with_secret(client, rotated.client_secret))), "read write"
    )


def test_a_second_rotation_keeps_only_the_secret_it_replaces(
    api: TestClient, settings: Settings, digester: SecretDigester, client: admin.NewClient
) -> None:
    second = rotate(settings, digester, client.client_id, timedelta(hours=1))
    third = rotate(settings, digester, client.client_id, timedelta(hours=1))
    assert_oauth_error(api.post("/auth/token", data=form(client)), 401, "invalid_client")
    for secret in (second.client_secret, third.client_secret):
        assert_token(api.post("/auth/token", data=form(with_secret(client, secret))), "read write")


def test_a_disabled_client_is_refused_with_either_secret(
    api: TestClient, settings: Settings, digester: SecretDigester, client: admin.NewClient
) -> None:
    rotated = rotate(settings, digester, client.client_id, timedelta(hours=1))
    admin.run(settings, lambda s: clients.disable_client(s, client_id=client.client_id))
    for secret in (client.client_secret, rotated.client_secret):
        response = api.post("/auth/token", data=form(with_secret(client, secret)))
        assert_oauth_error(response, 401, "invalid_client")


@pytest.fixture
def secret_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the token endpoint does with a presented secret: digests and comparisons."""
    done: list[str] = []
    digest, compare = SecretDigester.digest, hmac.compare_digest

    def digesting(self: SecretDigester, secret: str) -> str:
        done.append("digest")
        return digest(self, secret)

    def comparing(a: Any, b: Any) -> bool:
        done.append("compare")
        return compare(a, b)

    monkeypatch.setattr(SecretDigester, "digest", digesting)
    monkeypatch.setattr("storefront.access.oauth.hmac.compare_digest", comparing)
    return done


def test_every_client_costs_the_same_work_rotated_or_unknown(
    api: TestClient,
    settings: Settings,
    digester: SecretDigester,
    make_client: MakeClient,
    clock: Clock,
    secret_work: list[str],
) -> None:
    plain = make_client()
    rotated = make_client()
    rotate(settings, digester, rotated.client_id, timedelta(hours=1))
    cases = {
        "unknown client": form(with_secret(plain, "x"), client_id="cli_doesnotexist"),
        "wrong secret": form(with_secret(plain, "wrong")),
        "right secret": form(plain),
        "old secret in the grace": form(rotated),
        "wrong secret in a grace": form(with_secret(rotated, "wrong")),
    }
    work = {}
    for name, data in cases.items():
        secret_work.clear()
        api.post("/auth/token", data=data)
        work[name] = list(secret_work)
    clock.offset = timedelta(hours=2)
    secret_work.clear()
    assert api.post("/auth/token", data=form(rotated)).status_code == 401
    work["old secret after the grace"] = list(secret_work)
    # One digest and two constant-time comparisons, whoever asks.
    assert work == {name: ["digest", "compare", "compare"] for name in work}
