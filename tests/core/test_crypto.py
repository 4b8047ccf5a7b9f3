"""core.crypto: tokens, keyed digests, password hashes, and what reaches the database."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from core.crypto import (
    LEEWAY,
    InvalidToken,
    PasswordHashing,
    ScheduledKey,
    SecretDigester,
    SigningKey,
    TokenCodec,
    UnknownSigningKey,
    new_private_key,
)
from core.ids import API_KEY_PREFIX, new_api_key, new_id, new_secret
from core.settings import Settings
from storefront import admin
from tests.helpers import all_cells, db_rows

KEY = b"unit-test-signing-key-0123456789abcdef0123"
OTHER_KEY = b"another-signing-key-0123456789abcdef012345"
URLSAFE = re.compile(r"^[A-Za-z0-9_-]+$")
ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


def codec(key: bytes = KEY, **changes: Any) -> TokenCodec:
    options: dict[str, Any] = {"issuer": "iss-a", "audience": "aud-a", "ttl": 3600, **changes}
    return TokenCodec(key, **options)


# --- random values ------------------------------------------------------------------------


def test_secrets_keys_and_ids_are_random_and_long_enough() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert URLSAFE.match(secret)
        assert len(secret) >= 43  # 256 bits in base64url

    keys = {new_api_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(API_KEY_PREFIX)
        assert API_KEY_PREFIX == "sk_"
        assert len(key.removeprefix("sk_")) >= 43
        assert URLSAFE.match(key)

    ids = {new_id("user_") for _ in range(50)}
    assert len(ids) == 50
    for user_id in ids:
        assert re.fullmatch(r"user_[A-Za-z0-9_-]{12,}", user_id)


# --- SecretDigester -----------------------------------------------------------------------


def test_digest_is_a_keyed_hex_digest_not_the_secret() -> None:
    digester = SecretDigester(b"pepper-one-0123456789abcdef0123456789")
    secret = new_secret()
    digest = digester.digest(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret not in digest
    assert digest != secret
    assert digester.digest(secret) == digest  # deterministic, so it can be looked up
    assert digester.digest(secret + "x") != digest
    other_pepper = SecretDigester(b"pepper-two-0123456789abcdef0123456789")
    assert other_pepper.digest(secret) != digest  # keyed: the pepper matters
    assert re.fullmatch(r"[0-9a-f]{64}", digester.dummy_digest)


def test_digest_matches_only_its_secret() -> None:
    digester = SecretDigester(b"pepper-one-0123456789abcdef0123456789")
    secret = new_secret()
    digest = digester.digest(secret)
    assert digester.matches(secret, digest)
    assert not digester.matches(secret[:-1], digest)
    assert not digester.matches(secret.swapcase(), digest)
    assert not digester.matches("", digest)
    assert not digester.matches(secret, digester.digest(new_secret()))
    assert not digester.matches(digest, digest)
    assert not digester.matches(secret, digester.dummy_digest)
    assert not SecretDigester(b"pepper-two-0123456789abcdef0123456789").matches(secret, digest)


# --- TokenCodec ---------------------------------------------------------------------------


def test_token_round_trip() -> None:
    tokens = codec()
    issued = tokens.issue(client_id="cli_abc", scopes=["read", "write"])
    assert issued.expires_in == 3600
    assert issued.scope == "read write"
    claims = tokens.verify(issued.access_token)
    assert claims["sub"] == claims["client_id"] == "cli_abc"
    assert claims["scope"] == "read write"
    assert claims["iss"] == "iss-a"
    assert claims["aud"] == "aud-a"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]
    header = jwt.get_unverified_header(issued.access_token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "HS256"
    assert header["kid"] == tokens.kid

    second = tokens.issue(client_id="cli_abc", scopes=["read"])
    assert tokens.verify(second.access_token)["jti"] != claims["jti"]
    assert second.scope == "read"


def test_kid_names_the_key_without_revealing_it() -> None:
    assert codec().kid == codec().kid
    assert codec().kid != codec(OTHER_KEY).kid
    assert codec().kid.encode() not in KEY


def test_verify_refuses_tokens_of_another_setup(subtests: pytest.Subtests) -> None:
    tokens = codec()
    for name, other in {
        "another key": codec(OTHER_KEY),
        "another issuer": codec(issuer="iss-b"),
        "another audience": codec(audience="aud-b"),
    }.items():
        with subtests.test(name):
            token = other.issue(client_id="cli_abc", scopes=["read"]).access_token
            with pytest.raises(InvalidToken):
                tokens.verify(token)


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = codec(ttl=60)
    now = [time.time()]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Clock:
            return cls.fromtimestamp(now[0], tz)

    # One clock for this module and for PyJWT's own expiry check.
    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(jwt.api_jwt, "datetime", Clock)
    token = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    assert tokens.verify(token)["sub"] == "cli_abc"
    assert tokens.verify(token)["sub"] == "cli_abc"  # remembered
    now[0] += 60 + LEEWAY + 1
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)


def test_remembering_a_token_does_not_vouch_for_a_tampered_copy() -> None:
    tokens = codec()
    token = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    tokens.verify(token)
    head, payload, signature = token.split(".")
    for forged in (f"{head}.{payload}.{signature[:-2]}AA", f"{head}.{payload}x.{signature}"):
        with pytest.raises(InvalidToken):
            tokens.verify(forged)


def valid_claims(now: int) -> dict[str, Any]:
    """Every claim ``codec()`` checks, valid at ``now``."""
    return {
        "iss": "iss-a",
        "sub": "cli_abc",
        "aud": "aud-a",
        "exp": now + 60,
        "iat": now,
        "jti": "j",
        "client_id": "cli_abc",
        "scope": "read",
    }


def test_verify_refuses_expired_and_malformed_tokens(subtests: pytest.Subtests) -> None:
    tokens = codec()
    expired = codec(ttl=-60).issue(client_id="cli_abc", scopes=["read"]).access_token
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(expired)
    base = valid_claims(int(time.time()))
    header = {"typ": "at+jwt", "kid": tokens.kid}
    assert tokens.verify(jwt.encode(base, KEY, algorithm="HS256", headers=header))  # control
    for claim in base:
        with subtests.test(missing=claim):
            claims = {k: v for k, v in base.items() if k != claim}
            token = jwt.encode(claims, KEY, algorithm="HS256", headers=header)
            with pytest.raises(InvalidToken):
                tokens.verify(token)
    for name, token in {
        "typ JWT": jwt.encode(base, KEY, algorithm="HS256", headers={**header, "typ": "JWT"}),
        "garbage": "not-a-token",
        "empty": "",
    }.items():
        with subtests.test(name), pytest.raises(InvalidToken):
            tokens.verify(token)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "{exp}"), ("iat", "{now}"), ("nbf", "{now}")],
)
def test_verify_refuses_dates_that_are_not_json_numbers(claim: str, value: object) -> None:
    # PyJWT accepts a numeric string for exp and iat; a remembered token's expiry check
    # compares numbers, so such a token crashed on its second use.
    tokens = codec()
    now = int(time.time())
    claims = valid_claims(now)
    if isinstance(value, str):
        value = value.format(exp=now + 60, now=now)
    claims[claim] = value
    token = jwt.encode(claims, KEY, algorithm="HS256", headers={"typ": "at+jwt", "kid": tokens.kid})
    for _ in range(2):  # the second use is the one that reached the memory
        with pytest.raises(InvalidToken, match="invalid"):
            tokens.verify(token)


# --- PasswordHashing ----------------------------------------------------------------------


def test_passwords_are_argon2id_with_owasp_parameters() -> None:
    hashing = PasswordHashing(concurrency=2)
    password = "correct horse battery"
    first = asyncio.run(hashing.hash(password))
    second = asyncio.run(hashing.hash(password))
    assert first.startswith(ARGON2_PREFIX)
    assert password not in first
    assert first != second  # salted
    assert PasswordHasher().verify(first, password)
    assert "19456" in hashing.parameters


def test_concurrent_hashes_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    hashing = PasswordHashing(concurrency=2)
    lock = threading.Lock()
    running = 0
    peak = 0

    def slow_hash(password: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.03)
        with lock:
            running -= 1
        return "$argon2id$stub"

    class SlowHasher:
        hash = staticmethod(slow_hash)

    monkeypatch.setattr(hashing, "_hasher", SlowHasher())

    async def burst() -> None:
        await asyncio.gather(*(hashing.hash(f"password{i}") for i in range(8)))

    asyncio.run(burst())
    assert running == 0
    assert 1 <= peak <= 2


# --- what is stored -----------------------------------------------------------------------


def raw_bytes(settings: Settings) -> bytes:
    """The SQLite file and its WAL as bytes (on PostgreSQL, nothing: its files are the
    server's; the cell-by-cell check stands there alone)."""
    if not settings.database_url.startswith("sqlite:///"):
        return b""
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def assert_stored_only_as_digest(settings: Settings, secret: str, digester: SecretDigester) -> None:
    cells = all_cells(settings)
    assert digester.digest(secret) in cells  # the control: the row is there
    assert not any(secret in cell for cell in cells)
    assert secret.encode() not in raw_bytes(settings)


def test_client_secrets_and_api_keys_are_stored_only_as_digests(
    settings: Settings,
    digester: SecretDigester,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[[str], admin.NewApiKey],
) -> None:
    client = make_client("read")
    key = make_api_key(client.client_id)
    assert key.api_key.startswith("sk_")
    assert_stored_only_as_digest(settings, client.client_secret, digester)
    assert_stored_only_as_digest(settings, key.api_key, digester)
    assert key.api_key.removeprefix("sk_").encode() not in raw_bytes(settings)


def test_user_passwords_are_stored_only_as_argon2id(
    api: TestClient, auth: Callable[..., dict[str, str]], settings: Settings
) -> None:
    password = "my very secret passphrase"
    response = api.post(
        "/users",
        headers=auth("read write"),
        json={"name": "A", "email": "a@example.com", "password": password},
    )
    assert response.status_code == 201, response.text
    [(stored,)] = db_rows(settings, "SELECT password_hash FROM users")
    assert stored.startswith(ARGON2_PREFIX)
    assert PasswordHasher().verify(stored, password)
    assert not any(password in cell for cell in all_cells(settings))
    assert password.encode() not in raw_bytes(settings)


# --- asymmetric signing -------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_asymmetric_keys_follow_the_secret_and_publish_only_the_public_half(
    algorithm: str,
) -> None:
    tokens = codec(algorithm=algorithm)
    # The same secret gives the same key (every instance signs alike), another secret another.
    assert codec(algorithm=algorithm).kid == tokens.kid
    assert codec(OTHER_KEY, algorithm=algorithm).kid != tokens.kid
    assert codec(algorithm="HS256").kid != tokens.kid
    (jwk,) = tokens.jwks()["keys"]
    assert jwk["kid"] == tokens.kid
    assert (jwk["alg"], jwk["use"]) == (algorithm, "sig")
    assert "d" not in jwk
    issued = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    assert jwt.get_unverified_header(issued)["alg"] == algorithm
    claims = jwt.decode(issued, jwt.PyJWK(jwk).key, algorithms=[algorithm], audience="aud-a")
    assert claims["sub"] == "cli_abc"
    assert tokens.verify(issued)["sub"] == "cli_abc"
    # Tokens of another algorithm from the same secret are refused: the algorithm is pinned.
    hs256 = codec(algorithm="HS256").issue(client_id="cli_abc", scopes=["read"]).access_token
    with pytest.raises(InvalidToken):
        tokens.verify(hs256)


def test_hs256_publishes_no_key() -> None:
    assert codec().jwks() == {"keys": []}


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_a_verified_asymmetric_token_is_not_checked_again(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = codec(algorithm=algorithm)
    token = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    tokens.verify(token)
    checks: list[str] = []
    original = tokens._verify
    monkeypatch.setattr(tokens, "_verify", lambda t: checks.append(t) or original(t))
    for _ in range(3):
        assert tokens.verify(token)["sub"] == "cli_abc"
    assert checks == []  # a signature check costs ~0.5 ms; the remembered claims cost none


# --- several keys: rotation and retirement, on an injected clock ---------------------------


def test_keys_sign_in_turn_and_verify_until_they_retire(monkeypatch: pytest.MonkeyPatch) -> None:
    # The codec's clock. PyJWT checks iat and exp against its own, the real one: the switch
    # is now, so that every token issued around it is valid for PyJWT.
    switch = time.time()
    clock = [switch - 100]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    old = SigningKey("EdDSA", new_private_key("EdDSA"))
    new = SigningKey("ES256", new_private_key("ES256"))
    retire = switch + 3600 + 10  # the old key's last token's lifetime, and the margins
    tokens = codec(ttl=3600)
    tokens.install([ScheduledKey(old, 0.0, retire), ScheduledKey(new, switch)])

    # Before the switch: the old key signs; the new one is published first, and trusted.
    before = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    assert jwt.get_unverified_header(before)["kid"] == old.kid
    assert [key["kid"] for key in tokens.jwks()["keys"]] == [new.kid, old.kid]

    clock[0] = switch
    after = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    assert jwt.get_unverified_header(after) == {"alg": "ES256", "kid": new.kid, "typ": "at+jwt"}
    # The old key's tokens verify until it retires.
    clock[0] = switch - 1
    last = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    clock[0] = retire - 0.5
    assert tokens.verify(last)["sub"] == "cli_abc"
    assert tokens.signer().kid == new.kid
    assert tokens.verify(after)["sub"] == "cli_abc"

    # Retired: out of the JWKS, and its tokens refused, remembered or not.
    clock[0] = retire
    assert [key["kid"] for key in tokens.jwks()["keys"]] == [new.kid]
    forged_late = jwt.encode(  # a token of the retired key (never remembered)
        {**jwt.decode(before, options={"verify_signature": False}), "jti": "fresh"},
        old.private,
        algorithm="EdDSA",
        headers={"typ": "at+jwt", "kid": old.kid},
    )
    with pytest.raises(InvalidToken):
        tokens.verify(forged_late)
    assert tokens.verify(after)["sub"] == "cli_abc"


def test_a_token_names_its_key_and_is_checked_with_that_keys_algorithm_only() -> None:
    hs256 = SigningKey("HS256", new_private_key("HS256"))
    eddsa = SigningKey("EdDSA", new_private_key("EdDSA"))
    tokens = codec()
    tokens.install([ScheduledKey(hs256, 0.0), ScheduledKey(eddsa, 1.0)])
    issued = tokens.issue(client_id="cli_abc", scopes=["read"]).access_token
    claims = jwt.decode(issued, options={"verify_signature": False})
    # The HS256 key's kid on an EdDSA header, and the reverse: refused.
    for kid, key, algorithm in [
        (hs256.kid, eddsa.private, "EdDSA"),
        (eddsa.kid, hs256.private, "HS256"),
    ]:
        token = jwt.encode(claims, key, algorithm=algorithm, headers={"typ": "at+jwt", "kid": kid})
        with pytest.raises(InvalidToken):
            tokens.verify(token)
    with pytest.raises(UnknownSigningKey):
        tokens.verify(jwt.encode(claims, hs256.private, algorithm="HS256", headers={"kid": "nope"}))
    assert tokens.jwks()["keys"] == [eddsa.public_jwk]  # the HS256 key is never published
