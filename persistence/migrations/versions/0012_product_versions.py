"""Products written over HTTP need a version for their ``ETag``: ``products.version``.

1 when a product is created, one more on every change: an update through ``PUT
/products/{id}``, and an import that changes any of its fields (``persistence.products``'
upserts set it; an import that changes nothing leaves it). Existing products start at 1.

Added with a plain ALTER TABLE on both engines, as 0007 added ``users.version``: Alembic's
batch mode would rebuild the table on SQLite, and with it drop the counting triggers of 0004
and 0006 and the FTS5 triggers of 0003, and change the rowids the FTS index refers to. No
trigger is touched: the catalogue version (0006) keeps moving as it did, since what moves it
(an insert, a delete, a change of name, description or category) is unchanged.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "products",
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("products", "version")  # SQLite has DROP COLUMN since 3.35
