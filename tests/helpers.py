"""Assertions and database access the tests share."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, TypeVar

from httpx2 import Response
from sqlalchemy import Connection, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from core.crypto import KeyEncryption, SigningKey, as_algorithm, private_key_from_bytes
from core.settings import Settings
from persistence.db import async_url
from persistence.models import Base
from storefront import admin
from storefront.keyring import list_signing_keys


def assert_error(response: Response, status: int, *words: str) -> dict[str, Any]:
    """The contract's error shape, exactly ``{"error", "message"}``; ``words`` in the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message"}
    assert isinstance(body["error"], str)
    assert isinstance(body["message"], str)
    assert body["error"]
    assert body["message"]
    for word in words:
        assert word in body["message"], body
    return body


def parse_links(header: str | None) -> dict[str, str]:
    """RFC 8288 ``<url>; rel="x", <url>; rel="y"`` -> {rel: url}."""
    if not header:
        return {}
    links = {}
    for part in header.split(","):
        match = re.fullmatch(r'\s*<([^>]*)>\s*;\s*rel="([^"]+)"\s*', part)
        assert match, f"not an RFC 8288 link: {part!r}"
        links[match.group(2)] = match.group(1)
    return links


def db_rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only SQL query, on whichever database the settings name."""

    def query(session: Session) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in session.execute(text(sql)).all()]

    return admin.run(settings, query)


def all_cells(settings: Settings) -> list[str]:
    """Every value of every table, as text: what an attacker with the database would see."""

    def dump(session: Session) -> list[str]:
        cells = []
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                cells.extend(str(value) for value in row)
        return cells

    return admin.run(settings, dump)


T = TypeVar("T")


def in_transaction(url: str, work: Callable[[Connection], T]) -> T:
    """``work(connection)`` in one transaction on the database at ``url``, committed when it
    returns; through the async driver, as Alembic and the app reach the database."""

    async def go() -> T:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def server_signing_key(settings: Settings) -> SigningKey:
    """The key the server signs with (the newest stored one, decrypted with the test secret),
    for tests that forge a token with one thing changed. The server must have stored its first
    key already (it does on its first request)."""
    assert settings.jwt_secret is not None
    rows = [row for row in list_signing_keys(settings) if row.private_key is not None]
    row = rows[-1]
    assert row.private_key is not None
    algorithm = as_algorithm(row.algorithm)
    secret = settings.jwt_secret.get_secret_value().encode()
    raw = KeyEncryption(secret).open(kid=row.kid, algorithm=algorithm, sealed=row.private_key)
    return SigningKey(algorithm, private_key_from_bytes(algorithm, raw))
