"""The database a command works on, and the pepper and signing key it is bound to.

Client secrets and API keys are stored as HMACs under the pepper; tokens are signed with the
signing key. Either one, changed, breaks credentials silently: a client made under another
pepper is refused by the server, a token signed with another key is refused by the other
instances. So the database records a fingerprint of each (core.crypto.fingerprint) the first
time one is used, and the server and every command compare before doing anything, refusing
with one line that names the setting to fix.

A command other than ``serve`` and ``db upgrade`` never creates a database either: pointed at
the wrong place (a relative SQLite path from another directory, a typo), it says where it
looked instead of starting an empty one there.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.crypto import Algorithm, KeyEncryption, fingerprint
from core.settings import (
    DEFAULT_KEY_DIR,
    JWT_KEY,
    PEPPER,
    SecretKind,
    Settings,
    SettingsError,
    configured_secret,
    jwt_signing_key,
    key_file,
    masked_url,
    read_or_create_secret,
    read_secret,
    sqlite_file,
)
from persistence import fingerprints, signing_keys
from persistence.db import Database
from persistence.models import utcnow
from persistence.provisioning import database_missing
from persistence.signing_keys import StoredKey
from storefront.access.signing import (
    Rotation,
    activation_lead,
    algorithm_configured,
    retirement_delay,
    rotate,
    seed_first_key,
)

logger = logging.getLogger("storefront")
T = TypeVar("T")

CREATE_IT = "create it with 'storefront db upgrade'"


def database_label(settings: Settings) -> str:
    """The database as an operator recognises it: a SQLite file's full path, or the URL
    without its password."""
    path = sqlite_file(settings.database_url)
    if path is not None:
        return str(path.resolve())
    return masked_url(settings.database_url)


def database_setting(settings: Settings) -> str:
    """Where the database URL came from, and what it is (its password masked): the words
    every "no database at …" line uses, whether it then refuses or creates one."""
    url_source = (
        "STOREFRONT_DATABASE_URL"
        if "database_url" in settings.model_fields_set
        else "the default STOREFRONT_DATABASE_URL"
    )
    return f"{url_source} {masked_url(settings.database_url)}"


def missing_sqlite_file(settings: Settings) -> Path | None:
    """The absolute path of the SQLite file the URL names, when there is no file there."""
    path = sqlite_file(settings.database_url)
    return None if path is None or path.exists() else path.resolve()


def require_database(settings: Settings) -> None:
    """Refuse, naming where it looked, when there is no Storefront database at the URL."""
    path = missing_sqlite_file(settings)
    if path is not None:
        # Opening it would create an empty file, which the next command would take for a
        # database; so nothing opens it.
        raise SettingsError(
            f"no database at {path} ({database_setting(settings)}): "
            f"{CREATE_IT}, or set STOREFRONT_DATABASE_URL to the database the server uses"
        )
    try:
        has_schema = _run(settings, lambda db: db.read(fingerprints.has_schema))
    except (SQLAlchemyError, OSError) as exc:
        if not database_missing(settings.database_url, exc, timeout=settings.database_timeout):
            raise  # the caller says the database cannot be reached, and why
        # The server answered: "cannot reach the database" would send one looking at the
        # network. As a missing SQLite file is said.
        url = make_url(settings.database_url)
        where = f"host {url.host or 'localhost'}, port {url.port or 5432}"
        raise SettingsError(
            f'no database "{url.database}" at {where} ({database_setting(settings)}): '
            f"{CREATE_IT}, or set STOREFRONT_DATABASE_URL to the database the server uses"
        ) from None
    if not has_schema:
        raise SettingsError(
            f"the database at {database_label(settings)} has no Storefront tables: "
            f"{CREATE_IT}, or set STOREFRONT_DATABASE_URL to the database the server uses"
        )


def bind_secrets(settings: Settings, *, generate: bool, check_algorithm: bool = False) -> None:
    """Check the pepper and signing key against the fingerprints the database recorded,
    recording those not yet recorded; with the signing secret at hand, store the first
    signing key if the database has none (storefront/access/signing.py).

    ``generate``: a secret that is neither set nor kept in the key directory is made (and kept)
    when the database has none recorded, as on a first start; without it such a secret is
    left alone (``db upgrade`` needs none).

    ``check_algorithm`` (a server starting): warn when the key that signs (or is about to)
    is not of STOREFRONT_JWT_ALGORITHM.
    """

    async def check(db: Database) -> None:
        recorded = await db.read(fingerprints.recorded)
        credentials = await db.read(fingerprints.holds_credentials)
        signing_secret: bytes | None = None
        for kind in (PEPPER, JWT_KEY):
            known = recorded.get(kind.name)
            secret = _secret(
                settings,
                kind,
                recorded=known is not None,
                # Digests made under some pepper: a new one would silently break them all.
                in_use=credentials and kind is PEPPER,
                generate=generate,
            )
            if secret is None:
                continue
            mine = fingerprint(secret, kind.name)
            if known is None:
                known = await db.write(fingerprints.record, name=kind.name, fingerprint=mine)
            if not hmac.compare_digest(known, mine):
                raise SettingsError(_mismatch(settings, kind))
            if kind is JWT_KEY:
                signing_secret = secret
        if signing_secret is None:
            return
        first = None
        # Read first: a write takes SQLite's one write lock, and every start but the first
        # finds the key there.
        if not await db.read(signing_keys.has_signing_key):
            first = await db.write(
                seed_first_key,
                secret=signing_secret,
                encryption=KeyEncryption(signing_secret),
                algorithm=settings.jwt_algorithm,
                algorithm_configured=algorithm_configured(settings),
            )
        if first is not None:
            logger.info(
                "stored the first signing key %s (%s)%s",
                first.kid,
                first.algorithm,
                " as before the upgrade" if first.inherited else "",
            )
        if check_algorithm:
            newest = (await db.read(signing_keys.usable, now=utcnow()))[-1:]
            if newest and newest[0].algorithm != settings.jwt_algorithm:
                logger.warning(
                    "tokens are signed with %s (key %s) while STOREFRONT_JWT_ALGORITHM is %s, "
                    "which applies to new keys only: run 'storefront keys rotate-signing' to "
                    "switch without an outage",
                    newest[0].algorithm,
                    newest[0].kid,
                    settings.jwt_algorithm,
                )

    _run(settings, check)


def _secret(
    settings: Settings, kind: SecretKind, *, recorded: bool, in_use: bool, generate: bool
) -> bytes | None:
    configured = configured_secret(settings, kind)
    if configured is not None:
        return configured
    path = key_file(settings, kind)
    kept = read_secret(path)
    if kept is not None or not generate:
        return kept
    if recorded or in_use:
        why = "was set up with" if recorded else "holds client secrets and API keys made under"
        raise SettingsError(
            f"this database ({database_label(settings)}) {why} a {kind.what} that is not here: "
            f"{kind.variable} is unset and there is no {path.resolve()}; "
            f"{_where_to_look(settings, kind)}"
        )
    secret, created = read_or_create_secret(path)
    if created:
        logger.warning("generated a new %s and saved it to %s", kind.what, path)
    return secret


def _mismatch(settings: Settings, kind: SecretKind) -> str:
    database = database_label(settings)
    if configured_secret(settings, kind) is not None:
        return (
            f"{kind.variable} is not the {kind.what} this database ({database}) was set up "
            f"with: set {kind.variable} to that one (or unset it to use the key directory's)"
        )
    return (
        f"the {kind.what} in {key_file(settings, kind).resolve()} is not the one this database "
        f"({database}) was set up with; {_where_to_look(settings, kind)}"
    )


def _where_to_look(settings: Settings, kind: SecretKind) -> str:
    advice = (
        f"set STOREFRONT_KEY_DIR to the directory that holds its keys, or {kind.variable} "
        f"to its {kind.what}"
    )
    # Before keys followed the database, they were kept in ./storefront-keys: point there.
    old = (DEFAULT_KEY_DIR / kind.filename).resolve()
    if settings.key_dir is None and old != key_file(settings, kind).resolve() and old.exists():
        advice += f" (is it {old.parent}?)"
    return advice


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """``work(database)`` on the settings' database, from synchronous code."""

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def rotate_signing_key(settings: Settings, *, algorithm: Algorithm | None = None) -> Rotation:
    """``storefront keys rotate-signing``: a new key (of ``algorithm``, else
    STOREFRONT_JWT_ALGORITHM) that every instance publishes at once and signs with after the
    activation lead; the key it replaces retires when its last token has expired."""

    async def work(db: Database) -> Rotation:
        return await db.write(
            rotate,
            encryption=KeyEncryption(jwt_signing_key(settings)),
            algorithm=algorithm or settings.jwt_algorithm,
            lead=activation_lead(settings),
            retire_after=retirement_delay(settings),
        )

    return _run(settings, work)


def list_signing_keys(settings: Settings) -> list[StoredKey]:
    """Every signing key row, oldest first (retired ones until a rotation deletes them)."""

    async def work(db: Database) -> list[StoredKey]:
        return await db.read(signing_keys.every_key)

    return _run(settings, work)
