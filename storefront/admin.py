"""Operator actions behind the ``storefront`` command (and the tests' set-up).

Each is a function of a Session; ``run`` gives it its own engine and one write transaction,
so that synchronous code (the CLI, the tests' set-up) can call it.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.orm import Session

from core import scopes as vocabulary
from core.crypto import PasswordHashing, SecretDigester
from core.errors import InvalidInput
from core.ids import new_api_key, new_secret
from core.settings import Settings
from persistence import clients, users
from persistence.db import Database
from persistence.models import utcnow
from storefront.access.ratelimit import parse_limit

#: What the demo client gets: the broad scopes, every resource read and written.
DEMO_SCOPES = (vocabulary.READ, vocabulary.WRITE)
RATE_LIMIT_MAX = 32  # the width of clients.rate_limit
#: The units of a duration ("90d"), in seconds.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: The longest an API key may be given to live, and a rotated secret's longest grace.
KEY_LIFETIME_MAX = timedelta(days=3650)
GRACE_MAX = timedelta(days=30)
#: What `clients rotate-secret` leaves the previous secret working for, unless told.
DEFAULT_GRACE = "24h"
T = TypeVar("T")


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    name: str
    scopes: list[str]


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    api_key: str
    client_id: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class RotatedSecret:
    client_id: str
    client_secret: str
    #: Until when the secret it replaced still works; None: it stopped at once.
    previous_secret_expires_at: datetime | None


def parse_scopes(text: str) -> list[str]:
    """A client's scopes (``core.scopes.CLIENT_SCOPES``), space-separated, in the vocabulary's
    order; an unknown one is refused by name, with the nearest known one when there is one."""
    known = " ".join(vocabulary.CLIENT_SCOPES)
    scopes = text.split()
    unknown = vocabulary.unknown(scopes)
    if unknown:
        named = ", ".join(repr(s) for s in unknown)
        hints = [
            m for s in unknown for m in difflib.get_close_matches(s, vocabulary.CLIENT_SCOPES, n=1)
        ]
        hint = f" (did you mean {', '.join(repr(h) for h in hints)}?)" if hints else ""
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidInput(f"unknown scope{plural} {named}{hint}; scopes must be some of: {known}")
    if not scopes:
        raise InvalidInput(f"scopes must be some of: {known}; got {text!r}")
    return vocabulary.ordered(scopes)


def parse_rate_limit(text: str) -> str:
    """A limit in the ``limits`` syntax ("500/minute", "10 per second"), as given."""
    try:
        parse_limit(text)
    except ValueError:
        raise InvalidInput(f"not a rate limit like '500/minute': {text!r}") from None
    if len(text) > RATE_LIMIT_MAX:
        raise InvalidInput(f"a rate limit is at most {RATE_LIMIT_MAX} characters: {text!r}")
    return text


def parse_duration(text: str, *, option: str, maximum: timedelta, zero: bool = False) -> timedelta:
    """A duration such as ``30m``, ``12h``, ``90d`` or ``1w`` (also ``45s``); ``0`` when
    ``zero`` allows it. ``option`` names the option in the error."""
    if zero and text.strip() == "0":
        return timedelta(0)
    match = re.fullmatch(r"\s*(\d{1,7})\s*([smhdw])\s*", text)
    if match is None or int(match[1]) == 0:
        allowed = "0 or " if zero else ""
        raise InvalidInput(
            f"{option} must be {allowed}a whole number and a unit (s, m, h, d, w), as 30m, "
            f"12h, 90d or 1w; got {text!r}"
        )
    duration = timedelta(seconds=int(match[1]) * DURATION_UNITS[match[2]])
    if duration > maximum:
        raise InvalidInput(f"{option} must be at most {maximum.days}d; got {text!r}")
    return duration


def run(settings: Settings, action: Callable[[Session], T]) -> T:
    """``action(session)`` in one write transaction on the settings' database."""

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            return await db.write(action)
        finally:
            await db.dispose()

    return asyncio.run(main())


def create_client(
    session: Session,
    digester: SecretDigester,
    *,
    name: str,
    scopes: Sequence[str],
    require_dpop: bool = False,
) -> NewClient:
    secret = new_secret()
    client = clients.create_client(
        session,
        name=name,
        scopes=list(scopes),
        secret_digest=digester.digest(secret),
        require_dpop=require_dpop,
    )
    return NewClient(client.id, secret, client.name, client.scopes.split())


def ensure_demo_client(session: Session, digester: SecretDigester) -> NewClient:
    """The client named ``demo``, with a fresh secret (only digests are stored, so the old
    secret cannot be shown again)."""
    existing = clients.find_client_by_name(session, name="demo")
    if existing is None:
        return create_client(session, digester, name="demo", scopes=DEMO_SCOPES)
    secret = new_secret()
    clients.set_client_secret(session, client_id=existing.id, secret_digest=digester.digest(secret))
    return NewClient(existing.id, secret, existing.name, existing.scopes.split())


def ensure_demo_users(settings: Settings, people: Sequence[Mapping[str, str]]) -> int:
    """Create the users of ``people`` (``name``, ``email``) whose email no user has yet, so
    that a demo's first ``GET /users`` shows some; the number created. Run at every ``--demo``
    start, it adds only those missing (deleted ones come back, edited ones are left alone).

    Each gets a random password, hashed as the API hashes one (argon2id), that nobody is
    told: a demo user is a record to list, not an account to sign in with."""
    emails = [person["email"] for person in people]
    present = run(settings, lambda s: users.existing_emails(s, emails=emails))
    missing = [p for p in people if p["email"].lower() not in present]
    if not missing:
        return 0  # a restart: no password to hash, the costly part
    hashing = PasswordHashing(concurrency=1)

    async def hash_all() -> list[str]:
        return [await hashing.hash(new_secret()) for _ in missing]

    hashes = asyncio.run(hash_all())

    def create(session: Session) -> int:
        # Asked again inside the write: another start may have added some meanwhile.
        taken = users.existing_emails(session, emails=emails)
        made = 0
        for person, password_hash in zip(missing, hashes, strict=True):
            if person["email"].lower() not in taken:
                users.create_user(
                    session, name=person["name"], email=person["email"], password_hash=password_hash
                )
                made += 1
        return made

    return run(settings, create)


def rotate_client_secret(
    session: Session, digester: SecretDigester, *, client_id: str, grace: timedelta
) -> RotatedSecret:
    """A new secret for the client; the one it replaces keeps working for ``grace`` (none
    when zero). Only one previous secret is kept: a rotation within a grace ends the grace of
    the secret before."""
    secret = new_secret()
    until = utcnow() + grace if grace > timedelta(0) else None
    clients.rotate_client_secret(
        session, client_id=client_id, secret_digest=digester.digest(secret), previous_until=until
    )
    return RotatedSecret(client_id, secret, until)


def create_api_key(
    session: Session,
    digester: SecretDigester,
    *,
    client_id: str,
    expires_in: timedelta | None = None,
) -> NewApiKey:
    """A new key for the client, which expires ``expires_in`` from now (None: never)."""
    api_key = new_api_key()
    expires_at = None if expires_in is None else utcnow() + expires_in
    key = clients.create_api_key(
        session,
        client_id=client_id,
        digest=digester.digest(api_key),
        prefix=api_key[: clients.KEY_PREFIX_CHARS],
        expires_at=expires_at,
    )
    return NewApiKey(key.id, api_key, client_id, expires_at)
