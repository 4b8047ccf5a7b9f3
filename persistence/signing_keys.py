"""The signing keys (migration 0009): rows in, rows out. What they mean, and the encryption of
their private keys, are the access layer's (storefront/access/signing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, or_, select, text, update
from sqlalchemy.orm import Session

from persistence.models import SigningKeyRow

#: The kid of the placeholder that migration 0009 leaves for the key derived from the secret.
DERIVED_KID = "derived-from-secret"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A row of ``signing_keys`` (persistence.models.SigningKeyRow says what each field is)."""

    kid: str
    algorithm: str
    private_key: bytes | None
    public_jwk: str | None
    created_at: datetime
    activates_at: datetime
    deactivates_at: datetime | None
    retires_at: datetime | None


_COLUMNS = (
    SigningKeyRow.kid,
    SigningKeyRow.algorithm,
    SigningKeyRow.private_key,
    SigningKeyRow.public_jwk,
    SigningKeyRow.created_at,
    SigningKeyRow.activates_at,
    SigningKeyRow.deactivates_at,
    SigningKeyRow.retires_at,
)


def lock(session: Session) -> None:
    """Serialise the writers of the table until the transaction ends (readers go on), so that
    two first starts, or two rotations, never both decide that they make the next key. SQLite
    writers hold the database's write lock already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE signing_keys IN EXCLUSIVE MODE"))


def usable(connection: Connection, *, now: datetime) -> list[StoredKey]:
    """The keys not retired at ``now``, with their private keys, oldest first."""
    query = (
        select(*_COLUMNS)
        .where(SigningKeyRow.private_key.is_not(None))
        .where(or_(SigningKeyRow.retires_at.is_(None), SigningKeyRow.retires_at > now))
        .order_by(SigningKeyRow.activates_at, SigningKeyRow.kid)
    )
    return [StoredKey(*row) for row in connection.execute(query)]


def every_key(session: Session | Connection) -> list[StoredKey]:
    """Every row, the placeholder and retired keys included, oldest first."""
    query = select(*_COLUMNS).order_by(SigningKeyRow.activates_at, SigningKeyRow.kid)
    return [StoredKey(*row) for row in session.execute(query)]


def has_signing_key(session: Session | Connection) -> bool:
    """Whether a key is stored (0009's placeholder row, which holds none, aside)."""
    query = select(SigningKeyRow.kid).where(SigningKeyRow.private_key.is_not(None)).limit(1)
    return session.execute(query).first() is not None


def insert(
    session: Session,
    *,
    kid: str,
    algorithm: str,
    private_key: bytes,
    public_jwk: str | None,
    created_at: datetime,
    activates_at: datetime,
) -> None:
    session.add(
        SigningKeyRow(
            kid=kid,
            algorithm=algorithm,
            private_key=private_key,
            public_jwk=public_jwk,
            created_at=created_at,
            activates_at=activates_at,
        )
    )
    session.flush()


def delete_key(session: Session, *, kid: str) -> None:
    session.execute(delete(SigningKeyRow).where(SigningKeyRow.kid == kid))


def delete_retired(session: Session, *, now: datetime) -> list[str]:
    """Delete the keys retired by ``now``; their kids."""
    retired = list(
        session.execute(
            select(SigningKeyRow.kid)
            .where(SigningKeyRow.retires_at.is_not(None))
            .where(SigningKeyRow.retires_at <= now)
        ).scalars()
    )
    if retired:
        session.execute(delete(SigningKeyRow).where(SigningKeyRow.kid.in_(retired)))
    return retired


def schedule_retirement(
    session: Session, *, deactivates_at: datetime, retires_at: datetime
) -> list[str]:
    """Give every key that has no retirement yet (the active one, and any still pending) its
    end of signing and its retirement; their kids."""
    kids = list(
        session.execute(
            select(SigningKeyRow.kid)
            .where(SigningKeyRow.retires_at.is_(None))
            .where(SigningKeyRow.private_key.is_not(None))
        ).scalars()
    )
    if kids:
        session.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid.in_(kids))
            .values(deactivates_at=deactivates_at, retires_at=retires_at)
        )
    return kids
