"""The secrets a database was set up with (as fingerprints), and what it holds that needs them."""

from __future__ import annotations

from sqlalchemy import Connection, exists, inspect, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from persistence.models import ApiKey, Client, SecretFingerprint, utcnow

#: Alembic's bookkeeping table: present in every database that `db upgrade` has set up.
VERSION_TABLE = "alembic_version"


def has_schema(connection: Connection) -> bool:
    """Whether a migration has ever run here (an empty database has no tables at all)."""
    return inspect(connection).has_table(VERSION_TABLE)


def recorded(connection: Connection) -> dict[str, str]:
    """Secret name -> the fingerprint recorded for it."""
    rows = connection.execute(select(SecretFingerprint.name, SecretFingerprint.fingerprint))
    return {row.name: row.fingerprint for row in rows}


def holds_credentials(connection: Connection) -> bool:
    """Whether any client secret or API key digest is stored (each keyed by the pepper)."""
    query = select(exists(select(Client.id)) | exists(select(ApiKey.id)))
    return bool(connection.execute(query).scalar())


def record(session: Session, *, name: str, fingerprint: str) -> str:
    """Record ``fingerprint`` for ``name`` unless one is recorded already; return the one that
    stands. Two processes starting at once on a new database agree on the first one."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"name": name, "fingerprint": fingerprint, "recorded_at": utcnow()}
    session.execute(
        insert(SecretFingerprint).values(values).on_conflict_do_nothing(index_elements=["name"])
    )
    stands = session.execute(
        select(SecretFingerprint.fingerprint).where(SecretFingerprint.name == name)
    ).scalar_one()
    return str(stands)
