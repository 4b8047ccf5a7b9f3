"""Operator actions behind the ``storefront`` command (and the tests' set-up).

Each opens its own engine, does one unit of work and disposes of the engine, so it can run
from synchronous code with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from persistence import clients
from persistence.db import Database
from storefront.errors import InvalidInput
from storefront.ratelimit import parse_limit
from storefront.security import SecretDigester, new_api_key, new_secret
from storefront.settings import Settings

KNOWN_SCOPES = ("read", "write")
RATE_LIMIT_MAX = 32  # the width of clients.rate_limit
T = TypeVar("T")


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    name: str
    scopes: list[str]


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    api_key: str
    client_id: str


def parse_scopes(text: str) -> list[str]:
    scopes = list(dict.fromkeys(text.split()))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown or not scopes:
        raise InvalidInput(
            f"scopes must be a non-empty subset of {' '.join(KNOWN_SCOPES)}; got {text!r}"
        )
    return scopes


def parse_rate_limit(text: str) -> str:
    """A limit in the ``limits`` syntax ("500/minute", "10 per second"), as given."""
    try:
        parse_limit(text)
    except ValueError:
        raise InvalidInput(f"not a rate limit like '500/minute': {text!r}") from None
    if len(text) > RATE_LIMIT_MAX:
        raise InvalidInput(f"a rate limit is at most {RATE_LIMIT_MAX} characters: {text!r}")
    return text


@asynccontextmanager
async def _session(database_url: str, *, write: bool = True) -> AsyncIterator[AsyncSession]:
    db = Database(database_url)
    try:
        async with db.unit_of_work(write=write) as session:
            yield session
    finally:
        await db.dispose()


def run(settings: Settings, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _session(settings.database_url) as session:
            return await action(session)

    return asyncio.run(main())


async def create_client(
    session: AsyncSession, digester: SecretDigester, *, name: str, scopes: Sequence[str]
) -> NewClient:
    secret = new_secret()
    client = await clients.create_client(
        session, name=name, scopes=list(scopes), secret_digest=digester.digest(secret)
    )
    return NewClient(client.id, secret, client.name, client.scopes.split())


async def ensure_demo_client(session: AsyncSession, digester: SecretDigester) -> NewClient:
    """The client named ``demo``, with a fresh secret (only digests are stored, so the old
    secret cannot be shown again)."""
    existing = await clients.find_client_by_name(session, name="demo")
    if existing is None:
        return await create_client(session, digester, name="demo", scopes=KNOWN_SCOPES)
    secret = new_secret()
    await clients.set_client_secret(
        session, client_id=existing.id, secret_digest=digester.digest(secret)
    )
    return NewClient(existing.id, secret, existing.name, existing.scopes.split())


async def create_api_key(
    session: AsyncSession, digester: SecretDigester, *, client_id: str
) -> NewApiKey:
    api_key = new_api_key()
    key = await clients.create_api_key(
        session, client_id=client_id, digest=digester.digest(api_key)
    )
    return NewApiKey(key.id, api_key, client_id)
