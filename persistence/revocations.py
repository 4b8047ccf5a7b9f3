"""Revoked access tokens (RFC 7009): a list of jti, each entry kept until its token expires."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from persistence.models import RevokedToken, utcnow


def revoke(session: Session, *, jti: str, client_id: str, expires_at: int) -> None:
    """Record ``jti`` as revoked until ``expires_at`` (epoch seconds); revoking twice is one.

    Entries of tokens that have expired are purged here, on the rare revocation, never on the
    request path; the index on expires_at makes that a read of the old rows only.
    """
    now = utcnow()
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {
        "jti": jti,
        "client_id": client_id,
        "expires_at": datetime.fromtimestamp(expires_at, UTC),
        "revoked_at": now,
    }
    session.execute(
        insert(RevokedToken).values(values).on_conflict_do_nothing(index_elements=["jti"])
    )


def is_revoked(connection: Connection, *, jti: str) -> bool:
    found = connection.execute(select(RevokedToken.jti).where(RevokedToken.jti == jti)).first()
    return found is not None
