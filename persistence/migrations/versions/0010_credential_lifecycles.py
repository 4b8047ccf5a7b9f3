"""Credential lifecycles: API keys that expire, show a prefix and their last use; client
secrets rotated with a grace period during which the previous secret still works.

Every column is nullable and added with a plain ALTER TABLE on both engines (as 0007 does):
a batch operation would rebuild ``clients`` on SQLite, and dropping the old table would
cascade to the API keys and idempotency keys that refer to it. Keys made before this have no
prefix (their key was never stored), no expiry and no recorded use.

Revision ID: 0010
Revises: 0009 (nothing here depends on 0009's tables)
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: (table, column, type): every column is nullable.
COLUMNS: tuple[tuple[str, str, sa.types.TypeEngine[Any]], ...] = (
    ("api_keys", "prefix", sa.String(length=16)),
    ("api_keys", "expires_at", sa.DateTime(timezone=True)),
    ("api_keys", "last_used_at", sa.DateTime(timezone=True)),
    ("clients", "previous_secret_digest", sa.String(length=64)),
    ("clients", "previous_secret_expires_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for table, name, type_ in COLUMNS:
        op.add_column(table, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite has DROP COLUMN since 3.35; none of these columns is indexed or constrained.
    for table, name, _ in reversed(COLUMNS):
        op.drop_column(table, name)
