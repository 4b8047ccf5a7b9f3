"""Users: queries only. Reads take a Connection and return rows (or, those that are one
statement run alone, the Database: ``Database.one``); writes take a Session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, Row, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import EmailTaken, UserNotFound
from core.ids import new_id
from persistence import idempotency
from persistence._constraints import violates
from persistence.counts import table_total, table_total_column
from persistence.db import Database, PreparedQuery
from persistence.models import User, utcnow
from persistence.paging import Page, read_page
from persistence.rows import Precondition, storable_id

EMAIL_INDEX = "uq_users_email_lower"


def _flush_checking_email(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        if violates(exc, EMAIL_INDEX):
            raise EmailTaken() from None
        raise


def create_user(session: Session, *, name: str, email: str, password_hash: str) -> User:
    user = User(
        id=new_id("user_"),
        name=name,
        email=email,
        password_hash=password_hash,
        created_at=utcnow(),
        version=1,  # set here too, so that the caller knows it without reading it back
    )
    session.add(user)
    _flush_checking_email(session)
    return user


def existing_emails(session: Session, *, emails: Sequence[str]) -> set[str]:
    """Which of ``emails`` a user has already, lower-cased: compared as the unique index
    compares them."""
    lowered = func.lower(User.email)
    found = session.scalars(select(lowered).where(lowered.in_([e.lower() for e in emails])))
    return set(found)


#: What a reader may see of a user: everything but the password hash.
PUBLIC = (User.id, User.name, User.email, User.created_at, User.updated_at, User.version)


class PublicUser(NamedTuple):
    id: str
    name: str
    email: str
    created_at: datetime
    updated_at: datetime | None
    version: int


#: id, name, email, created_at, updated_at, version
UserRow = Row[str, str, str, datetime, datetime | None, int] | PublicUser

_BY_ID = PreparedQuery(select(*PUBLIC).where(User.id == bindparam("user_id")), PublicUser)
_PAGE = PreparedQuery(
    select(*PUBLIC, table_total_column(User))
    .order_by(User.created_at, User.id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset")),
    lambda *values: (PublicUser(*values[:-1]), values[-1]),
)


async def get_user(db: Database, *, user_id: str) -> PublicUser:
    row: PublicUser | None = None
    if storable_id(user_id):
        row = await db.one(_BY_ID, user_id=user_id)
    if row is None:
        raise UserNotFound()
    return row


#: A user's place in the list order: (created_at, id).
UserKey = tuple[datetime, str]


async def list_users(
    db: Database,
    *,
    limit: int,
    offset: int = 0,
    after: UserKey | None = None,
    before: UserKey | None = None,
) -> Page[UserRow]:
    """A page of users oldest first, by offset or after/before a key (``persistence.paging``);
    every form walks ``ix_users_created_at_id``. The total is the users counter."""
    if after is None and before is None:
        # The common request (a first page, or an offset page): one prepared statement, run
        # alone, that reads the users counter beside the rows. A page past the end has no row
        # to carry it.
        fetched = await db.all(_PAGE, limit=limit + 1, offset=offset)
        counted = fetched[0][1] if fetched else None
        return Page(
            rows=[user for user, _ in fetched[:limit]],
            total=await db.read(table_total, User) if counted is None else int(counted),
            has_next=len(fetched) > limit,
            has_prev=offset > 0,
        )
    return await db.read(_list_users_by_key, limit=limit, offset=offset, after=after, before=before)


def _list_users_by_key(
    connection: Connection,
    *,
    limit: int,
    offset: int,
    after: UserKey | None,
    before: UserKey | None,
) -> Page[UserRow]:
    total = table_total(connection, User)
    return read_page(
        connection,
        source=User.__table__,
        columns=PUBLIC,
        key=(User.created_at, User.id),
        where=[],
        limit=limit,
        offset=offset,
        after=after,
        before=before,
        total=total,
    )


def _locked_user(session: Session, user_id: str, precondition: Precondition | None) -> User:
    """The user, its row locked until the transaction ends, if ``precondition`` (None: none)
    holds for it.

    The check and the write that follows are one transaction, and the row cannot change in
    between: FOR UPDATE makes a concurrent writer of it on PostgreSQL wait for this one's
    commit (and then read the version this one wrote); SQLite's writers are serialised by
    BEGIN IMMEDIATE. A user that does not exist is a 404 whatever the precondition
    (RFC 9110 §13.2.1: preconditions are evaluated only where the answer would be a 2xx).
    """
    user = (
        session.scalar(select(User).where(User.id == user_id).with_for_update())
        if storable_id(user_id)
        else None
    )
    if user is None:
        raise UserNotFound()
    if precondition is not None:
        precondition(user.version, user.updated_at or user.created_at)
    return user


def update_user(
    session: Session,
    *,
    user_id: str,
    precondition: Precondition | None = None,
    name: str | None = None,
    email: str | None = None,
    password_hash: str | None = None,
) -> User:
    """Update the user if ``precondition`` holds for it; its version goes up by one, and
    updated_at only moves forward."""
    user = _locked_user(session, user_id, precondition)
    if name is not None:
        user.name = name
    if email is not None:
        user.email = email
    if password_hash is not None:
        user.password_hash = password_hash
    now = utcnow()
    user.updated_at = max(now, user.updated_at) if user.updated_at else now
    user.version += 1
    _flush_checking_email(session)
    return user


def delete_user(
    session: Session, *, user_id: str, precondition: Precondition | None = None
) -> None:
    """Delete the user if ``precondition`` holds for it, and forget, in the same
    transaction, the stored Idempotency-Key responses that carry it: personal data that was
    deleted is never served again, not even as a replay."""
    session.delete(_locked_user(session, user_id, precondition))
    session.flush()
    idempotency.forget(session, resource_id=user_id)
