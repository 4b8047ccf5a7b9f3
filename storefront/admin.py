"""Operator actions behind the ``storefront`` command (and the tests' set-up).

Each is a function of a Session; ``run`` gives it its own engine and one write transaction,
so that synchronous code (the CLI, the tests' set-up) can call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

from core.crypto import SecretDigester
from core.errors import InvalidInput
from core.ids import new_api_key, new_secret
from core.settings import Settings
from persistence import clients
from persistence.db import Database
from storefront.access.ratelimit import parse_limit

#: read and write are the API's; introspect lets a client (a resource server) introspect any
#: client's tokens at POST /auth/introspect, where others may introspect only their own.
KNOWN_SCOPES = ("read", "write", "introspect")
#: What the demo client gets: the API's scopes.
API_SCOPES = ("read", "write")
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


def run(settings: Settings, action: Callable[[Session], T]) -> T:
    """``action(session)`` in one write transaction on the settings' database."""

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            return await db.write(action)
        finally:
            await db.dispose()

    return asyncio.run(main())


def create_client(
    session: Session, digester: SecretDigester, *, name: str, scopes: Sequence[str]
) -> NewClient:
    secret = new_secret()
    client = clients.create_client(
        session, name=name, scopes=list(scopes), secret_digest=digester.digest(secret)
    )
    return NewClient(client.id, secret, client.name, client.scopes.split())


def ensure_demo_client(session: Session, digester: SecretDigester) -> NewClient:
    """The client named ``demo``, with a fresh secret (only digests are stored, so the old
    secret cannot be shown again)."""
    existing = clients.find_client_by_name(session, name="demo")
    if existing is None:
        return create_client(session, digester, name="demo", scopes=API_SCOPES)
    secret = new_secret()
    clients.set_client_secret(session, client_id=existing.id, secret_digest=digester.digest(secret))
    return NewClient(existing.id, secret, existing.name, existing.scopes.split())


def create_api_key(session: Session, digester: SecretDigester, *, client_id: str) -> NewApiKey:
    api_key = new_api_key()
    key = clients.create_api_key(session, client_id=client_id, digest=digester.digest(api_key))
    return NewApiKey(key.id, api_key, client_id)
