"""DPoP (RFC 9449): access tokens bound to a key the client holds, proven on every request.

A client sends a *proof* in the ``DPoP`` header: a JWT it signs with its own private key, whose
header carries the public key (``jwk``) and whose claims name the request (``htm``, ``htu``),
the time (``iat``), a one-time ``jti`` and, at the API, a hash of the access token (``ath``).

- At the token endpoint a valid proof binds the token to the key: the token carries
  ``cnf.jkt``, the key's RFC 7638 thumbprint, and ``token_type`` is ``DPoP``.
- At the API a bound token is accepted only as ``Authorization: DPoP <token>`` with a fresh
  proof by that key (``storefront.access.authn.dpop_info``); as ``Bearer`` it is refused.

What a proof must be (§4.3): one ``DPoP`` field; ``typ`` ``dpop+jwt``; an asymmetric ``alg``
of ``ALGORITHMS``; ``jwk`` a public key of that algorithm (no private members); a signature
that verifies under it; ``htm`` the request's method; ``htu`` the request's URL, built from
STOREFRONT_PUBLIC_URL (never from ``Host``) and compared without query and fragment; ``iat``
within STOREFRONT_DPOP_PROOF_WINDOW of the server's clock; ``ath`` base64url(SHA-256(token));
the current server nonce when STOREFRONT_DPOP_NONCE is on; and a ``jti`` never seen before,
remembered across instances (``storefront.access.replay``, the rate-limit store).

The cost per request is one signature verification and one replay look-up: a proof's header
(the client's key) is parsed, its key prepared and its thumbprint computed once, then kept in
a small LRU by the header's text, which a client repeats byte for byte. Only headers whose
proof verified are kept, so made-up keys cannot fill it. The signature is checked by PyJWT's
algorithm for it, bound to the key when the key is prepared.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError
from jwt.utils import base64url_encode
from starlette.types import Scope

from core.crypto import CLIENT_KEY_TYPES, MIN_RSA_BITS, PRIVATE_JWK_MEMBERS, jwk_thumbprint
from core.errors import DPoPProofRefused
from core.settings import Settings
from storefront.access.replay import ReplayGuard

#: The proof signing algorithms accepted (and advertised: dpop_signing_alg_values_supported).
ALGORITHMS: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA")
PROOF_TYPE = "dpop+jwt"
#: Proof headers (keys) remembered at once; the least recently used goes first.
KEYS_MAX = 1024
#: The longest ``jti`` taken (RFC 9449 asks for 96 random bits or more; this bounds the rest).
JTI_MAX = 256
#: The longest proof read: past it the field is refused before anything is decoded.
PROOF_MAX = 8192
#: The namespace of proof ``jti``s in the replay store.
REPLAY_NAMESPACE = "dpop"
#: Scheme tokens of the Authorization field (RFC 9110 §11.1: case-insensitive).
SCHEME = "DPoP"


def request_path(scope: Scope) -> str:
    """The request's path as sent (percent-encoded, without the query), as a proof's ``htu``
    names it."""
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


@functools.lru_cache(maxsize=KEYS_MAX)
def token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(the access token's ASCII)), unpadded (RFC 9449 §4.2).
    Remembered: a client sends the same token, with a new proof, until it expires."""
    return base64url_encode(hashlib.sha256(token.encode("ascii", "replace")).digest()).decode()


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64decode(text: str) -> bytes:
    """base64url, unpadded; as ``base64.urlsafe_b64decode`` decodes it (a non-ASCII text is
    a ValueError, characters outside the alphabet are skipped), without its layers."""
    if "=" in text:
        raise ValueError("padded")
    data = text.encode("ascii").translate(_URLSAFE)
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


_decode_json = json.JSONDecoder().decode


def _json_object(segment: str) -> dict[str, Any]:
    raw = _b64decode(segment)
    # An object in UTF-8, as every proof's is (json.detect_encoding's answer for a first byte
    # "{" and a second one not zero): decoded as json.loads would, without its layers.
    if raw[:1] == b"{" and raw[1:2] != b"\0":
        value = _decode_json(raw.decode("utf-8", "surrogatepass"))
    else:
        value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _verifier(algorithm: str, key: Any) -> Callable[[bytes, bytes], None]:
    """``verify(signature, signing_input)`` for a public key of ``algorithm``: PyJWT's check
    of that algorithm's signatures (RFC 7518 §3.3-3.5, RFC 8037 §3.1), bound to the key once;
    raises InvalidSignature unless the signature is the key's over the input. (A copy of
    PyJWT's checks on cryptography saved 7-8 µs of an ES256 proof's 120: not worth owning
    security code that PyJWT keeps.)"""
    check = get_default_algorithms()[algorithm].verify

    def verify(signature: bytes, data: bytes) -> None:
        if not check(data, key, signature):
            raise InvalidSignature()

    return verify


@dataclass(frozen=True, slots=True)
class ProofKey:
    """A proof header's key, prepared: its algorithm, the check of its signatures
    (``_verifier``), and its thumbprint."""

    algorithm: str
    verify: Callable[[bytes, bytes], None]
    jkt: str


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed every check: the thumbprint of its key."""

    jkt: str


def _origin(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) of an absolute URL, normalised as RFC 3986 §6.2.2-6.2.3
    allows: scheme and host lower-case, a default port dropped, an empty path as ``/``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in {("http", 80), ("https", 443)}:
        host = f"{host}:{port}"
    return scheme, host, parts.path or "/"


class NonceClock:
    """Server nonces (RFC 9449 §8) that every instance knows without storing them: the
    nonce of each period is an HMAC of its number under a key derived from the pepper. The
    current one and the one before it are accepted, so that a nonce is good for at least one
    whole period."""

    def __init__(self, secret: bytes, period: int, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(secret, b"storefront dpop nonce key", hashlib.sha256).digest()
        self.period = period
        self._clock = clock
        self._step = -1
        self._accepted: tuple[str, str] = ("", "")

    def _nonce(self, step: int) -> str:
        mac = hmac.new(self._key, step.to_bytes(8, "big", signed=True), hashlib.sha256)
        return base64url_encode(mac.digest()[:18]).decode()

    def _refresh(self) -> tuple[str, str]:
        step = math.floor(self._clock() / self.period)
        if step != self._step:
            self._accepted = (self._nonce(step), self._nonce(step - 1))
            self._step = step
        return self._accepted

    def current(self) -> str:
        return self._refresh()[0]

    def accepts(self, nonce: object) -> bool:
        return isinstance(nonce, str) and nonce in self._refresh()


class DPoPVerifier:
    """Checks DPoP proofs for this server (one per app, in ``Services.dpop``)."""

    def __init__(
        self,
        *,
        base_url: str,
        window: int,
        nonces: NonceClock | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: The scheme, host and path prefix of every ``htu``: STOREFRONT_PUBLIC_URL (or the
        #: issuer, as discovery advertises the endpoints); "" when neither is a URL, and then
        #: no proof can be checked.
        self.base_url = base_url
        self._origin = _origin(base_url) if base_url else None
        self.window = window
        self.nonces = nonces
        self._clock = clock
        self._keys: OrderedDict[str, ProofKey] = OrderedDict()
        self._implementations = {
            name: impl for name, impl in get_default_algorithms().items() if name in ALGORITHMS
        }

    @classmethod
    def from_settings(cls, settings: Settings, *, base_url: str, secret: bytes) -> DPoPVerifier:
        nonces = NonceClock(secret, settings.dpop_nonce_period) if settings.dpop_nonce else None
        return cls(base_url=base_url, window=settings.dpop_proof_window, nonces=nonces)

    @property
    def enabled(self) -> bool:
        """Whether proofs can be checked: the server knows its own URL."""
        return self._origin is not None

    def current_nonce(self) -> str | None:
        return None if self.nonces is None else self.nonces.current()

    def _refuse(self, message: str, code: str = "invalid_dpop_proof") -> DPoPProofRefused:
        return DPoPProofRefused(code, message)

    def _key(self, segment: str) -> ProofKey:
        """The key of a proof header, prepared (not yet trusted: its signature is checked by
        the caller, who then remembers it)."""
        try:
            header = _json_object(segment)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise self._refuse("The DPoP proof's header is not base64url JSON.") from None
        if str(header.get("typ", "")).lower() != PROOF_TYPE:
            raise self._refuse(f"The DPoP proof's 'typ' must be '{PROOF_TYPE}'.")
        algorithm = header.get("alg")
        if algorithm not in self._implementations:
            raise self._refuse(
                "The DPoP proof's 'alg' must be one of " + ", ".join(ALGORITHMS) + "."
            )
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise self._refuse("The DPoP proof's header must carry the public key as 'jwk'.")
        if any(name in jwk for name in PRIVATE_JWK_MEMBERS):
            raise self._refuse("The DPoP proof's 'jwk' holds a private key: send the public key.")
        kty, crv = CLIENT_KEY_TYPES[algorithm]
        if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
            wanted = kty if crv is None else f"{kty} {crv}"
            raise self._refuse(f"The DPoP proof's 'jwk' must be an {wanted} key for {algorithm}.")
        try:
            key = self._implementations[algorithm].from_jwk(jwk)
            jkt = jwk_thumbprint(jwk)
        except (InvalidKeyError, ValueError, KeyError, TypeError):
            raise self._refuse("The DPoP proof's 'jwk' is not a valid public key.") from None
        if kty == "RSA" and key.key_size < MIN_RSA_BITS:
            raise self._refuse(f"The DPoP proof's RSA key must have {MIN_RSA_BITS} bits or more.")
        return ProofKey(algorithm, _verifier(algorithm, key), jkt)

    async def check(
        self,
        proofs: Iterable[bytes],
        *,
        method: str,
        path: str,
        replay: ReplayGuard,
        access_token: str | None = None,
        bound_to: str | None = None,
    ) -> Proof:
        """The proof of a request whose ``DPoP`` fields are ``proofs`` (as sent), to ``path``
        (as sent, without the query) with ``method``; with ``access_token``, a proof of its
        possession (``ath``) by the key ``bound_to`` (its ``cnf.jkt``). Raises
        DPoPProofRefused."""
        if self._origin is None:
            raise self._refuse(
                "DPoP is not available: this server has no STOREFRONT_PUBLIC_URL to check a "
                "proof's 'htu' against."
            )
        fields = list(proofs)
        if not fields:
            raise self._refuse("A DPoP proof is required: send one in the 'DPoP' header.")
        if len(fields) > 1:
            raise self._refuse("Send one DPoP header field, holding one proof.")
        raw = fields[0]
        if len(raw) > PROOF_MAX:
            raise self._refuse("The DPoP proof is too long.")
        text = raw.decode("latin-1").strip()
        header_segment, dot, rest = text.partition(".")
        payload_segment, dot2, signature_segment = rest.partition(".")
        if not (dot and dot2) or "." in signature_segment:
            raise self._refuse("The DPoP proof is not a JWS in compact serialisation.")

        remembered = self._keys.get(header_segment)
        prepared = remembered if remembered is not None else self._key(header_segment)
        try:
            signature = _b64decode(signature_segment)
        except (ValueError, binascii.Error):
            raise self._refuse("The DPoP proof's signature is not base64url.") from None
        signing_input = f"{header_segment}.{payload_segment}".encode("ascii", "replace")
        try:
            prepared.verify(signature, signing_input)
        except InvalidSignature:
            raise self._refuse(
                "The DPoP proof's signature does not verify with its 'jwk'."
            ) from None
        if remembered is None:
            self._keys[header_segment] = prepared
            while len(self._keys) > KEYS_MAX:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(header_segment)

        try:
            claims = _json_object(payload_segment)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise self._refuse("The DPoP proof's claims are not base64url JSON.") from None
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= JTI_MAX:
            raise self._refuse("The DPoP proof needs a 'jti': a new random string per proof.")
        if claims.get("htm") != method:
            raise self._refuse(f"The DPoP proof's 'htm' must be this request's method, {method}.")
        self._check_htu(claims.get("htu"), path)
        now = self._clock()
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise self._refuse("The DPoP proof needs 'iat': when it was made, in epoch seconds.")
        if abs(now - iat) > self.window:
            raise self._refuse(
                f"The DPoP proof's 'iat' is more than {self.window} s from the server's clock: "
                "make a new proof for each request (and check the client's clock)."
            )
        if access_token is not None and claims.get("ath") != token_hash(access_token):
            raise self._refuse(
                "The DPoP proof's 'ath' must be base64url(SHA-256(the access token))."
            )
        if self.nonces is not None and not self.nonces.accepts(claims.get("nonce")):
            raise DPoPProofRefused(
                "use_dpop_nonce",
                "This server requires a nonce in DPoP proofs: make a new proof with 'nonce' "
                "set to the DPoP-Nonce header of this response.",
                nonce=self.nonces.current(),
            )
        if bound_to is not None and prepared.jkt != bound_to:
            raise self._refuse(
                "The DPoP proof is signed by another key than the one the access token is bound to."
            )
        # Last, once everything else holds: a refused proof spends no identifier.
        if not await replay.first_use(
            REPLAY_NAMESPACE, f"{prepared.jkt}:{jti}", iat + self.window + 1
        ):
            raise self._refuse("This DPoP proof was used before: make a new proof per request.")
        return Proof(prepared.jkt)

    async def token_request(self, scope: Scope, replay: ReplayGuard) -> str | None:
        """At the token endpoint: the thumbprint of the key the request's DPoP proof proves
        (the token is then bound to it), or None when it carries no ``DPoP`` field."""
        fields = [value for name, value in scope["headers"] if name == b"dpop"]
        if not fields:
            return None
        proof = await self.check(
            fields, method=scope["method"], path=request_path(scope), replay=replay
        )
        return proof.jkt

    def _check_htu(self, htu: object, path: str) -> None:
        assert self._origin is not None
        scheme, host, prefix = self._origin
        wanted = f"{scheme}://{host}{prefix.rstrip('/')}{path}"
        if htu == wanted:  # as a client builds it from the public URL: nothing to normalise
            return
        try:
            sent = _origin(htu) if isinstance(htu, str) else None
        except ValueError:  # a port that is not a number
            sent = None
        if sent != (scheme, host, prefix.rstrip("/") + path):
            raise self._refuse(f"The DPoP proof's 'htu' must be this request's URL, {wanted}.")
