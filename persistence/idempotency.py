"""Idempotency keys: which request holds a client's key, and the response it got. Writes take
a Session and never commit.

A key goes through three states, each one row (or none) of ``idempotency_keys``:

- absent (or expired): the next request with it ``claim``\\ s it;
- claimed: a request is running with it (``claim`` names the request); others get
  ``IdempotencyInProgress`` until ``claimed_until``, after which the request is taken to be
  dead and a retry may claim the key over it;
- complete: ``complete`` stored the response, in the same transaction as the work it
  describes, and only if the request still held the key. Retries get the stored response;
- forgotten: the resource the response carries (a created user) was deleted, and ``forget``
  dropped the response in the delete's transaction. Retries get ``IdempotentResourceGone``:
  the request is not carried out again, and what was deleted is never served again.

A request that fails ``release``\\ s its key, so that a retry runs anew.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.errors import IdempotencyInProgress, IdempotencyKeyReused, IdempotentResourceGone
from core.ids import new_id
from persistence.models import IdempotencyKey

#: Expired keys deleted by each new key at most: the purge costs a bounded walk of
#: ix_idempotency_keys_expires_at per insert, however many keys expired meanwhile (keys are
#: made faster than they expire, at most, so a batch above one keeps up).
PURGE_BATCH = 100
#: What a retry that finds the first request still running is told to wait, in seconds.
RETRY_AFTER = 1
#: How many times ``claim`` tries again when the key it found taken was released meanwhile.
_ATTEMPTS = 3
#: The status of a forgotten response (it has no headers or body): what its replay answers.
GONE = 410


@dataclass(frozen=True, slots=True)
class Claim:
    """A running request's hold on a key."""

    client_id: str
    operation: str
    key: str
    token: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    #: The JSON body, as text.
    body: str


def _identity(client_id: str, operation: str, key: str) -> list[ColumnElement[bool]]:
    return [
        IdempotencyKey.client_id == client_id,
        IdempotencyKey.operation == operation,
        IdempotencyKey.key == key,
    ]


def claim(
    session: Session,
    *,
    client_id: str,
    operation: str,
    key: str,
    fingerprint: str,
    now: datetime,
    ttl: timedelta,
    lease: timedelta,
) -> Claim | StoredResponse:
    """Claim ``key`` for a request with this body ``fingerprint``, or return the response
    the key's first request got.

    Raises ``IdempotencyKeyReused`` when the key came with another fingerprint, and
    ``IdempotencyInProgress`` when the request holding it is still within its ``lease``.
    Concurrent claims of one key are decided by the primary key: PostgreSQL makes the second
    insert wait for the first one's commit, then skip it; SQLite runs one writer at a time.
    """
    held = Claim(client_id, operation, key, new_id("claim_"))
    fresh = {
        "fingerprint": fingerprint,
        "claim": held.token,
        "claimed_until": now + lease,
        "status": None,
        "headers": None,
        "body": None,
        "created_at": now,
        "expires_at": now + ttl,
    }
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    table = IdempotencyKey.__table__
    for _ in range(_ATTEMPTS):
        insert = dialect.insert(table).values(
            client_id=client_id, operation=operation, key=key, **fresh
        )
        if session.execute(insert.on_conflict_do_nothing()).rowcount:  # type: ignore[attr-defined]
            purge(session, now=now, batch=PURGE_BATCH)
            return held
        row = session.scalar(
            select(IdempotencyKey).where(*_identity(client_id, operation, key)).with_for_update()
        )
        if row is None:  # released between the two statements: try the insert again
            continue
        if row.expires_at <= now:  # expired, not purged yet: as good as absent
            for name, value in fresh.items():
                setattr(row, name, value)
            session.flush()
            return held
        if row.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if row.status == GONE:
            raise IdempotentResourceGone()
        if row.status is not None:
            return StoredResponse(row.status, json.loads(row.headers or "{}"), row.body or "")
        if row.claimed_until is not None and row.claimed_until > now:
            raise IdempotencyInProgress(retry_after=RETRY_AFTER)
        # The request holding it outlived its lease: it died, and nothing it did was committed
        # (``complete`` would have ended the claim). Should it wake up, its ``complete`` finds
        # the key claimed by another and its work is rolled back.
        row.claim, row.claimed_until = held.token, now + lease
        session.flush()
        return held
    raise IdempotencyInProgress(retry_after=RETRY_AFTER)


def complete(
    session: Session, *, held: Claim, response: StoredResponse, resource_id: str | None
) -> None:
    """Store the response of the request holding ``held``, in the transaction of its work;
    ``resource_id``: the resource it carries, whose deletion forgets it (``forget``).

    Raises ``IdempotencyInProgress`` when the key was claimed over it meanwhile (its lease
    ran out): the transaction, and so the work, must not be committed.
    """
    stored = session.execute(
        update(IdempotencyKey)
        .where(*_identity(held.client_id, held.operation, held.key))
        .where(IdempotencyKey.claim == held.token)
        .values(
            status=response.status,
            headers=json.dumps(response.headers),
            body=response.body,
            resource_id=resource_id,
            claim=None,
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    if not stored.rowcount:  # type: ignore[attr-defined]
        raise IdempotencyInProgress(retry_after=RETRY_AFTER)


def forget(session: Session, *, resource_id: str) -> None:
    """Forget every stored response that carries ``resource_id``, whichever client's key
    holds it, in the transaction that deletes the resource: what a response of it would
    replay (a person's name and email) is gone with it. The keys stay until they expire, so
    that a retry is told the request was carried out rather than carrying it out again."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.resource_id == resource_id)
        .values(status=GONE, headers=None, body=None)
        .execution_options(synchronize_session=False)
    )


def release(session: Session, *, held: Claim) -> None:
    """Forget a key whose request failed, if that request still holds it."""
    session.execute(
        delete(IdempotencyKey)
        .where(*_identity(held.client_id, held.operation, held.key))
        .where(IdempotencyKey.claim == held.token)
        .execution_options(synchronize_session=False)
    )


def purge(session: Session, *, now: datetime, batch: int) -> int:
    """Delete up to ``batch`` expired keys, oldest first; how many were deleted.

    Rows another transaction holds are skipped (PostgreSQL's SKIP LOCKED), so that concurrent
    purges never wait for each other; SQLite has no row locks and runs one writer at a time.
    """
    columns = (IdempotencyKey.client_id, IdempotencyKey.operation, IdempotencyKey.key)
    expired = session.execute(
        select(*columns)
        .where(IdempotencyKey.expires_at <= now)
        .order_by(IdempotencyKey.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if expired:
        session.execute(
            delete(IdempotencyKey)
            .where(tuple_(*columns).in_([tuple(row) for row in expired]))
            .execution_options(synchronize_session=False)
        )
    return len(expired)
