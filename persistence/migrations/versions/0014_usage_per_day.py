"""Requests counted per day, per client and per API key: ``usage_days``.

One row per UTC day, client and key (``key_id`` is ``''`` for requests made with the client's
access tokens: an empty string rather than NULL, so that the primary key, and with it
``INSERT … ON CONFLICT``, covers those rows too on both engines). ``accepted`` and ``refused``
only ever grow: each server adds what it counted since its last write
(``persistence.usage.add_counts``), so several instances add up exactly.

No foreign key: the rows outlive nothing they refer to (clients and keys are disabled and
revoked, never deleted), and a check per upsert would be work for nothing.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("accepted", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("refused", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("day", "client_id", "key_id", name=op.f("pk_usage_days")),
    )


def downgrade() -> None:
    op.drop_table("usage_days")
