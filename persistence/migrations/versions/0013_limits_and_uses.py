"""Several named rate limits per client and per API key, and API keys with a number of uses.

- ``clients.rate_limits`` takes over from ``clients.rate_limit`` (its values copied): one or
  more limits in the ``limits`` syntax separated by ``;`` ("100/minute;10000/day"), too long
  for the 32 characters of the old column. A new column rather than a wider one: SQLite has no
  ALTER COLUMN, and Alembic's batch mode would rebuild the table.
- ``api_keys.rate_limits``: the key's own limits, as the client's (None: the client's).
- ``api_keys.uses``, ``uses_refill``: a key that stops after ``uses`` accepted requests,
  refilled to the refill's count every refill period ("1000/month") when there is one.
- ``api_keys.uses_spent``, ``uses_period``: the uses spent in the current refill period
  (period 0 without a refill), kept here when the rate-limit store is in memory (with Redis,
  Redis counts them: storefront.access.ratelimit).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("rate_limits", sa.String(length=200), nullable=True))
    op.execute("UPDATE clients SET rate_limits = rate_limit")
    op.drop_column("clients", "rate_limit")  # SQLite has DROP COLUMN since 3.35
    op.add_column("api_keys", sa.Column("rate_limits", sa.String(length=200), nullable=True))
    op.add_column("api_keys", sa.Column("uses", sa.Integer(), nullable=True))
    op.add_column("api_keys", sa.Column("uses_refill", sa.String(length=32), nullable=True))
    for name in ("uses_spent", "uses_period"):
        op.add_column(
            "api_keys",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )


def downgrade() -> None:
    for name in ("uses_period", "uses_spent", "uses_refill", "uses", "rate_limits"):
        op.drop_column("api_keys", name)
    op.add_column("clients", sa.Column("rate_limit", sa.String(length=32), nullable=True))
    # The first limit of several (the column holds one); one too long for it is dropped.
    op.execute(
        "UPDATE clients SET rate_limit = CASE"
        " WHEN rate_limits IS NULL OR length(rate_limits) > 32 THEN NULL"
        " WHEN instr(rate_limits, ';') > 0 THEN substr(rate_limits, 1, instr(rate_limits, ';') - 1)"
        " ELSE rate_limits END"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE clients SET rate_limit = CASE"
        " WHEN rate_limits IS NULL THEN NULL"
        " WHEN length(split_part(rate_limits, ';', 1)) > 32 THEN NULL"
        " ELSE split_part(rate_limits, ';', 1) END"
    )
    op.drop_column("clients", "rate_limits")
