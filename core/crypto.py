"""Credential primitives: access tokens (RFC 9068 JWTs), keyed digests of secrets, password
hashes. No HTTP and no storage here: the access layer decides when to use them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import anyio
import jwt
from argon2 import PasswordHasher, Type
from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_encode

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"]


class InvalidToken(Exception):
    """The token is not one this server issued, or no longer valid; the message says why."""


class SecretDigester:
    """HMAC-SHA256 under a server pepper.

    Client secrets and API keys are high-entropy and server-generated, so a keyed digest is as
    safe to store as a password hash and costs microseconds instead of tens of milliseconds.
    """

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper
        # Compared against when a client does not exist, so that the work done is the same.
        self.dummy_digest = self.digest(secrets.token_urlsafe(32))

    def digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()

    def matches(self, secret: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(secret), digest)


def fingerprint(secret: bytes, label: str) -> str:
    """HMAC-SHA256 of a fixed ``label`` under ``secret``, hex.

    Tells whether two secrets are the same without storing either: the database keeps it to
    recognise the pepper and signing key it was set up with. A MAC, not a plain hash of the
    secret, and under a label per purpose, so that it is useless as a digest of anything else.
    """
    return hmac.new(secret, f"storefront fingerprint: {label}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


#: Verified tokens remembered at most (see TokenCodec.verify); past it the memory starts over.
VERIFIED_TOKENS_MAX = 10_000
#: Seconds of clock skew tolerated on ``exp`` and ``iat``.
LEEWAY = 5


class TokenCodec:
    """Issues and verifies HS256 access tokens in the RFC 9068 profile, algorithm pinned."""

    def __init__(self, key: bytes, *, issuer: str, audience: str, ttl: int) -> None:
        self._key = key
        self.kid = hashlib.sha256(b"kid:" + key).hexdigest()[:16]
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._jwt = jwt.PyJWT(options={"require": REQUIRED_CLAIMS})
        self._algorithm = get_default_algorithms()[ALGORITHM]
        self._prepared_key = self._algorithm.prepare_key(key)
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": TOKEN_TYPE}
        self._header = base64url_encode(json.dumps(header, separators=(",", ":")).encode())
        #: token -> its claims, for tokens that passed every check.
        self._verified: dict[str, dict[str, Any]] = {}

    def issue(self, *, client_id: str, scopes: list[str]) -> IssuedToken:
        now = int(time.time())
        scope = " ".join(scopes)
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": os.urandom(16).hex(),  # as random as uuid4().hex, a fifth of the cost
            "client_id": client_id,
            "scope": scope,
        }
        # The JWS compact serialisation (RFC 7515 §7.1) of a header fixed per key, signed with
        # PyJWT's own algorithm and a key prepared once: jwt.encode re-checks on every call that
        # the key is no PEM, SSH or DER key (parsing it with cryptography), half its cost.
        payload = base64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = self._header + b"." + payload
        signature = base64url_encode(self._algorithm.sign(signing_input, self._prepared_key))
        token = (signing_input + b"." + signature).decode("ascii")
        return IssuedToken(access_token=token, expires_in=self.ttl, scope=scope)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raises InvalidToken otherwise.

        A client sends the same token with every request until it expires, and decoding and
        checking it again (base64, JSON, HMAC, seven claims) was a sixth of the cost of a
        request. A token that passed is remembered with its claims: the same string verifies
        the same way, except for time, so a remembered token is only re-checked for expiry.
        Only tokens with a valid signature are remembered, so guesses cannot fill the memory.
        """
        claims = self._verified.get(token)
        if claims is not None:
            if time.time() < claims["exp"] + LEEWAY:
                return claims
            del self._verified[token]
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            decoded = self._jwt.decode_complete(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired.") from None
        except jwt.PyJWTError:
            raise InvalidToken("The access token is invalid.") from None
        header = decoded["header"]
        claims: dict[str, Any] = decoded["payload"]
        if str(header.get("typ", "")).lower() not in {TOKEN_TYPE, "application/" + TOKEN_TYPE}:
            raise InvalidToken("The access token is invalid.")
        if header.get("kid") != self.kid or claims["sub"] != claims["client_id"]:
            raise InvalidToken("The access token is invalid.")
        if not isinstance(claims["scope"], str):
            raise InvalidToken("The access token is invalid.")
        # RFC 7519 §2: a NumericDate is a JSON number. PyJWT also takes a numeric string,
        # which the remembered-token check (a number comparison) could not use.
        if not all(_numeric_date(claims.get(name, 0)) for name in ("exp", "iat", "nbf")):
            raise InvalidToken("The access token is invalid.")
        return claims


def _numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class PasswordHashing:
    """argon2id with OWASP's minimum parameters (19 MiB, t=2, p=1).

    Each hash holds its memory for its duration, so the number running at once is capped:
    a burst of sign-ups queues instead of exhausting memory, and runs off the event loop.
    """

    MEMORY_KIB = 19456
    TIME_COST = 2
    PARALLELISM = 1

    def __init__(self, *, concurrency: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=self.TIME_COST,
            memory_cost=self.MEMORY_KIB,
            parallelism=self.PARALLELISM,
            type=Type.ID,
        )
        self._limiter = anyio.CapacityLimiter(concurrency)

    @property
    def parameters(self) -> str:
        return f"argon2id m={self.MEMORY_KIB} KiB, t={self.TIME_COST}, p={self.PARALLELISM}"

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)
