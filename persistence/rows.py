"""What the one-row readers and writers (``persistence.users``, ``persistence.product_records``)
share: which ids can name a row, and the precondition a write is held to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

#: A write's precondition: called with the locked row's version and the time of its last
#: change (None where none is kept, as for products), it raises ``PreconditionFailed`` when the
#: write must not go ahead (storefront.http.conditional reads it from the request's header
#: fields).
Precondition = Callable[[int, datetime | None], None]


def storable_id(row_id: str) -> bool:
    """Whether ``row_id`` can name a row. Ids are server-made and never hold NUL, which
    PostgreSQL cannot even compare text against: such an id names nothing, it is not a server
    error."""
    return "\x00" not in row_id
