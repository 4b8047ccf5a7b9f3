"""Safe retries and safe concurrent writes.

- ``users.version``: 1 when created, one more on every update; the strong ETag of
  ``GET /users/{id}`` and what ``If-Match`` is compared with. Existing users start at 1.
- ``idempotency_keys``: each client's ``Idempotency-Key`` of ``POST /users`` and the response
  it got, kept for STOREFRONT_IDEMPOTENCY_KEY_TTL. Expired rows are purged in bounded batches
  by ``ix_idempotency_keys_expires_at``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE on both engines: a batch operation may rebuild the table on SQLite,
    # which would drop migration 0004's counting triggers with it.
    op.add_column(
        "users", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("claim", sa.String(length=40), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_idempotency_keys_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "operation", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_column("users", "version")  # SQLite has DROP COLUMN since 3.35
