"""Recognising which constraint a failed statement violated, on every engine."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError


def violates(exc: IntegrityError, constraint: str, *columns: str) -> bool:
    """Whether ``exc`` is a unique violation of ``constraint``.

    PostgreSQL names the constraint; SQLite names the index for expression indexes and the
    columns (``UNIQUE constraint failed: users.email``) for plain ones.
    """
    orig = exc.orig
    name = getattr(orig, "constraint_name", None)  # asyncpg
    if name is None:
        name = getattr(getattr(orig, "diag", None), "constraint_name", None)  # psycopg
    if name is not None:
        return bool(name == constraint)
    text = str(orig)
    return constraint in text or any(col in text for col in columns)
