"""The keys that sign access tokens: kept in the database, rotated without an outage.

Every instance reads the same table (persistence.models.SigningKeyRow), and a key's state
follows from its times alone, so instances agree without being told:

    pending --activates_at--> active --deactivates_at--> previous --retires_at--> retired

- ``storefront keys rotate-signing`` adds a key that activates ``activation_lead`` later: the
  refresh window plus a margin for clocks. Every instance reloads the keys at least once per
  window when it issues a token or serves the JWKS, and once when a token names a kid it does
  not hold, so every instance holds the new key before any instance signs with it: no token is
  refused on the way.
- The key it replaces stops signing at that moment and verifies (and stays in the JWKS) until
  the last token it signed has expired: ``STOREFRONT_TOKEN_TTL`` later, plus the 5 s leeway a
  token's ``exp`` is given and 5 s for clocks that disagree. Then it is retired: out of the
  JWKS and of verification at once on every instance (by time, with no reload), and its row is
  deleted by the next rotation.

A token naming an unknown kid triggers a reload at most once per refresh window per process:
forged kids cannot make an instance read the database per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.crypto import (
    LEEWAY,
    Algorithm,
    KeyEncryption,
    ScheduledKey,
    SigningKey,
    TokenCodec,
    UnknownSigningKey,
    UnreadableKey,
    as_algorithm,
    derived_private_key,
    new_private_key,
    private_key_bytes,
    private_key_from_bytes,
)
from core.settings import Settings
from persistence import signing_keys
from persistence.db import Database
from persistence.models import utcnow
from persistence.signing_keys import StoredKey

logger = logging.getLogger("storefront")

#: The shortest refresh window: with STOREFRONT_AUTH_CACHE_TTL=0 a process would otherwise
#: read the keys for every token it issues, and for every forged kid.
MIN_REFRESH_WINDOW = 1.0
#: Seconds allowed for clocks of different machines to disagree.
CLOCK_MARGIN = 5


def algorithm_configured(settings: Settings) -> bool:
    """Whether STOREFRONT_JWT_ALGORITHM was set, rather than left at its default (the first
    key of an upgraded database keeps the algorithm its tokens had unless it was)."""
    return "jwt_algorithm" in settings.model_fields_set


def refresh_window(settings: Settings) -> float:
    """How old this process's copy of the keys may get: STOREFRONT_AUTH_CACHE_TTL, at least 1 s."""
    return max(settings.auth_cache_ttl, MIN_REFRESH_WINDOW)


def activation_lead(settings: Settings) -> timedelta:
    """How long a new key is published before it signs: every instance reloads within the
    refresh window, and the margin covers clocks that disagree."""
    return timedelta(seconds=refresh_window(settings) + CLOCK_MARGIN)


def retirement_delay(settings: Settings) -> timedelta:
    """How long a key verifies after it stops signing: its last token's lifetime, the leeway
    on ``exp``, and the margin for clocks."""
    return timedelta(seconds=settings.token_ttl + LEEWAY + CLOCK_MARGIN)


def state(row: StoredKey, now: datetime) -> str:
    """pending, active, previous or retired (see the module's docstring); ``derived`` for the
    placeholder migration 0009 leaves."""
    if row.private_key is None:
        return "derived"
    if row.retires_at is not None and now >= row.retires_at:
        return "retired"
    if now < row.activates_at:
        return "pending"
    if row.deactivates_at is not None and now >= row.deactivates_at:
        return "previous"
    return "active"


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _store(
    session: Session,
    encryption: KeyEncryption,
    key: SigningKey,
    *,
    now: datetime,
    activates_at: datetime,
) -> None:
    signing_keys.insert(
        session,
        kid=key.kid,
        algorithm=key.algorithm,
        private_key=encryption.seal(
            kid=key.kid,
            algorithm=key.algorithm,
            key=private_key_bytes(key.algorithm, key.private),
        ),
        public_jwk=None if key.public_jwk is None else json.dumps(key.public_jwk),
        created_at=now,
        activates_at=activates_at,
    )


@dataclass(frozen=True)
class FirstKey:
    """What a first start did: the key it stored, or None when the database had one."""

    kid: str
    algorithm: Algorithm
    #: The algorithm came from migration 0009's placeholder (the pre-0009 default, HS256).
    inherited: bool


def seed_first_key(
    session: Session,
    *,
    secret: bytes,
    encryption: KeyEncryption,
    algorithm: Algorithm,
    algorithm_configured: bool,
    now: datetime | None = None,
) -> FirstKey | None:
    """Store the first signing key when the database has none: the key derived from the
    secret, exactly as servers before 0009 derived it (so with the kid they put in tokens).

    Its algorithm is STOREFRONT_JWT_ALGORITHM; but on a database that migration 0009 found
    with clients (its placeholder row), an algorithm left unset means the one those servers
    used by default, HS256: tokens they issued stay valid, and the new default (EdDSA) comes
    with the first ``keys rotate-signing``.
    """
    now = now or utcnow()
    signing_keys.lock(session)
    if signing_keys.has_signing_key(session):  # another instance stored it first
        return None
    rows = signing_keys.every_key(session)
    placeholder = next((row for row in rows if row.kid == signing_keys.DERIVED_KID), None)
    inherited = placeholder is not None and not algorithm_configured
    if inherited:
        assert placeholder is not None
        algorithm = as_algorithm(placeholder.algorithm)
    key = SigningKey(algorithm, derived_private_key(secret, algorithm))
    signing_keys.delete_key(session, kid=signing_keys.DERIVED_KID)
    _store(session, encryption, key, now=now, activates_at=now)
    return FirstKey(key.kid, algorithm, inherited)


@dataclass(frozen=True)
class Rotation:
    kid: str
    algorithm: Algorithm
    activates_at: datetime
    #: The keys it replaces (the active one, and any still pending) and when they retire.
    replaced: list[str]
    retires_at: datetime
    #: Keys past their retirement whose rows this rotation deleted.
    deleted: list[str]


def rotate(
    session: Session,
    *,
    encryption: KeyEncryption,
    algorithm: Algorithm,
    lead: timedelta,
    retire_after: timedelta,
    now: datetime | None = None,
) -> Rotation:
    """Add a new key that activates ``lead`` from now; the keys it replaces stop signing then
    and retire ``retire_after`` later. Rows already retired are deleted."""
    now = now or utcnow()
    signing_keys.lock(session)
    deleted = signing_keys.delete_retired(session, now=now)
    activates_at = now + lead
    retires_at = activates_at + retire_after
    replaced = signing_keys.schedule_retirement(
        session, deactivates_at=activates_at, retires_at=retires_at
    )
    key = SigningKey(algorithm, new_private_key(algorithm))
    _store(session, encryption, key, now=now, activates_at=activates_at)
    return Rotation(key.kid, algorithm, activates_at, replaced, retires_at, deleted)


class SigningKeys:
    """This process's copy of the signing keys, installed into the token codec.

    Reloaded when it is older than the refresh window and a token is issued or the JWKS is
    served, and when a token names an unknown kid (at most once per window). Verifying a token
    of a known key reads nothing. Private keys are decrypted and prepared once per kid.
    """

    def __init__(
        self,
        *,
        db: Database,
        codec: TokenCodec,
        secret: bytes,
        algorithm: Algorithm,
        algorithm_configured: bool,
        window: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._codec = codec
        self._secret = secret
        self._encryption = KeyEncryption(secret)
        self._algorithm: Algorithm = algorithm
        self._algorithm_configured = algorithm_configured
        self.window = window
        self._monotonic = monotonic
        self._loaded_at: float | None = None
        #: When a reload for an unknown kid last started.
        self._forced_at: float | None = None
        self._prepared: dict[str, SigningKey] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, db: Database, codec: TokenCodec, secret: bytes
    ) -> SigningKeys:
        return cls(
            db=db,
            codec=codec,
            secret=secret,
            algorithm=settings.jwt_algorithm,
            algorithm_configured=algorithm_configured(settings),
            window=refresh_window(settings),
        )

    async def fresh(self) -> TokenCodec:
        """The codec, with keys at most one refresh window old (or, while the database does
        not answer, the keys loaded last: they stay right until the times they carry)."""
        loaded = self._loaded_at
        if loaded is None:
            await self.load()
        elif self._monotonic() - loaded >= self.window:
            try:
                await self.load()
            except (SQLAlchemyError, OSError) as exc:  # TimeoutError among them
                logger.warning(
                    "could not reload the signing keys (%s): signing with those loaded %.0f s ago",
                    type(exc).__name__,
                    self._monotonic() - loaded,
                )
                self._loaded_at = self._monotonic()  # the next attempt, a window later
        return self._codec

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token (core.crypto.TokenCodec.verify). A kid not held
        reloads the keys once, if no reload for an unknown kid ran within the window."""
        if self._loaded_at is None:
            await self.load()
        try:
            return self._codec.verify(token)
        except UnknownSigningKey:
            now = self._monotonic()
            if self._forced_at is not None and now - self._forced_at < self.window:
                if not self._lock.locked():
                    raise
                async with self._lock:  # a reload is under way: its answer is worth waiting for
                    pass
            else:
                self._forced_at = now  # claimed before the read: one reload per window
                await self.load()
            return self._codec.verify(token)

    async def load(self) -> None:
        requested = self._monotonic()
        async with self._lock:
            if self._loaded_at is not None and self._loaded_at >= requested:
                return  # another request loaded while this one waited
            started = self._monotonic()
            rows = await self._db.read(signing_keys.usable, now=utcnow())
            if not rows:
                await self._db.write(
                    seed_first_key,
                    secret=self._secret,
                    encryption=self._encryption,
                    algorithm=self._algorithm,
                    algorithm_configured=self._algorithm_configured,
                )
                rows = await self._db.read(signing_keys.usable, now=utcnow())
            keys = [key for key in map(self._scheduled, rows) if key is not None]
            self._codec.install(keys)
            self._prepared = {key.key.kid: key.key for key in keys}
            self._loaded_at = started

    def _scheduled(self, row: StoredKey) -> ScheduledKey | None:
        key = self._prepared.get(row.kid)
        if key is None or key.algorithm != row.algorithm:
            try:
                algorithm = as_algorithm(row.algorithm)
                raw = self._encryption.open(
                    kid=row.kid, algorithm=algorithm, sealed=row.private_key or b""
                )
                key = SigningKey(algorithm, private_key_from_bytes(algorithm, raw))
            except (UnreadableKey, ValueError):
                # The fingerprint check at start-up refuses another KEK; a row that still
                # does not decrypt was altered. Without it the others still serve.
                logger.error("signing key %s does not decrypt: it is ignored", row.kid)
                return None
            if key.kid != row.kid:
                logger.error("signing key %s holds another key: it is ignored", row.kid)
                return None
        return ScheduledKey(key, row.activates_at.timestamp(), _epoch(row.retires_at))
