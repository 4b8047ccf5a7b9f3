"""Fingerprints of the pepper and the JWT signing key the database was set up with.

Client secrets and API keys are stored as HMACs under the pepper, and tokens are signed with
the signing key; both used to come from the working directory (or the environment) alone, so
a command run from another directory silently made a new pepper and printed a client whose
secret the server refused. The database now remembers an HMAC of a fixed label under each
(core.crypto.fingerprint) and every start compares (storefront/keyring.py).

The table starts empty: a migration does not know the secrets. The first server or command
that has them records them; a database that already holds credentials and has no pepper at
hand is refused rather than given a new one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_fingerprints",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_secret_fingerprints")),
    )


def downgrade() -> None:
    op.drop_table("secret_fingerprints")
