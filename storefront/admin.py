"""Operator actions behind the ``storefront`` command (and the tests' set-up).

Each is a function of a Session; ``run`` gives it its own engine and one write transaction,
so that synchronous code (the CLI, the tests' set-up) can call it.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from limits.errors import StorageError
from sqlalchemy.orm import Session

from core import scopes as vocabulary
from core.crypto import PasswordHashing, SecretDigester
from core.errors import InvalidInput
from core.ids import new_api_key, new_secret
from core.settings import Settings
from persistence import clients, users
from persistence.db import Database
from persistence.models import ApiKey, utcnow
from storefront.access import client_keys
from storefront.access.ratelimit import MAX_LIMITS, Limiter, parse_limit, uses_of, window_name

#: What the demo client gets: the broad scopes, every resource read and written.
DEMO_SCOPES = (vocabulary.READ, vocabulary.WRITE)
RATE_LIMIT_MAX = 200  # the width of clients.rate_limits and api_keys.rate_limits
#: The most uses a key may be given (a signed 64-bit count in Redis, an INTEGER in SQL).
USES_MAX = 2**31 - 1
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
class NewKeyClient:
    """A client without a secret: it authenticates with assertions signed by its keys."""

    client_id: str
    name: str
    scopes: list[str]
    #: Where it publishes its keys; None when they were registered with it.
    jwks_uri: str | None


@dataclass(frozen=True)
class ClientKeySource:
    """A client's public keys as registered: a checked JWK Set (stored as JSON), or the URL
    of one (fetched and checked at registration)."""

    jwks: str | None = None
    jwks_uri: str | None = None


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


def parse_rate_limits(texts: Sequence[str]) -> str | None:
    """One or more limits ("100/minute", "10000/day", or "100/minute;10000/day" in one) as
    stored: ``;``-separated; None for "default" alone (the server's). Each must have a window
    of its own: the windows name the limits ("per-minute", "per-day")."""
    if list(texts) == ["default"]:
        return None
    if "default" in texts:
        raise InvalidInput("'default' stands alone: it replaces every own limit")
    items = []
    for text in texts:
        for part in re.split(r"[;,|]", text):
            if part.strip():
                items.append(parse_rate_limit(part.strip()))
    if not items:
        raise InvalidInput("give one or more limits like '100/minute', or 'default'")
    if len(items) > MAX_LIMITS:
        raise InvalidInput(f"at most {MAX_LIMITS} limits; got {len(items)}")
    names = [window_name(parse_limit(item)) for item in items]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidInput(
            f"two limits with one window ({', '.join(twice)}): give each window one limit"
        )
    joined = ";".join(items)
    if len(joined) > RATE_LIMIT_MAX:
        raise InvalidInput(f"the limits are at most {RATE_LIMIT_MAX} characters together")
    return joined


def parse_uses(uses: int | None, refill: str | None) -> tuple[int | None, str | None]:
    """``keys create --uses N [--refill M/period]``: the key's uses and refill as stored."""
    if uses is None:
        if refill is not None:
            raise InvalidInput("--refill needs --uses: the number of uses it refills")
        return None, None
    if not 1 <= uses <= USES_MAX:
        raise InvalidInput(f"--uses must be between 1 and {USES_MAX}; got {uses}")
    if refill is None:
        return uses, None
    try:
        item = parse_limit(refill)
    except ValueError:
        raise InvalidInput(
            f"--refill must be uses per period like '1000/month'; got {refill!r}"
        ) from None
    if item.amount > USES_MAX:
        raise InvalidInput(f"--refill refills at most {USES_MAX} uses; got {refill!r}")
    return uses, refill


def remaining_uses(settings: Settings, keys: Sequence[ApiKey]) -> dict[str, int | None]:
    """What is left of each key's uses (keys without any are absent; None: the rate-limit
    store cannot be read), read where the server counts them: the shared store, or the
    database (``uses_spent``) when the store is in memory."""
    now = time.time()
    found = {
        key.id: uses_of(key.id, key.uses, key.uses_refill, key.created_at.timestamp(), now)
        for key in keys
        if key.uses is not None
    }
    counted = {key_id: uses for key_id, uses in found.items() if uses is not None}
    if not counted:
        return {}
    if settings.rate_limit_storage_url.startswith("memory"):
        rows = {key.id: key for key in keys}
        return {
            key_id: max(
                0,
                uses.quota
                - (rows[key_id].uses_spent if rows[key_id].uses_period == uses.period else 0),
            )
            for key_id, uses in counted.items()
        }

    async def read() -> list[int] | None:
        limiter = Limiter.from_settings(settings)
        try:
            async with asyncio.timeout(5):
                return await limiter.spent_uses(list(counted.values()))
        except (StorageError, OSError, TimeoutError):
            return None
        finally:
            await limiter.close()

    spent = asyncio.run(read())
    if spent is None:
        return dict.fromkeys(counted)
    return {
        key_id: max(0, uses.quota - n)
        for (key_id, uses), n in zip(counted.items(), spent, strict=True)
    }


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


def read_key_set(path: Path) -> ClientKeySource:
    """The JWK Set in the file at ``path``, checked: public keys only, of the kinds client
    assertions are verified with."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(f"cannot read the key set {str(path)!r}: {reason}") from None
    try:
        return ClientKeySource(jwks=client_keys.normalized(text))
    except client_keys.BadKeySet as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def published_key_set(uri: str, *, timeout: float) -> ClientKeySource:
    """The URL of a client's published JWK Set, once it was fetched and checked."""
    try:
        client_keys.fetch_now(client_keys.check_jwks_uri(uri), timeout=timeout)
    except client_keys.BadKeySet as exc:
        raise InvalidInput(str(exc)) from None
    return ClientKeySource(jwks_uri=uri)


def create_key_client(
    session: Session,
    *,
    name: str,
    scopes: Sequence[str],
    keys: ClientKeySource,
    require_dpop: bool = False,
) -> NewKeyClient:
    """A client with no secret, which authenticates with ``private_key_jwt`` (RFC 7523); with
    ``require_dpop``, its tokens are bound to a DPoP key as well (RFC 9449)."""
    client = clients.create_client(
        session,
        name=name,
        scopes=list(scopes),
        secret_digest=clients.NO_SECRET,
        jwks=keys.jwks,
        jwks_uri=keys.jwks_uri,
        require_dpop=require_dpop,
    )
    return NewKeyClient(client.id, client.name, client.scopes.split(), client.jwks_uri)


def set_client_keys(session: Session, *, client_id: str, keys: ClientKeySource) -> None:
    """Replace the client's keys: assertions signed with the new ones are accepted with this
    commit, on every instance; the keys it replaces stop working at the same moment."""
    clients.set_client_keys(session, client_id=client_id, jwks=keys.jwks, jwks_uri=keys.jwks_uri)


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
    if not clients.find_client_row(session, client_id=client_id).secret_digest:
        raise InvalidInput(
            f"client {client_id} has no secret to rotate: it authenticates with its keys "
            "(private_key_jwt); replace them with 'storefront clients set-jwks'"
        )
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
    uses: int | None = None,
    uses_refill: str | None = None,
) -> NewApiKey:
    """A new key for the client, which expires ``expires_in`` from now (None: never), with
    ``uses`` accepted requests refilled per ``uses_refill`` (None: no count, no refill)."""
    api_key = new_api_key()
    expires_at = None if expires_in is None else utcnow() + expires_in
    key = clients.create_api_key(
        session,
        client_id=client_id,
        digest=digester.digest(api_key),
        prefix=api_key[: clients.KEY_PREFIX_CHARS],
        expires_at=expires_at,
        uses=uses,
        uses_refill=uses_refill,
    )
    return NewApiKey(key.id, api_key, client_id, expires_at)
