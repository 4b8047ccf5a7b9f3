"""/users"""

from __future__ import annotations

from typing import Any

from handlers._common import Body, absolute_url, paging_headers, rfc3339, services
from persistence import users
from persistence.models import User
from persistence.users import PublicUser, UserRow
from storefront.validation import clean_email, clean_name


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


async def list_users(limit: int, offset: int) -> tuple[list[Body], int, dict[str, str]]:
    page, total = await services().db.read(users.list_users, limit=limit, offset=offset)
    return [_public(u) for u in page], 200, paging_headers(total=total, limit=limit, offset=offset)


async def create_user(body: Body) -> tuple[Body, int, dict[str, str]]:
    svc = services()
    name, email = clean_name(body["name"]), clean_email(body["email"])
    password_hash = await svc.passwords.hash(body["password"])
    user = await svc.db.write(
        users.create_user, name=name, email=email, password_hash=password_hash
    )
    return _public(user), 201, {"Location": absolute_url(f"/users/{user.id}")}


async def get_user(id_: str) -> Body:
    return _public(await services().db.read(users.get_user, user_id=id_))


async def update_user(id_: str, body: Body) -> Body:
    svc = services()
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = clean_name(body["name"])
    if "email" in body:
        changes["email"] = clean_email(body["email"])
    if "password" in body:
        changes["password_hash"] = await svc.passwords.hash(body["password"])
    user = await svc.db.write(users.update_user, user_id=id_, **changes)
    return _public(user)


async def delete_user(id_: str) -> tuple[None, int]:
    await services().db.write(users.delete_user, user_id=id_)
    return None, 204
