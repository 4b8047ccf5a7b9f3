"""``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header): a retried request gets
the first one's response instead of doing the work twice.

The key belongs to the calling client (the OAuth client of the token or API key), and is
kept in the database (``persistence.idempotency``), so every instance sees every key. The
request body is kept only as a fingerprint, an HMAC of its canonical JSON under the server
pepper: bodies carry passwords, and a plain hash of one could be guessed offline.

:func:`run_once` claims the key before the slow part of the request (hashing a password),
and stores the response in the transaction that does the work, only if the request still
holds the key: a response is stored exactly when its work is committed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import anyio
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from persistence import idempotency
from persistence.idempotency import Claim, StoredResponse
from persistence.models import utcnow
from storefront.http.deps import caller, services

logger = logging.getLogger(__name__)

T = TypeVar("T")
Response = tuple[dict[str, Any], int, dict[str, str]]

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
#: How long a running request holds its key before a retry may take it over: well beyond
#: what a request can take (a password hash, two short transactions, each bounded by
#: STOREFRONT_DATABASE_TIMEOUT). Only liveness depends on it: a request whose key was taken
#: over commits nothing (``persistence.idempotency.complete``).
LEASE = timedelta(seconds=60)

#: The key: 1 to 255 visible ASCII characters. The draft sends it as a structured-field
#: string ("..."), whose quotes are not part of the key; a bare key (accepted too, as most
#: clients send one) cannot start with a quote, so that every value means one key.
_KEY = re.compile(r'"([!-~]{1,255})"|([!#-~][!-~]{0,254})')


def key_of(value: str | None) -> str | None:
    """The key a request sent, None when it sent none; a 400 when it is malformed (the spec's
    pattern for the header is the same rule)."""
    if value is None:
        return None
    found = _KEY.fullmatch(value)
    if found is None:
        raise InvalidInput(
            "Invalid header parameter 'Idempotency-Key': must be 1 to 255 visible ASCII "
            "characters, optionally in double quotes."
        )
    return found.group(1) or found.group(2)


def fingerprint(operation: str, body: Any) -> str:
    # Canonical: key order and spacing do not make two bodies differ; ASCII escapes, so that
    # any JSON string (a lone surrogate included) encodes.
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return services().digester.digest(f"idempotency\n{operation}\n{canonical}")


async def run_once(
    key: str,
    *,
    operation: str,
    request_body: Any,
    prepare: Callable[[], Awaitable[T]],
    perform: Callable[[Session, T], Response],
) -> Response:
    """The response to a request sent with ``key``: the stored one when the key's first
    request completed (``Idempotent-Replayed: true``), otherwise ``prepare()`` (outside any
    transaction) and then ``perform(session, prepared)`` in one transaction with storing its
    response. ``perform`` runs on a worker thread on SQLite: it must not read the request.
    """
    svc = services()
    who = caller()
    if who is None:  # the operation's security requirement guarantees one
        raise RuntimeError("an idempotent operation needs a proven caller")
    found = await svc.db.write(
        idempotency.claim,
        client_id=who.client_id,
        operation=operation,
        key=key,
        fingerprint=fingerprint(operation, request_body),
        now=utcnow(),
        ttl=timedelta(seconds=svc.settings.idempotency_key_ttl),
        lease=LEASE,
    )
    if isinstance(found, StoredResponse):
        return json.loads(found.body), found.status, {**found.headers, REPLAYED: "true"}
    try:
        prepared = await prepare()
        return await svc.db.write(_perform_and_store, found, perform, prepared)
    except BaseException:
        # Shielded: a cancelled request (the client went away) must still let its key go.
        with anyio.CancelScope(shield=True):
            await _release(found)
        raise


def _perform_and_store(
    session: Session, held: Claim, perform: Callable[[Session, T], Response], prepared: T
) -> Response:
    body, status, headers = perform(session, prepared)
    stored = StoredResponse(status, headers, json.dumps(body))
    # The resource the body shows (a created user, with its name and email): deleting it
    # forgets this response (persistence.users.delete_user).
    resource_id = body.get("id")
    idempotency.complete(
        session,
        held=held,
        response=stored,
        resource_id=resource_id if isinstance(resource_id, str) else None,
    )
    return body, status, headers


async def _release(held: Claim) -> None:
    try:
        await services().db.write(idempotency.release, held=held)
    except Exception as exc:  # the request's own error is the one to report
        # Not released, the key stays claimed until its lease ends; retries get 409 meanwhile.
        logger.warning("could not release an idempotency key: %s", type(exc).__name__)
