"""/users"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.validation import clean_email, clean_name
from handlers._common import (
    PRIVATE,
    Body,
    absolute_url,
    match_cursor,
    paging_headers,
    rfc3339,
)
from persistence import users
from persistence.models import User
from persistence.rows import Precondition
from persistence.users import PublicUser, UserKey, UserRow
from storefront.http import conditional, idempotency
from storefront.http.deps import header, services


def _public(user: User | UserRow | PublicUser) -> Body:
    body: Body = {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "created_at": rfc3339(user.created_at),
    }
    if user.updated_at is not None:
        body["updated_at"] = rfc3339(user.updated_at)
    return body


#: A user cursor: microseconds since the epoch of created_at, a dot, the id. The spec's pattern
#: for ``after`` / ``before`` is this one, and every string it admits decodes: a schema-valid
#: cursor is never refused (a time beyond what a datetime holds is clamped, which keeps the
#: order). Clients treat cursors as opaque; the format may change.
USER_CURSOR = re.compile(r"^(-?[0-9]{1,18})\.([A-Za-z0-9_-]{1,40})$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_EARLIEST = (datetime.min.replace(tzinfo=UTC) - EPOCH) // MICROSECOND
_LATEST = (datetime.max.replace(tzinfo=UTC) - EPOCH) // MICROSECOND


def user_cursor(user: UserRow) -> str | None:
    cursor = f"{(user.created_at - EPOCH) // MICROSECOND}.{user.id}"
    return cursor if USER_CURSOR.match(cursor) else None


def parse_user_cursor(parameter: str, cursor: str | None) -> UserKey | None:
    found = match_cursor(parameter, cursor, USER_CURSOR)
    if found is None:
        return None
    micros = min(max(int(found.group(1)), _EARLIEST), _LATEST)
    return EPOCH + micros * MICROSECOND, found.group(2)


async def list_users(
    limit: int, offset: int, after: str | None = None, before: str | None = None
) -> tuple[list[Body], int, dict[str, str]]:
    page = await users.list_users(
        services().db,
        limit=limit,
        offset=offset,
        after=parse_user_cursor("after", after),
        before=parse_user_cursor("before", before),
    )
    headers = paging_headers(page, limit=limit, offset=offset, cursor=user_cursor)
    return [_public(u) for u in page.rows], 200, headers | PRIVATE


async def create_user(body: Body) -> tuple[Body, int, dict[str, str]]:
    svc = services()
    name, email = clean_name(body["name"]), clean_email(body["email"])
    key = idempotency.key_of(header(idempotency.HEADER))
    location = absolute_url("/users/")  # read here: create runs on a worker thread on SQLite

    def create(session: Session, password_hash: str) -> tuple[Body, int, dict[str, str]]:
        user = users.create_user(session, name=name, email=email, password_hash=password_hash)
        headers = {"Location": location + user.id, "ETag": conditional.etag(user.version)}
        return _public(user), 201, headers | PRIVATE

    def hash_password() -> Awaitable[str]:
        return svc.passwords.hash(body["password"])

    if key is None:
        return await svc.db.write(create, await hash_password())
    return await idempotency.run_once(
        key, operation="create_user", request_body=body, prepare=hash_password, perform=create
    )


async def get_user(id_: str) -> tuple[Body | None, int, dict[str, str]]:
    user = await users.get_user(services().db, user_id=id_)
    # A 304 carries what the 200 would: the tag, and that it must not be stored.
    headers = {"ETag": conditional.etag(user.version)} | PRIVATE
    if conditional.not_modified(header("if-none-match"), user.version):
        return None, 304, headers
    return _public(user), 200, headers


def _precondition() -> Precondition | None:
    return conditional.write_condition(
        if_match=header("if-match"),
        if_none_match=header("if-none-match"),
        if_unmodified_since=header("if-unmodified-since"),
        required=services().settings.require_if_match,
    )


async def update_user(id_: str, body: Body) -> tuple[Body, int, dict[str, str]]:
    svc = services()
    precondition = _precondition()
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = clean_name(body["name"])
    if "email" in body:
        changes["email"] = clean_email(body["email"])
    if "password" in body:
        changes["password_hash"] = await svc.passwords.hash(body["password"])
    user = await svc.db.write(users.update_user, user_id=id_, precondition=precondition, **changes)
    return _public(user), 200, {"ETag": conditional.etag(user.version)} | PRIVATE


async def delete_user(id_: str) -> tuple[None, int]:
    precondition = _precondition()
    await services().db.write(users.delete_user, user_id=id_, precondition=precondition)
    return None, 204
