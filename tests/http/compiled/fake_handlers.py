"""Handlers of the small spec the adapter's unit tests serve."""

from __future__ import annotations

from typing import Any


async def get_thing(id_: str, limit: int = 5, flag: bool = False) -> dict[str, Any]:
    return {"id": id_, "limit": limit, "flag": flag}


async def put_thing(id_: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "body": body}


def sync_thing() -> dict[str, Any]:  # a plain function: Connexion runs it in a thread
    return {"sync": True}


async def post_form(body: dict[str, Any]) -> dict[str, Any]:
    return {"body": body}
