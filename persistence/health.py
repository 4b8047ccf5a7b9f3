"""Is the database there, and at the schema this code expects?"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def schema_revision(session: Session) -> str | None:
    """The Alembic revision the database is at (None when it was never migrated).

    Raises when the database cannot be reached at all.
    """
    session.execute(text("SELECT 1"))
    try:
        row = (session.execute(text("SELECT version_num FROM alembic_version"))).first()
    except DBAPIError:  # no alembic_version table: never migrated
        return None
    return None if row is None else str(row[0])
