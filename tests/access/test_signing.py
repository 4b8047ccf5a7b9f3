"""Signing keys in the database: their life cycle, the first key of a database (new or upgraded
from 0008), the reload on an unknown kid, and the algorithm setting against the stored keys."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from core.crypto import (
    KeyEncryption,
    SecretDigester,
    SigningKey,
    TokenCodec,
    UnreadableKey,
    derived_private_key,
    fingerprint,
)
from core.ids import new_secret
from core.settings import Settings
from persistence import signing_keys
from persistence.db import Database
from persistence.migrate import upgrade
from storefront import admin
from storefront.access.signing import (
    SigningKeys,
    activation_lead,
    retirement_delay,
    rotate,
    seed_first_key,
    state,
)
from storefront.app import create_app
from storefront.keyring import bind_secrets, list_signing_keys, rotate_signing_key
from tests.conftest import JWT_SECRET, PEPPER, RUN_ID, postgres_admin, postgres_database_url
from tests.helpers import in_transaction

MakeClient = Callable[..., admin.NewClient]
SECRET = JWT_SECRET.encode()
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _seed(settings: Settings, *, now: datetime = T0, algorithm: Any = "EdDSA") -> Any:
    return admin.run(
        settings,
        lambda s: seed_first_key(
            s,
            secret=SECRET,
            encryption=KeyEncryption(SECRET),
            algorithm=algorithm,
            algorithm_configured=False,
            now=now,
        ),
    )


def _rotate(settings: Settings, *, now: datetime, algorithm: Any = "ES256") -> Any:
    return admin.run(
        settings,
        lambda s: rotate(
            s,
            encryption=KeyEncryption(SECRET),
            algorithm=algorithm,
            lead=activation_lead(settings),
            retire_after=retirement_delay(settings),
            now=now,
        ),
    )


def _states(settings: Settings, now: datetime) -> dict[str, str]:
    return {row.kid: state(row, now) for row in list_signing_keys(settings)}


def test_a_key_is_pending_then_active_then_previous_then_retired(settings: Settings) -> None:
    first = _seed(settings)
    assert first.algorithm == "EdDSA"
    assert not first.inherited
    # The first key is the one servers before 0009 derived from the secret: the same kid.
    assert first.kid == SigningKey("EdDSA", derived_private_key(SECRET, "EdDSA")).kid
    assert _seed(settings) is None  # a database with a key keeps it

    rotated_at = T0 + timedelta(days=1)
    second = _rotate(settings, now=rotated_at)
    lead = activation_lead(settings)  # 6 s: the refresh window (1 s) and 5 s for clocks
    assert lead == timedelta(seconds=6)
    assert second.activates_at == rotated_at + lead
    assert second.replaced == [first.kid]
    # The old key verifies until its last token (signed just before the switch) has expired.
    assert second.retires_at == second.activates_at + timedelta(seconds=settings.token_ttl + 10)

    assert _states(settings, rotated_at) == {first.kid: "active", second.kid: "pending"}
    switched = second.activates_at
    assert _states(settings, switched) == {first.kid: "previous", second.kid: "active"}
    assert _states(settings, second.retires_at) == {first.kid: "retired", second.kid: "active"}

    # What an instance loads: every key not retired; the retired one only until deleted.
    def usable(now: datetime) -> list[str]:
        rows = in_transaction(settings.database_url, lambda c: signing_keys.usable(c, now=now))
        return [row.kid for row in rows]

    assert usable(rotated_at) == [first.kid, second.kid]
    assert usable(second.retires_at) == [second.kid]

    # The next rotation deletes the retired row, and schedules the end of the active one.
    third = _rotate(settings, now=second.retires_at, algorithm="HS256")
    assert third.deleted == [first.kid]
    assert third.replaced == [second.kid]
    rows = {row.kid: row for row in list_signing_keys(settings)}
    assert set(rows) == {second.kid, third.kid}
    assert rows[third.kid].public_jwk is None  # HS256: a shared secret, never published
    assert rows[second.kid].deactivates_at == third.activates_at


def test_private_keys_are_stored_encrypted_under_the_secret(settings: Settings) -> None:
    first = _seed(settings, algorithm="HS256")
    _rotate(settings, now=T0 + timedelta(hours=1), algorithm="EdDSA")
    rows = list_signing_keys(settings)
    for row in rows:
        assert row.private_key is not None
        assert SECRET not in row.private_key
        raw = KeyEncryption(SECRET).open(
            kid=row.kid, algorithm=row.algorithm, sealed=row.private_key
        )
        assert raw not in row.private_key  # not merely wrapped: encrypted
        # Another KEK, or the same bytes under another kid or algorithm, do not decrypt.
        for encryption, kid, algorithm in [
            (KeyEncryption(b"another-secret-0123456789abcdef0123456789"), row.kid, row.algorithm),
            (KeyEncryption(SECRET), "another-kid", row.algorithm),
            (KeyEncryption(SECRET), row.kid, "ES256"),
        ]:
            with pytest.raises(UnreadableKey):
                encryption.open(kid=kid, algorithm=algorithm, sealed=row.private_key)
    assert rows[0].kid == first.kid
    assert rows[0].private_key is not None
    # HS256's first key is the secret itself (as before 0009), yet the column never holds it.
    assert (
        KeyEncryption(SECRET).open(kid=first.kid, algorithm="HS256", sealed=rows[0].private_key)
        == SECRET
    )


# --- an instance's copy of the keys ---------------------------------------------------------


@pytest.fixture
def key_reads(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Every read of the signing keys by a server, counted."""
    reads: list[datetime] = []
    original = signing_keys.usable

    def counted(connection: Any, *, now: datetime) -> Any:
        reads.append(now)
        return original(connection, now=now)

    monkeypatch.setattr(signing_keys, "usable", counted)
    return reads


def test_an_unknown_kid_reloads_the_keys_once_per_window(
    api: TestClient,
    settings: Settings,
    make_client: MakeClient,
    token_for: Callable[..., str],
    key_reads: list[datetime],
) -> None:
    client = make_client("read")
    old = token_for(client)  # this instance has loaded the keys
    # Another instance rotates, and signs with the new key at once (no activation lead here).
    admin.run(
        settings,
        lambda s: rotate(
            s,
            encryption=KeyEncryption(SECRET),
            algorithm="ES256",
            lead=timedelta(0),
            retire_after=retirement_delay(settings),
        ),
    )
    with create_app(settings).test_client() as other:
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        new = other.post("/auth/token", data=form).json()["access_token"]
    assert jwt.get_unverified_header(new)["alg"] == "ES256"

    reads = len(key_reads)
    # This instance does not hold the new key yet: one reload, and the token is good.
    assert api.get("/products", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert len(key_reads) == reads + 1
    # Forged kids within the same window cost no read at all.
    claims = jwt.decode(new, options={"verify_signature": False})
    for _ in range(20):
        forged = jwt.encode(
            claims,
            "x" * 32,
            algorithm="HS256",
            headers={"typ": "at+jwt", "kid": secrets.token_hex(8)},
        )
        response = api.get("/products", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert len(key_reads) == reads + 1
    # Known keys never read: old and new tokens both verify.
    for token in (old, new):
        assert api.get("/products", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert len(key_reads) == reads + 1


# --- a database from before 0009 ------------------------------------------------------------


@pytest.fixture
def database_at_0008(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0008")
        yield url
        return
    name = f"sf_{RUN_ID}_upgrade_{secrets.token_hex(3)}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        url = postgres_database_url(name)
        upgrade(url, "0008")
        yield url
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _old_settings(url: str, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        key_dir=tmp_path / "keys",
        jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        pepper=PEPPER,  # type: ignore[arg-type]
        validate_responses=True,
        **changes,
    )


@pytest.mark.parametrize("configured", [None, "HS256", "EdDSA", "ES256"])
def test_tokens_issued_before_the_upgrade_stay_valid(
    database_at_0008: str, tmp_path: Path, configured: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A server at 0008 signed with the key it derived from the secret, with
    STOREFRONT_JWT_ALGORITHM or else HS256 (the default then). After the upgrade, with the
    same configuration, that key is the first stored one: same kid, same tokens valid."""
    changes = {} if configured is None else {"jwt_algorithm": configured}
    settings = _old_settings(database_at_0008, tmp_path, **changes)
    old_algorithm: Any = configured or "HS256"
    # What the server before 0009 did: record the secrets, make a client, sign a token.
    # (In SQL: the models describe the latest schema, and this database is at 0008.)
    client = admin.NewClient("cli_0123456789abcdef", new_secret(), "old", ["read"])
    in_transaction(
        database_at_0008,
        lambda c: c.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at) "
                "values (:id, 'old', :digest, 'read', CURRENT_TIMESTAMP)"
            ),
            {"id": client.client_id, "digest": _digester().digest(client.client_secret)},
        ),
    )
    before = TokenCodec(
        SECRET,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=3600,
        algorithm=old_algorithm,
    ).issue(client_id=client.client_id, scopes=["read"])
    in_transaction(
        database_at_0008,
        lambda c: c.execute(
            text(
                "insert into secret_fingerprints (name, fingerprint, recorded_at) "
                "values ('jwt-signing-key', :f, CURRENT_TIMESTAMP)"
            ),
            {"f": _fingerprint()},
        ),
    )

    upgrade(database_at_0008)
    placeholder = [row.kid for row in list_signing_keys(settings)]
    assert placeholder == [signing_keys.DERIVED_KID]
    with caplog.at_level(logging.INFO, logger="storefront"):
        bind_secrets(settings, generate=False, check_algorithm=True)  # the first start
    (row,) = list_signing_keys(settings)
    assert (row.kid, row.algorithm) == (
        jwt.get_unverified_header(before.access_token)["kid"],
        old_algorithm,
    )
    warnings = _algorithm_warnings(caplog)
    if configured is None:
        # Unset now means EdDSA, the new default, for new keys; the stored key stays HS256.
        assert len(warnings) == 1, warnings
        assert "tokens are signed with HS256" in warnings[0]
        assert "STOREFRONT_JWT_ALGORITHM is EdDSA" in warnings[0]
        assert "storefront keys rotate-signing" in warnings[0]
    else:
        assert warnings == []

    with create_app(settings).test_client() as api:
        auth = {"Authorization": f"Bearer {before.access_token}"}
        assert api.get("/products", headers=auth).status_code == 200
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        after = api.post("/auth/token", data=form).json()["access_token"]
        assert jwt.get_unverified_header(after) == jwt.get_unverified_header(before.access_token)
        published = api.get("/.well-known/jwks.json").json()["keys"]
        assert [key["kid"] for key in published] == ([] if old_algorithm == "HS256" else [row.kid])


def _algorithm_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings about the algorithm (other tests' threads may log meanwhile)."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "STOREFRONT_JWT_ALGORITHM" in record.getMessage()
    ]


def _digester() -> SecretDigester:
    return SecretDigester(PEPPER.encode())


def _fingerprint() -> str:
    return fingerprint(SECRET, "jwt-signing-key")


def test_the_algorithm_setting_applies_to_new_keys_and_warns_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    hs256 = settings.model_copy(update={"jwt_algorithm": "HS256"})
    bind_secrets(hs256, generate=False)
    (row,) = list_signing_keys(settings)
    assert row.algorithm == "HS256"
    eddsa = settings.model_copy(update={"jwt_algorithm": "EdDSA"})
    with caplog.at_level(logging.WARNING, logger="storefront"):
        bind_secrets(eddsa, generate=False, check_algorithm=True)
    # A server configured otherwise still starts, signing with the stored key, and says so.
    (line,) = _algorithm_warnings(caplog)
    assert line.startswith("tokens are signed with HS256 (key ")
    assert "'storefront keys rotate-signing'" in line
    caplog.clear()
    # The rotation takes the setting's algorithm; once the new key is there, no warning.
    assert rotate_signing_key(eddsa).algorithm == "EdDSA"
    with caplog.at_level(logging.WARNING, logger="storefront"):
        bind_secrets(eddsa, generate=False, check_algorithm=True)
    assert _algorithm_warnings(caplog) == []


def test_only_the_first_start_writes_the_signing_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every later start finds the key with a read: a write would take SQLite's one write
    lock at every start of every worker and command."""
    writes: list[str] = []
    real_write = Database.write

    async def counted(self: Database, work: Any, /, *args: Any, **kwargs: Any) -> Any:
        writes.append(work.__name__)
        return await real_write(self, work, *args, **kwargs)

    monkeypatch.setattr(Database, "write", counted)
    bind_secrets(settings, generate=False)
    assert "seed_first_key" in writes
    (first,) = list_signing_keys(settings)
    writes.clear()
    bind_secrets(settings, generate=False, check_algorithm=True)
    bind_secrets(settings, generate=False)
    assert writes == []
    assert list_signing_keys(settings) == [first]


def test_an_instance_reloads_at_most_once_per_window_and_rides_out_an_outage(
    settings: Settings,
    key_reads: list[datetime],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    db = Database.from_settings(settings)
    codec = TokenCodec(issuer=settings.issuer, audience=settings.audience, ttl=settings.token_ttl)
    keys = SigningKeys(
        db=db,
        codec=codec,
        secret=SECRET,
        algorithm="EdDSA",
        algorithm_configured=True,
        window=1.0,
        monotonic=lambda: clock[0],
    )

    async def scenario() -> list[str]:
        kids = []
        try:
            kids.append((await keys.fresh()).signer().kid)  # stores the first key, reads it
            first = len(key_reads)
            for moment in (100.5, 100.99):  # nothing more within the window
                clock[0] = moment
                kids.append((await keys.fresh()).signer().kid)
            assert len(key_reads) == first
            rotated = await db.write(
                rotate,
                encryption=KeyEncryption(SECRET),
                algorithm="ES256",
                lead=timedelta(0),
                retire_after=retirement_delay(settings),
            )
            clock[0] = 101.0  # the window has passed: the next token is signed with the new key
            assert (await keys.fresh()).signer().kid == rotated.kid
            assert len(key_reads) == first + 1

            def away(connection: Any, *, now: datetime) -> Any:
                raise OSError("connection refused")

            monkeypatch.setattr(signing_keys, "usable", away)
            clock[0] = 102.5
            # The database is away: the keys loaded last still sign, and say so once.
            assert (await keys.fresh()).signer().kid == rotated.kid
            assert (await keys.fresh()).signer().kid == rotated.kid
        finally:
            await db.dispose()
        return kids

    with caplog.at_level(logging.WARNING, logger="storefront"):
        kids = asyncio.run(scenario())
    assert len(set(kids)) == 1
    (warning,) = [r.getMessage() for r in caplog.records if "signing keys" in r.getMessage()]
    assert warning.startswith("could not reload the signing keys (OSError): signing with those")
