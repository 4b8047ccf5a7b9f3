"""Idempotent responses that carry a user are forgotten with the user:
``idempotency_keys.resource_id``.

A stored response of ``POST /users`` holds the created user's name and email. The column
names the resource a stored response carries (indexed), so that deleting the user forgets
the response in the delete's own transaction (``persistence.users.delete_user``), and a
replay of its key answers 410 instead of the deleted person's data.

Responses stored before this are given their resource from their body's ``id``, and those
whose user is already gone are forgotten here: they would otherwise be replayed until their
keys expire. Added with a plain ALTER TABLE on both engines, as 0007 and 0010 do.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: The status a forgotten response is replayed with (persistence.idempotency.GONE).
GONE = 410


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("resource_id", sa.String(40), nullable=True))
    op.create_index("ix_idempotency_keys_resource_id", "idempotency_keys", ["resource_id"])
    connection = op.get_bind()
    # Keys live for a day at most (STOREFRONT_IDEMPOTENCY_KEY_TTL): few rows, read at once.
    stored = connection.execute(
        sa.text(
            "select client_id, operation, key, body from idempotency_keys "
            "where status is not null and body is not null"
        )
    ).all()
    for client_id, operation, key, body in stored:
        try:
            resource_id = json.loads(body).get("id")
        except (ValueError, AttributeError):  # not a JSON object: it carries no resource
            continue
        if not isinstance(resource_id, str):
            continue
        connection.execute(
            sa.text(
                "update idempotency_keys set resource_id = :resource_id "
                "where client_id = :client_id and operation = :operation and key = :key"
            ),
            {
                "resource_id": resource_id,
                "client_id": client_id,
                "operation": operation,
                "key": key,
            },
        )
    connection.execute(
        sa.text(
            "update idempotency_keys set status = :gone, headers = null, body = null "
            "where resource_id is not null "
            "and not exists (select 1 from users where users.id = idempotency_keys.resource_id)"
        ),
        {"gone": GONE},
    )


def downgrade() -> None:
    # Forgotten responses stay forgotten: their 410 has no body to replay, so they go.
    op.execute(sa.text(f"delete from idempotency_keys where status = {GONE} and body is null"))
    op.drop_index("ix_idempotency_keys_resource_id", table_name="idempotency_keys")
    op.drop_column("idempotency_keys", "resource_id")  # SQLite has DROP COLUMN since 3.35
