"""storefront.access.usage: requests counted per day, client and key, written in batches.

Through the app (each backend): what counts as accepted and refused, and how few writes carry
the counts. Then the recorder alone, on a database that fails or waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event

from core.settings import Settings
from persistence import clients, usage
from storefront import admin
from storefront.access import usage as usage_module
from storefront.access.state import Caller
from storefront.access.usage import Usage
from storefront.app import create_app

MakeClient = Callable[..., admin.NewClient]
MakeKey = Callable[..., admin.NewApiKey]
Row = tuple[date, str, str, int, int]


@contextmanager
def usage_writes() -> Iterator[list[str]]:
    """The statements sent to any database meanwhile that write ``usage_days``."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "usage_days" in statement and statement.lstrip().upper().startswith("INSERT"):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def stored(settings: Settings) -> list[Row]:
    rows = admin.run(settings, lambda s: usage.usage_since(s, since=date(2000, 1, 1)))
    return [(r.day, r.client_id, r.key_id, r.accepted, r.refused) for r in rows]


def today() -> date:
    return datetime.now(UTC).date()


def token_request(client: admin.NewClient, secret: str | None = None) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": secret or client.client_secret,
    }


NEW_PRODUCT = {"name": "Mug", "description": "", "price": 9.5, "category": "Home"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No timed write within a test (one that wants one sets its own interval)."""
    return settings.model_copy(update={"usage_flush_seconds": 60.0})


@pytest.mark.stock_stack
@pytest.mark.pgbouncer
def test_each_response_counts_once_for_its_caller(
    settings: Settings, app: Any, make_client: MakeClient, make_api_key: MakeKey
) -> None:
    reader = make_client("read")
    admin.run(
        settings,
        lambda s: clients.set_rate_limit(s, client_id=reader.client_id, rate_limit="3/minute"),
    )
    key = {"X-API-Key": make_api_key(reader.client_id).api_key}
    key_id = admin.run(settings, lambda s: clients.list_api_keys(s, client_id=reader.client_id))[
        0
    ].id
    stranger = make_client("read write")
    with usage_writes() as writes:
        with app.test_client() as api:
            # The client's three requests: the token (its budget: 1 of 3), two reads.
            response = api.post("/auth/token", data=token_request(reader))
            assert response.status_code == 200
            bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
            assert api.get("/products", headers=bearer).status_code == 200
            # A 404 was answered: accepted.
            assert api.get("/products/prod_missing", headers=bearer).status_code == 404
            # Past its budget: refused.
            assert api.get("/products", headers=bearer).status_code == 429
            # Its key, with a budget of its own: two reads, a write its scope lacks (a 403,
            # which spends the key's third request), then past the budget.
            assert api.get("/products", headers=key).status_code == 200
            assert api.get("/products", headers=key).status_code == 200
            assert api.post("/products", json=NEW_PRODUCT, headers=key).status_code == 403
            assert api.get("/products", headers=key).status_code == 429
            # No caller identified: counted for nobody, not even the client a failed token
            # request names.
            assert api.get("/products").status_code == 401
            assert api.get("/products", headers={"Authorization": "Bearer x"}).status_code == 401
            wrong = token_request(stranger, secret="not-the-secret")
            assert api.post("/auth/token", data=wrong).status_code == 401
            # Counted in memory only, until the interval or shutdown.
            assert stored(settings) == []
        # Shutdown wrote them, in one statement.
        assert len(writes) == 1
    assert stored(settings) == sorted(
        [(today(), reader.client_id, "", 3, 1), (today(), reader.client_id, key_id, 2, 2)]
    )


def test_counts_reach_the_database_within_the_interval_in_few_writes(
    settings: Settings, make_client: MakeClient, make_api_key: MakeKey
) -> None:
    interval = 0.5
    settings = settings.model_copy(update={"usage_flush_seconds": interval})
    client = make_client("read")
    key = {"X-API-Key": make_api_key(client.client_id).api_key}
    requests = 100
    with usage_writes() as writes, create_app(settings).test_client() as api:
        started = time.monotonic()
        for _ in range(requests):
            assert api.get("/products", headers=key).status_code == 200
        deadline = time.monotonic() + 10 * interval
        while sum(row[3] for row in stored(settings)) < requests:
            assert time.monotonic() < deadline, stored(settings)
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        written = len(writes)
    # One write per interval at most, while requests came in and once after the last.
    assert 1 <= written <= elapsed / interval + 1
    assert written < requests / 5
    assert [row[3:] for row in stored(settings)] == [(requests, 0)]


class FakeDatabase:
    """Database.write's shape: keeps what ``add_counts`` is given; fails while ``fail`` is
    above 0 (counting down); each write waits for ``release``."""

    def __init__(self) -> None:
        self.written: list[list[usage.DayCount]] = []
        self.fail = 0
        self.release = asyncio.Event()
        self.release.set()
        self.wrote = asyncio.Event()

    async def write(self, work: Any, /, **kwargs: Any) -> None:
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the database is down")
        self.written.append(list(kwargs["counts"]))
        self.wrote.set()


def counts(db: FakeDatabase) -> dict[tuple[date, str, str], tuple[int, int]]:
    """Everything written, added up as the database would."""
    total: dict[tuple[date, str, str], tuple[int, int]] = {}
    for batch in db.written:
        for c in batch:
            a, r = total.get((c.day, c.client_id, c.key_id), (0, 0))
            total[(c.day, c.client_id, c.key_id)] = (a + c.accepted, r + c.refused)
    return total


def recorder(db: FakeDatabase, interval: float = 60) -> Usage:
    return Usage(db, interval=interval)  # type: ignore[arg-type]


CLIENT = Caller("cli_a")
KEY = Caller("cli_a", "key_b")


def test_statuses_sort_into_accepted_refused_and_neither() -> None:
    async def run() -> tuple[int, FakeDatabase]:
        db = FakeDatabase()
        recorder_ = recorder(db)
        for status in (200, 201, 204, 304, 400, 404, 412):
            recorder_.record(CLIENT, status)
        for status in (403, 429, 429):
            recorder_.record(KEY, status)
        for status in (500, 503):  # the server could not answer: neither
            recorder_.record(KEY, status)
        pending = recorder_.pending
        await recorder_.close()
        return pending, db

    pending, db = asyncio.run(run())
    assert pending == 10
    day = today()
    assert counts(db) == {(day, "cli_a", ""): (7, 0), (day, "cli_a", "key_b"): (0, 3)}
    assert len(db.written) == 1  # at close, in one write


def test_a_request_counts_on_its_utc_day(monkeypatch: pytest.MonkeyPatch) -> None:
    midnight = datetime(2026, 12, 8, tzinfo=UTC).timestamp()
    now = [midnight - 0.5]
    monkeypatch.setattr(usage_module.time, "time", lambda: now[0])

    async def run() -> FakeDatabase:
        db = FakeDatabase()
        recorder_ = recorder(db)
        recorder_.record(CLIENT, 200)
        now[0] = midnight
        recorder_.record(CLIENT, 200)
        recorder_.record(CLIENT, 429)
        await recorder_.close()
        return db

    assert counts(asyncio.run(run())) == {
        (date(2026, 12, 7), "cli_a", ""): (1, 0),
        (date(2026, 12, 8), "cli_a", ""): (1, 1),
    }


def test_a_failed_write_keeps_its_counts_for_the_next() -> None:
    async def run() -> tuple[list[int], FakeDatabase]:
        db = FakeDatabase()
        db.fail = 1
        recorder_ = recorder(db)
        for _ in range(5):
            recorder_.record(KEY, 200)
        assert not await recorder_.flush()
        pending = [recorder_.pending]
        recorder_.record(KEY, 429)
        assert await recorder_.flush()
        pending.append(recorder_.pending)
        await recorder_.close()
        return pending, db

    pending, db = asyncio.run(run())
    assert pending == [5, 0]
    assert counts(db) == {(today(), "cli_a", "key_b"): (5, 1)}


def test_a_timed_write_that_fails_is_tried_again_without_more_requests() -> None:
    async def run() -> FakeDatabase:
        db = FakeDatabase()
        db.fail = 1
        recorder_ = recorder(db, interval=0.05)
        recorder_.record(KEY, 200)
        await asyncio.wait_for(db.wrote.wait(), timeout=5)
        await recorder_.close()
        return db

    db = asyncio.run(run())
    assert counts(db) == {(today(), "cli_a", "key_b"): (1, 0)}
    assert len(db.written) == 1  # the retry; close found nothing left


def test_close_waits_for_a_write_under_way_and_writes_the_rest() -> None:
    async def run() -> FakeDatabase:
        db = FakeDatabase()
        recorder_ = recorder(db, interval=0.01)
        recorder_.record(CLIENT, 200)
        db.release.clear()
        await asyncio.sleep(0.05)  # the timed write has begun, and waits for the database
        recorder_.record(CLIENT, 200)  # counted after it took its batch
        asyncio.get_running_loop().call_later(0.05, db.release.set)
        await recorder_.close()
        return db

    db = asyncio.run(run())
    assert [len(batch) for batch in db.written] == [1, 1]
    assert counts(db) == {(today(), "cli_a", ""): (2, 0)}


def test_an_idle_recorder_starts_nothing() -> None:
    async def run() -> tuple[bool, FakeDatabase]:
        db = FakeDatabase()
        recorder_ = recorder(db, interval=0.01)
        await asyncio.sleep(0.05)
        idle = recorder_._timer is None
        await recorder_.close()
        return idle, db

    idle, db = asyncio.run(run())
    assert idle
    assert db.written == []


def test_shutdown_abandons_a_write_that_hangs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(usage_module, "CLOSE_TIMEOUT", 0.05)

    async def run() -> FakeDatabase:
        db = FakeDatabase()
        recorder_ = recorder(db, interval=0.01)
        recorder_.record(CLIENT, 200)
        db.release.clear()  # never released
        await asyncio.sleep(0.05)  # the timed write has begun, and hangs
        await recorder_.close()
        return db

    db = asyncio.run(run())
    assert db.written == []
    assert "the usage counts of 1 requests may be lost" in caplog.text
