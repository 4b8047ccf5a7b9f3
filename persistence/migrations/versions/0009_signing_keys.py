"""Signing keys in the database, encrypted, with a life cycle: rotation without an outage.

Until now one key was derived from STOREFRONT_JWT_SECRET and STOREFRONT_JWT_ALGORITHM, and
changing either refused every outstanding token. Keys now live here, each sealed under a
key-encryption key derived from that secret (persistence.models.SigningKeyRow).

The migration cannot derive the key that servers have been signing with (it needs the
secret), so on a database that holds clients (tokens may be outstanding) it leaves a
placeholder row, with the algorithm those servers used unless configured otherwise: HS256,
the default before this release. The first process that has the secret replaces it with the
key itself, under the same kid (storefront/access/signing.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: persistence.signing_keys.DERIVED_KID, spelled out: a migration never imports app code.
DERIVED_KID = "derived-from-secret"


def upgrade() -> None:
    table = op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=8), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=True),
        sa.Column("public_jwk", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activates_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deactivates_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    has_clients = op.get_bind().execute(sa.text("SELECT 1 FROM clients LIMIT 1")).first()
    if has_clients is not None:
        # Naive UTC on SQLite, as persistence.models.UTCDateTime stores it.
        now = datetime.now(UTC)
        if op.get_bind().dialect.name == "sqlite":
            now = now.replace(tzinfo=None)
        op.bulk_insert(
            table,
            [
                {
                    "kid": DERIVED_KID,
                    "algorithm": "HS256",
                    "private_key": None,
                    "public_jwk": None,
                    "created_at": now,
                    "activates_at": now,
                    "deactivates_at": None,
                    "retires_at": None,
                }
            ],
        )


def downgrade() -> None:
    op.drop_table("signing_keys")
