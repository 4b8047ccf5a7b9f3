"""One page of an ordered list, by offset or by keyset cursor, with the total count.

Lists are ordered by a key (``created_at, id`` for users, ``id`` for products) that an index
serves. A cursor is the key of a row: ``after`` reads the rows whose key follows it, walking
the index from that point, so a page deep in the list costs what the first page costs;
``offset`` reads and discards ``offset`` index entries first (the contract keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    func,
    select,
    tuple_,
)
from sqlalchemy.orm import QueryableAttribute

R = TypeVar("R")
#: The values of a row's key columns, in order.
Key = tuple[Any, ...]
#: A column, as a Table's or as a model's attribute.
Col = ColumnElement[Any] | QueryableAttribute[Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    rows: Sequence[R]
    #: How many rows the filters match, on every page.
    total: int
    #: Whether rows follow the last row of this page.
    has_next: bool
    #: Whether rows precede the first row of this page; on a page read by offset, whether
    #: the offset is above zero (the page before it is an offset page).
    has_prev: bool


def _compare(key: Sequence[Col], values: Key, op: str) -> ColumnElement[bool]:
    # A row-value comparison, (a, b) > (x, y): both engines seek the (a, b) index with it.
    # The values are bound with the key columns' types (UTCDateTime's conversion included).
    left = key[0] if len(key) == 1 else tuple_(*key)
    right = values[0] if len(key) == 1 else values
    compared: ColumnElement[bool] = left > right if op == ">" else left < right
    return compared


def count_rows(connection: Connection, source: FromClause, where: list[ColumnElement[bool]]) -> int:
    return int(connection.scalar(select(func.count()).select_from(source).where(*where)) or 0)


def read_page(
    connection: Connection,
    *,
    source: FromClause,
    columns: Sequence[Col],
    key: Sequence[Col],
    where: list[ColumnElement[bool]],
    limit: int,
    offset: int = 0,
    after: Key | None = None,
    before: Key | None = None,
    total: int | None = None,
) -> Page[R]:
    """Rows of ``source`` matching ``where`` in ``key`` order: after ``after`` and before
    ``before`` when given (a page given only ``before`` ends right before it), skipping
    ``offset`` rows from the start (or, given only ``before``, from the end).

    ``total`` is how many rows ``where`` matches, when the caller has counted them in a
    cheaper way than ``COUNT(*)`` over ``where``."""
    if total is None:
        total = count_rows(connection, source, where)
    bounds = list(where)
    if after is not None:
        bounds.append(_compare(key, after, ">"))
    if before is not None:
        bounds.append(_compare(key, before, "<"))
    backwards = before is not None and after is None
    order = [column.desc() for column in key] if backwards else list(key)
    statement = select(*columns).select_from(source).where(*bounds).order_by(*order)
    fetched: list[R] = list(connection.execute(statement.offset(offset).limit(limit + 1)))  # type: ignore[arg-type]
    more = len(fetched) > limit
    rows = fetched[:limit]
    if backwards:
        rows.reverse()
    # Beyond the far end of a page there are more rows when one more was read. Beyond the
    # cursor's side there is, at least, the row the cursor came from (unless it has been
    # deleted since: then that link leads to an empty page); looking would cost a query.
    if backwards:
        has_prev, has_next = more, bool(rows)
    else:
        has_next = more or (before is not None and bool(rows))
        has_prev = offset > 0 if after is None else bool(rows)
    return Page(rows=rows, total=total, has_next=has_next, has_prev=has_prev)
