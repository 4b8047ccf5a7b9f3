"""The states of an idempotency key, on both engines: claimed, taken over after its lease,
completed with its work, or released."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from core.errors import IdempotencyInProgress, IdempotencyKeyReused
from core.settings import Settings
from persistence import idempotency, users
from persistence.idempotency import Claim, StoredResponse
from persistence.models import utcnow
from storefront import admin
from tests.helpers import db_rows

LEASE = timedelta(seconds=60)
TTL = timedelta(days=1)
T0 = utcnow()
DONE = StoredResponse(201, {"Location": "http://x/users/1"}, '{"id": "1"}')


@pytest.fixture
def claim(
    settings: Settings, make_client: Callable[..., admin.NewClient]
) -> Callable[..., Claim | StoredResponse]:
    client_id = make_client().client_id

    def run(*, at: timedelta = timedelta(0), fingerprint: str = "a" * 64) -> Claim | StoredResponse:
        return admin.run(
            settings,
            lambda s: idempotency.claim(
                s,
                client_id=client_id,
                operation="create_user",
                key="k1",
                fingerprint=fingerprint,
                now=T0 + at,
                ttl=TTL,
                lease=LEASE,
            ),
        )

    return run


def create_and_complete(settings: Settings, held: Claim, email: str) -> None:
    def work(session: Session) -> None:
        users.create_user(session, name="A", email=email, password_hash="not-a-hash")
        idempotency.complete(session, held=held, response=DONE, resource_id=None)

    admin.run(settings, work)


def test_a_claim_outliving_its_lease_is_taken_over_and_its_work_rolled_back(
    settings: Settings, claim: Callable[..., Claim | StoredResponse]
) -> None:
    first = claim()
    assert isinstance(first, Claim)
    with pytest.raises(IdempotencyInProgress):
        claim(at=LEASE - timedelta(seconds=1))  # still within the first one's lease
    second = claim(at=LEASE + timedelta(seconds=1))
    assert isinstance(second, Claim)
    assert second.token != first.token

    # The first request wakes up and finishes: its user is not committed.
    with pytest.raises(IdempotencyInProgress):
        create_and_complete(settings, first, "first@example.com")
    create_and_complete(settings, second, "second@example.com")
    assert db_rows(settings, "SELECT email FROM users") == [("second@example.com",)]

    assert claim(at=LEASE * 2) == DONE
    with pytest.raises(IdempotencyKeyReused):
        claim(at=LEASE * 2, fingerprint="b" * 64)


def test_a_released_key_is_free_and_a_stale_release_frees_nothing(
    settings: Settings, claim: Callable[..., Claim | StoredResponse]
) -> None:
    first = claim()
    assert isinstance(first, Claim)
    admin.run(settings, lambda s: idempotency.release(s, held=first))
    assert db_rows(settings, "SELECT count(*) FROM idempotency_keys") == [(0,)]

    again = claim(fingerprint="b" * 64)  # free: any body may claim it now
    assert isinstance(again, Claim)
    admin.run(settings, lambda s: idempotency.release(s, held=first))  # not first's any more
    with pytest.raises(IdempotencyInProgress):
        claim(fingerprint="b" * 64)
