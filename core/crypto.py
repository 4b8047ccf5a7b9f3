"""Credential primitives: access tokens (RFC 9068 JWTs), keyed digests of secrets, password
hashes. No HTTP and no storage here: the access layer decides when to use them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import anyio
import jwt
from argon2 import PasswordHasher, Type
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_encode

Algorithm = Literal["EdDSA", "ES256", "HS256"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


def as_algorithm(name: str) -> Algorithm:
    """``name`` as an Algorithm; ValueError for any other (a stored row that was altered)."""
    if name not in ALGORITHMS:
        raise ValueError(f"not a signing algorithm: {name!r}")
    return name  # narrowed to Algorithm by the membership test


#: The algorithms whose public keys the JWKS publishes.
ASYMMETRIC: frozenset[str] = frozenset({"EdDSA", "ES256"})
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


def _derived(secret: bytes, label: str, length: int) -> bytes:
    """``length`` bytes from ``secret`` by HKDF-SHA256 under a label per use (RFC 5869)."""
    info = f"storefront signing key: {label}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


#: The order of P-256's group.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def derived_private_key(secret: bytes, algorithm: Algorithm) -> Any:
    """The private key of ``algorithm`` derived from the signing secret, as before migration
    0009: what every instance given that secret signed with. It becomes the database's first
    signing key, with the same kid, so that tokens issued before the upgrade stay valid.

    HS256's key is the secret itself; the asymmetric keys come from it by HKDF.
    """
    if algorithm == "HS256":
        return secret
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.from_private_bytes(_derived(secret, "Ed25519", 32))
    # A P-256 scalar: 48 bytes reduced modulo the group order minus one, so the bias is
    # below 2**-128 (FIPS 186-5 A.2.1) and the scalar is never zero.
    scalar = int.from_bytes(_derived(secret, "P-256", 48), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


#: Bytes of a new HS256 key: the size of the hash output (RFC 7518 §3.2).
HS256_KEY_BYTES = 32


def new_private_key(algorithm: Algorithm) -> Any:
    """A new random private key of ``algorithm`` (from the operating system's CSPRNG)."""
    if algorithm == "HS256":
        return secrets.token_bytes(HS256_KEY_BYTES)
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def private_key_bytes(algorithm: Algorithm, private: Any) -> bytes:
    """The private key as the bytes that are encrypted into the database: the HMAC key, the
    Ed25519 seed (32 bytes), or the P-256 scalar (32 bytes, big-endian)."""
    if algorithm == "HS256":
        return bytes(private)
    if algorithm == "EdDSA":
        raw: bytes = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return raw
    scalar: int = private.private_numbers().private_value
    return scalar.to_bytes(32, "big")


def private_key_from_bytes(algorithm: Algorithm, raw: bytes) -> Any:
    """The inverse of :func:`private_key_bytes`."""
    if algorithm == "HS256":
        return raw
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


class UnreadableKey(Exception):
    """A stored signing key does not decrypt under this key-encryption key (another KEK, or a
    row that was altered)."""


class KeyEncryption:
    """AES-256-GCM under a key-encryption key (KEK) derived by HKDF-SHA256 from the signing
    secret (STOREFRONT_JWT_SECRET or the key directory's jwt-signing.key).

    Each signing key is sealed with a random 96-bit nonce, and its kid and algorithm as the
    associated data: a sealed key copied to another row, or relabelled with another algorithm,
    does not decrypt. The stored form is the nonce followed by the ciphertext and tag.
    """

    NONCE_BYTES = 12

    def __init__(self, secret: bytes) -> None:
        kek = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"storefront key-encryption key: signing keys",
        ).derive(secret)
        self._aead = AESGCM(kek)

    @staticmethod
    def _associated(kid: str, algorithm: str) -> bytes:
        return f"storefront signing key|{kid}|{algorithm}".encode()

    def seal(self, *, kid: str, algorithm: str, key: bytes) -> bytes:
        nonce = os.urandom(self.NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, self._associated(kid, algorithm))

    def open(self, *, kid: str, algorithm: str, sealed: bytes) -> bytes:
        nonce, ciphertext = sealed[: self.NONCE_BYTES], sealed[self.NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, self._associated(kid, algorithm))
        except (InvalidTag, ValueError):
            raise UnreadableKey(f"signing key {kid} does not decrypt") from None


class SigningKey:
    """One signing key, prepared once: its kid, its public JWK (None for HS256, whose key is a
    shared secret and never published), the header of the tokens it signs, and the key objects
    PyJWT's algorithm signs and verifies with (PyJWT would otherwise parse and check the key
    on every call)."""

    def __init__(self, algorithm: Algorithm, private: Any) -> None:
        self.algorithm: Algorithm = algorithm
        self._impl = get_default_algorithms()[algorithm]
        self.private = private
        self._signing = self._impl.prepare_key(private)
        self.public_jwk: dict[str, Any] | None = None
        if algorithm in ASYMMETRIC:
            self.verifying = self._impl.prepare_key(private.public_key())
            jwk: dict[str, Any] = self._impl.to_jwk(self.verifying, as_dict=True)
            # The RFC 7638 thumbprint: a kid any party can recompute from the public key.
            self.kid = jwk_thumbprint(jwk)
            self.public_jwk = {**jwk, "kid": self.kid, "alg": algorithm, "use": "sig"}
        else:
            self.verifying = self._signing
            self.kid = hashlib.sha256(b"kid:" + bytes(private)).hexdigest()[:16]
        header = {"alg": algorithm, "kid": self.kid, "typ": TOKEN_TYPE}
        self.header = base64url_encode(json.dumps(header, separators=(",", ":")).encode())

    def sign(self, signing_input: bytes) -> bytes:
        return base64url_encode(self._impl.sign(signing_input, self._signing))


@dataclass(frozen=True)
class ScheduledKey:
    """A signing key and its life cycle, in epoch seconds (see persistence.signing_keys):
    it signs from ``activates_at`` until a newer key activates, and verifies until
    ``retires_at`` (never, while None)."""

    key: SigningKey
    activates_at: float = 0.0
    retires_at: float | None = None

    def retired(self, now: float) -> bool:
        return self.retires_at is not None and now >= self.retires_at


class UnknownSigningKey(InvalidToken):
    """The token names a kid this codec does not hold (yet: another instance may have
    rotated); the caller may reload the keys once and try again."""


class NoSigningKey(Exception):
    """No key may sign now (none is loaded, or all have retired)."""


#: Verified tokens remembered at most (see TokenCodec.verify); past it the memory starts over.
VERIFIED_TOKENS_MAX = 10_000
#: Seconds of clock skew tolerated on ``exp`` and ``iat``.
LEEWAY = 5


class TokenCodec:
    """Issues and verifies access tokens in the RFC 9068 profile.

    It holds a set of keys (``install``): the active one signs, every one not retired
    verifies the tokens that name its kid, each with its own algorithm pinned (EdDSA, ES256
    or HS256). Given ``key``, it holds one key derived from that secret, never retiring (the
    codec before migration 0009; the unit tests' and benchmarks' shortcut).
    """

    def __init__(
        self,
        key: bytes | None = None,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        algorithm: Algorithm = "HS256",
        resources: Sequence[str] = (),
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        #: Every audience a token of this issuer may carry: the default one and the RFC 8707
        #: resources it issues tokens for. Which of them a resource server accepts is its
        #: own check (storefront.access.resources), after this one.
        self.audiences = [audience, *(r for r in resources if r != audience)]
        self.ttl = ttl
        self._jwt = jwt.PyJWT(options={"require": REQUIRED_CLAIMS})
        self._keys: dict[str, ScheduledKey] = {}
        #: The same keys by the header (base64url) of the tokens they sign.
        self._by_header: dict[str, ScheduledKey] = {}
        self._signer: SigningKey | None = None
        #: The signer holds until this time (the next activation or its own retirement).
        self._signer_until = 0.0
        #: token -> its claims, for tokens that passed every check.
        self._verified: dict[str, dict[str, Any]] = {}
        if key is not None:
            self.install([ScheduledKey(SigningKey(algorithm, derived_private_key(key, algorithm)))])

    def install(self, keys: list[ScheduledKey]) -> None:
        """Hold ``keys`` from now on, in place of those held before."""
        gone = self._keys.keys() - {scheduled.key.kid for scheduled in keys}
        self._keys = {scheduled.key.kid: scheduled for scheduled in keys}
        self._by_header = {s.key.header.decode("ascii"): s for s in keys}
        self._signer, self._signer_until = None, 0.0
        if gone:  # a key withdrawn: the tokens it signed are checked again
            self._verified.clear()

    def signer(self, now: float | None = None) -> SigningKey:
        """The key that signs at ``now``: of the keys active by then and not retired, the one
        activated last."""
        now = time.time() if now is None else now
        if self._signer is not None and now < self._signer_until:
            return self._signer
        live = [s for s in self._keys.values() if not s.retired(now)]
        if not live:
            raise NoSigningKey("no signing key is loaded")
        active = [s for s in live if s.activates_at <= now]
        # None active yet (this clock behind the one that made the first key): the first to
        # activate signs, rather than nothing.
        chosen = (
            max(active, key=lambda s: (s.activates_at, s.key.kid))
            if active
            else min(live, key=lambda s: (s.activates_at, s.key.kid))
        )
        later = [s.activates_at for s in live if s.activates_at > max(now, chosen.activates_at)]
        until = min([*later, chosen.retires_at or float("inf")])
        self._signer, self._signer_until = chosen.key, until
        return chosen.key

    @property
    def kid(self) -> str:
        """The kid of the key that signs now."""
        return self.signer().kid

    def issue(
        self,
        *,
        client_id: str,
        scopes: list[str],
        audience: str | list[str] | None = None,
        confirmation: str | None = None,
    ) -> IssuedToken:
        """A token for ``client_id``; its ``aud`` is ``audience`` (RFC 8707 resources: one
        string, or a list of several) or, by default, the codec's audience; with
        ``confirmation`` (a JWK thumbprint) bound to that key by ``cnf.jkt`` (RFC 9449 §6.1)."""
        clock = time.time()
        now = int(clock)
        key = self.signer(clock)
        scope = " ".join(scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience if audience is None else audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": os.urandom(16).hex(),  # as random as uuid4().hex, a fifth of the cost
            "client_id": client_id,
            "scope": scope,
        }
        if confirmation is not None:
            claims["cnf"] = {"jkt": confirmation}
        # The JWS compact serialisation (RFC 7515 §7.1) of a header fixed per key, signed with
        # PyJWT's own algorithm and a key prepared once: jwt.encode re-checks on every call that
        # the key is no PEM, SSH or DER key (parsing it with cryptography), half its cost.
        payload = base64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = key.header + b"." + payload
        token = (signing_input + b"." + key.sign(signing_input)).decode("ascii")
        return IssuedToken(access_token=token, expires_in=self.ttl, scope=scope)

    def jwks(self, now: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set (RFC 7517 §5) of the public keys that verify tokens now: every key not
        retired (the next one before it signs, the previous ones until their tokens have
        expired), newest first. HS256 keys are shared secrets and never published."""
        now = time.time() if now is None else now
        live = [s for s in self._keys.values() if not s.retired(now)]
        live.sort(key=lambda s: (s.activates_at, s.key.kid), reverse=True)
        return {"keys": [dict(s.key.public_jwk) for s in live if s.key.public_jwk is not None]}

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raises InvalidToken otherwise (UnknownSigningKey when
        its kid names no key held).

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
        # The tokens this server issues carry the header of their key byte for byte: found by
        # it without decoding anything. Any other header is decoded for its kid.
        scheduled = self._by_header.get(token.partition(".")[0])
        if scheduled is None:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.PyJWTError:
                raise InvalidToken("The access token is invalid.") from None
            scheduled = self._keys.get(kid) if isinstance(kid, str) else None
        if scheduled is None:
            raise UnknownSigningKey("The access token is invalid.")
        if scheduled.retired(time.time()):
            raise InvalidToken("The access token is invalid.")
        key = scheduled.key
        try:
            decoded = self._jwt.decode_complete(
                token,
                key.verifying,
                algorithms=[key.algorithm],  # the key's own: never the token's choice
                audience=self.audiences,  # any one of them
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
        if claims["sub"] != claims["client_id"]:
            raise InvalidToken("The access token is invalid.")
        if not isinstance(claims["scope"], str):
            raise InvalidToken("The access token is invalid.")
        # RFC 7519 §2: a NumericDate is a JSON number. PyJWT also takes a numeric string,
        # which the remembered-token check (a number comparison) could not use.
        if not all(_numeric_date(claims.get(name, 0)) for name in ("exp", "iat", "nbf")):
            raise InvalidToken("The access token is invalid.")
        return claims


#: What a client's own public key may be, wherever a client presents one (a registered key set
#: for private_key_jwt, a DPoP proof's ``jwk``): the algorithms it signs with and the JWK key
#: type (and curve) each takes; never ``none`` nor an HMAC.
CLIENT_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
#: JWK members that only a private (or symmetric) key has (RFC 7518 §6, RFC 8037 §2).
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
#: The smallest RSA key taken from a client.
MIN_RSA_BITS = 2048


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url."""
    required = {
        "OKP": ("crv", "kty", "x"),
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
    }[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"))
    return base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode("ascii")


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
