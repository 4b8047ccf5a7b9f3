"""OAuth clients and their API keys. Reads that serve requests are one statement each, run
alone (``Database.one``); the rest take a Session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, case, select, update
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.ids import new_id
from persistence.db import Database, PreparedQuery
from persistence.models import ApiKey, Client, utcnow

#: Characters of a new API key kept to show it by: "sk_" and 8 of its random characters (48
#: of 256 bits), enough to tell a deployment's keys apart, far too few to guess the rest.
KEY_PREFIX_CHARS = 11
#: Last use is written at most this often per key (storefront.access.last_use).
LAST_USE_INTERVAL = timedelta(seconds=60)
#: The secret digest of a client without a secret (it authenticates with ``private_key_jwt``):
#: no digest equals it (migration 0015 says why it is not NULL).
NO_SECRET = ""


class ClientRow(NamedTuple):
    id: str
    secret_digest: str
    scopes: str
    disabled_at: datetime | None
    rate_limit: str | None
    #: The secret the last rotation replaced, accepted until previous_secret_expires_at.
    previous_secret_digest: str | None
    previous_secret_expires_at: datetime | None
    #: The client's public keys (a JWK Set as JSON), or where it publishes them; both None
    #: for a client that authenticates with its secret only.
    jwks: str | None = None
    jwks_uri: str | None = None
    #: Its token requests must carry a DPoP proof (RFC 9449; migration 0016).
    require_dpop: bool = False

    @property
    def has_secret(self) -> bool:
        return self.secret_digest != NO_SECRET

    @property
    def has_keys(self) -> bool:
        return self.jwks is not None or self.jwks_uri is not None


class KeyRow(NamedTuple):
    key_id: str
    client_id: str
    scopes: str
    rate_limit: str | None
    #: Kept with the row in the auth cache and compared at every use, so that a remembered
    #: key never outlives its expiry.
    expires_at: datetime | None
    #: The key's own rate limits (None: the client's ``rate_limit``, or the server's).
    key_limits: str | None = None
    #: The key's number of uses (None: none) and their refill ("1000/month", or None).
    uses: int | None = None
    uses_refill: str | None = None
    #: When the key was made: its refill periods are counted from it.
    created_at: datetime | None = None


_CLIENT_BY_ID = PreparedQuery(
    select(
        Client.id,
        Client.secret_digest,
        Client.scopes,
        Client.disabled_at,
        Client.rate_limit,
        Client.previous_secret_digest,
        Client.previous_secret_expires_at,
        Client.jwks,
        Client.jwks_uri,
        Client.require_dpop,
    ).where(Client.id == bindparam("client_id")),
    ClientRow,
)


class ClientStatus(NamedTuple):
    disabled_at: datetime | None
    rate_limit: str | None


_STATUS_BY_ID = PreparedQuery(
    select(Client.disabled_at, Client.rate_limit).where(Client.id == bindparam("client_id")),
    ClientStatus,
)
_ACTIVE_KEY_BY_DIGEST = PreparedQuery(
    select(
        ApiKey.id.label("key_id"),
        Client.id.label("client_id"),
        Client.scopes,
        Client.rate_limit,
        ApiKey.expires_at,
        ApiKey.rate_limits.label("key_limits"),
        ApiKey.uses,
        ApiKey.uses_refill,
        ApiKey.created_at,
    )
    .join(Client, Client.id == ApiKey.client_id)
    .where(
        ApiKey.digest == bindparam("digest"),
        ApiKey.revoked_at.is_(None),
        Client.disabled_at.is_(None),
    ),
    KeyRow,
)


class ClientNotFound(NotFound):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"No client with id {client_id!r}.")


class ApiKeyNotFound(NotFound):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key with id {key_id!r}.")


def create_client(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    secret_digest: str,
    jwks: str | None = None,
    jwks_uri: str | None = None,
    require_dpop: bool = False,
) -> Client:
    """A new client; ``secret_digest`` NO_SECRET (with ``jwks`` or ``jwks_uri``) for one that
    authenticates with a signed assertion only."""
    client = Client(
        id=new_id("cli_"),
        name=name,
        scopes=" ".join(scopes),
        secret_digest=secret_digest,
        created_at=utcnow(),
        jwks=jwks,
        jwks_uri=jwks_uri,
        require_dpop=require_dpop,
    )
    session.add(client)
    session.flush()
    return client


def list_clients(session: Session) -> Sequence[Client]:
    return (session.scalars(select(Client).order_by(Client.created_at, Client.id))).all()


async def find_client(db: Database, *, client_id: str) -> ClientRow | None:
    return await db.one(_CLIENT_BY_ID, client_id=client_id)


def find_client_by_name(session: Session, *, name: str) -> Client | None:
    return session.scalar(select(Client).where(Client.name == name).limit(1))


async def active_client_limit(db: Database, *, client_id: str) -> tuple[bool, str | None]:
    """Whether the client exists and is enabled, and its own rate limit (None: the default)."""
    row = await db.one(_STATUS_BY_ID, client_id=client_id)
    if row is None:
        return False, None
    return row[0] is None, row[1]


def set_rate_limit(session: Session, *, client_id: str, rate_limit: str | None) -> None:
    result = session.execute(
        update(Client).where(Client.id == client_id).values(rate_limit=rate_limit)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise ClientNotFound(client_id)


def set_key_rate_limit(session: Session, *, key_id: str, rate_limit: str | None) -> None:
    """Give an API key its own limits (``;``-separated), or None: its client's again."""
    result = session.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(rate_limits=rate_limit)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise ApiKeyNotFound(key_id)


def spend_use(session: Session, *, key_id: str, period: int, quota: int) -> int | None:
    """Spend one of the key's uses in refill period ``period`` (0 without a refill), of which
    it has ``quota``: the uses spent in the period after this one, or None when none was left
    (nothing written). One conditional UPDATE, so that concurrent spenders (other instances on
    the same database too) never spend more than ``quota``; a new period starts at one."""
    result = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.uses_period != period) | (ApiKey.uses_spent < quota),
        )
        .values(
            uses_spent=case((ApiKey.uses_period == period, ApiKey.uses_spent + 1), else_=1),
            uses_period=period,
        )
        .returning(ApiKey.uses_spent)
    )
    spent = result.scalar_one_or_none()
    return None if spent is None else int(spent)


def spent_uses(connection: Connection, *, key_id: str, period: int) -> int:
    """The key's uses spent in refill period ``period``, as ``spend_use`` counts them."""
    row = connection.execute(
        select(ApiKey.uses_spent, ApiKey.uses_period).where(ApiKey.id == key_id)
    ).first()
    return 0 if row is None or row[1] != period else int(row[0])


def rotate_client_secret(
    session: Session, *, client_id: str, secret_digest: str, previous_until: datetime | None
) -> None:
    """Make ``secret_digest`` the client's secret. The secret it replaces keeps working until
    ``previous_until`` (None: it stops at once); it replaces any earlier previous secret, so
    at most two secrets work at any time."""
    if previous_until is None:
        keep: dict[str, object] = {
            "previous_secret_digest": None,
            "previous_secret_expires_at": None,
        }
    else:
        # The current digest, read by the UPDATE itself: no read-then-write race with another
        # rotation.
        keep = {
            "previous_secret_digest": Client.secret_digest,
            "previous_secret_expires_at": previous_until,
        }
    result = session.execute(
        update(Client).where(Client.id == client_id).values(secret_digest=secret_digest, **keep)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise ClientNotFound(client_id)


def set_client_keys(
    session: Session, *, client_id: str, jwks: str | None, jwks_uri: str | None
) -> None:
    """Replace the client's public keys (``private_key_jwt``) with a JWK Set, or with the URL
    where the client publishes one; the keys held before stop working with this commit."""
    result = session.execute(
        update(Client).where(Client.id == client_id).values(jwks=jwks, jwks_uri=jwks_uri)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise ClientNotFound(client_id)


def find_client_row(session: Session, *, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise ClientNotFound(client_id)
    return client


def set_client_secret(session: Session, *, client_id: str, secret_digest: str) -> None:
    """Replace the client's secret with no grace: every earlier secret stops working."""
    rotate_client_secret(
        session, client_id=client_id, secret_digest=secret_digest, previous_until=None
    )


def disable_client(session: Session, *, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise ClientNotFound(client_id)
    if client.disabled_at is None:
        client.disabled_at = utcnow()
    session.flush()
    return client


def create_api_key(
    session: Session,
    *,
    client_id: str,
    digest: str,
    prefix: str | None = None,
    expires_at: datetime | None = None,
    uses: int | None = None,
    uses_refill: str | None = None,
) -> ApiKey:
    if session.get(Client, client_id) is None:
        raise ClientNotFound(client_id)
    key = ApiKey(
        id=new_id("key_"),
        client_id=client_id,
        digest=digest,
        created_at=utcnow(),
        prefix=prefix,
        expires_at=expires_at,
        uses=uses,
        uses_refill=uses_refill,
    )
    session.add(key)
    session.flush()
    return key


def list_api_keys(session: Session, *, client_id: str | None = None) -> Sequence[ApiKey]:
    """Every API key, revoked ones too, oldest first; only ``client_id``'s when given (a client
    that does not exist is an error, not an empty list)."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if client_id is not None:
        if session.get(Client, client_id) is None:
            raise ClientNotFound(client_id)
        query = query.where(ApiKey.client_id == client_id)
    return session.scalars(query).all()


async def find_active_key(db: Database, *, digest: str) -> KeyRow | None:
    """The unrevoked key with this digest and its enabled client: ``key_id``, ``client_id``,
    ``scopes``, ``rate_limit``, and ``expires_at``, which the caller compares with the time
    (an expired key is found: it is refused as expired, not as unknown)."""
    return await db.one(_ACTIVE_KEY_BY_DIGEST, digest=digest)


def record_key_use(session: Session, *, key_id: str, now: datetime) -> bool:
    """Set the key's last use to ``now`` unless it was set within LAST_USE_INTERVAL; whether
    it was. The condition is the database's, so that several instances together write about
    once a minute per key as well."""
    result = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USE_INTERVAL),
        )
        .values(last_used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoke_api_key(session: Session, *, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    session.flush()
    return key
