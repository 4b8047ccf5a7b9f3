"""persistence.clients: what the credential lifecycle writes, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from core.crypto import SecretDigester
from core.settings import Settings
from persistence import clients
from persistence.db import Database
from persistence.models import utcnow
from storefront import admin


def test_last_use_is_written_at_most_once_a_minute(
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[[str], admin.NewApiKey],
) -> None:
    key = make_api_key(make_client().client_id).key_id
    now = utcnow()

    def record(after: timedelta) -> bool:
        return admin.run(settings, lambda s: clients.record_key_use(s, key_id=key, now=now + after))

    # As several instances would call it: only the database's condition decides.
    assert [record(timedelta(seconds=s)) for s in (0, 1, 30, 59, 61, 90, 122)] == [
        True, False, False, False, True, False, True,
    ]  # fmt: skip
    [listed] = admin.run(settings, clients.list_api_keys)
    assert listed.last_used_at == now + timedelta(seconds=122)
    assert not admin.run(settings, lambda s: clients.record_key_use(s, key_id="key_nope", now=now))


@pytest.mark.parametrize("grace", [timedelta(hours=1), timedelta(0)])
def test_a_rotation_keeps_one_previous_secret_for_the_grace(
    settings: Settings,
    digester: SecretDigester,
    make_client: Callable[..., admin.NewClient],
    grace: timedelta,
) -> None:
    client = make_client()
    first = admin.run(
        settings,
        lambda s: admin.rotate_client_secret(s, digester, client_id=client.client_id, grace=grace),
    )
    second = admin.run(
        settings,
        lambda s: admin.rotate_client_secret(s, digester, client_id=client.client_id, grace=grace),
    )

    async def row() -> clients.ClientRow | None:
        db = Database.from_settings(settings)
        try:
            return await clients.find_client(db, client_id=client.client_id)
        finally:
            await db.dispose()

    found = asyncio.run(row())
    assert found is not None
    assert found.secret_digest == digester.digest(second.client_secret)
    if grace:
        # The secret the second rotation replaced: the first rotation's, not the original.
        assert found.previous_secret_digest == digester.digest(first.client_secret)
        assert found.previous_secret_expires_at == second.previous_secret_expires_at
        assert found.previous_secret_expires_at is not None
        assert found.previous_secret_expires_at - utcnow() <= grace
    else:
        assert (found.previous_secret_digest, found.previous_secret_expires_at) == (None, None)


def test_rotating_an_unknown_client_is_an_error(
    settings: Settings, digester: SecretDigester
) -> None:
    with pytest.raises(clients.ClientNotFound):
        admin.run(
            settings,
            lambda s: admin.rotate_client_secret(
                s, digester, client_id="cli_nope", grace=timedelta(hours=1)
            ),
        )


def test_prepared_reads_return_the_lifecycle_columns(
    settings: Settings, digester: SecretDigester, make_client: Callable[..., admin.NewClient]
) -> None:
    """find_active_key's expiry comes back as an aware UTC time on both engines (its
    PreparedQuery reads SQLite's stored text itself)."""
    client = make_client()
    key = admin.run(
        settings,
        lambda s: admin.create_api_key(
            s, digester, client_id=client.client_id, expires_in=timedelta(days=1)
        ),
    )

    async def read() -> clients.KeyRow | None:
        db = Database.from_settings(settings)
        try:
            return await clients.find_active_key(db, digest=digester.digest(key.api_key))
        finally:
            await db.dispose()

    found = asyncio.run(read())
    assert found is not None
    assert found.expires_at == key.expires_at
    assert found.expires_at is not None
    assert found.expires_at.utcoffset() == timedelta(0)
