"""Requests per day, per client and per API key (``usage_days``): added to in batches, read by
``storefront usage``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from persistence.models import UsageDay

#: The ``key_id`` of requests made with a client's access tokens rather than one of its keys.
NO_KEY = ""


@dataclass(frozen=True, slots=True)
class DayCount:
    """Requests of one client and key on one day: counted since the last write, or stored."""

    day: date
    client_id: str
    key_id: str
    accepted: int
    refused: int


def add_counts(session: Session, *, counts: Sequence[DayCount]) -> None:
    """Add each count to its stored row, creating the rows not stored yet: one statement for
    the whole batch. An addition (``accepted = accepted + excluded.accepted``), never an
    overwrite, so that the writes of several instances add up exactly."""
    if not counts:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = (postgresql_insert if postgres else sqlite_insert)(UsageDay)
    statement = insert.on_conflict_do_update(
        index_elements=[UsageDay.day, UsageDay.client_id, UsageDay.key_id],
        set_={
            "accepted": UsageDay.accepted + insert.excluded.accepted,
            "refused": UsageDay.refused + insert.excluded.refused,
        },
    )
    session.execute(
        statement,
        [
            {
                "day": c.day,
                "client_id": c.client_id,
                "key_id": c.key_id,
                "accepted": c.accepted,
                "refused": c.refused,
            }
            for c in counts
        ],
    )


def usage_since(
    session: Session, *, since: date, client_id: str | None = None, key_id: str | None = None
) -> list[DayCount]:
    """The stored counts from ``since`` on, of one client or one key when given: by day, then
    client, then key."""
    query = select(UsageDay).where(UsageDay.day >= since)
    if client_id is not None:
        query = query.where(UsageDay.client_id == client_id)
    if key_id is not None:
        query = query.where(UsageDay.key_id == key_id)
    query = query.order_by(UsageDay.day, UsageDay.client_id, UsageDay.key_id)
    return [
        DayCount(row.day, row.client_id, row.key_id, row.accepted, row.refused)
        for row in session.scalars(query)
    ]
