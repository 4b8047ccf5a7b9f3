"""Is the database there, and at the schema this code expects?"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError


def schema_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at (None when it was never migrated).

    Raises when the database cannot be reached at all.
    """
    connection.execute(text("SELECT 1"))
    try:
        row = (connection.execute(text("SELECT version_num FROM alembic_version"))).first()
    except DBAPIError:  # no alembic_version table: never migrated
        return None
    return None if row is None else str(row[0])
