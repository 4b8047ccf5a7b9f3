"""A client may be required to use DPoP (RFC 9449): ``clients.require_dpop``.

Its token requests must then carry a DPoP proof, so that every token it is given is bound to
its key (``storefront clients create --require-dpop``). Existing clients are not required to.

Added with a plain ALTER TABLE on both engines, as 0012 added ``products.version``: Alembic's
batch mode would rebuild the table on SQLite and drop its triggers.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "clients",
        sa.Column("require_dpop", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("clients", "require_dpop")  # SQLite has DROP COLUMN since 3.35
