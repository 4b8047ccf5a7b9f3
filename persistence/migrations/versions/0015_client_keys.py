"""Clients that authenticate with a signed assertion (RFC 7523 ``private_key_jwt``) rather
than a secret: ``clients.jwks`` (their public keys, a JWK Set as JSON) and
``clients.jwks_uri`` (where they publish it instead).

Such a client has no secret. ``clients.secret_digest`` stays NOT NULL and holds the empty
string for it, which no digest (64 hex digits) ever equals: SQLite cannot drop a NOT NULL
constraint in place, and Alembic's batch mode would rebuild the table (copy, drop, rename),
which no migration here does (0012 says why). Both new columns are plain ALTER TABLE ADD
COLUMN on both engines; existing clients get neither and keep their secret.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("jwks", sa.Text(), nullable=True))
    op.add_column("clients", sa.Column("jwks_uri", sa.String(2048), nullable=True))


def downgrade() -> None:
    op.drop_column("clients", "jwks_uri")  # SQLite has DROP COLUMN since 3.35
    op.drop_column("clients", "jwks")
