"""A DPoP client (RFC 9449) as a client would write one with a JOSE library: PyJWT signs the
proofs, cryptography makes the keys. Nothing of the server's code is used here."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_private_key(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)  # RS256, PS256


class DPoPKey:
    """A client's key pair and the proofs it signs."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        self.private = new_private_key(alg)
        self.public_jwk: dict[str, Any] = json.loads(
            get_default_algorithms()[alg].to_jwk(self.private.public_key())
        )

    @property
    def thumbprint(self) -> str:
        """RFC 7638: SHA-256 of the required members, sorted, without white space."""
        required = {
            "EC": ("crv", "kty", "x", "y"),
            "OKP": ("crv", "kty", "x"),
            "RSA": ("e", "kty", "n"),
        }
        members = {name: self.public_jwk[name] for name in required[self.public_jwk["kty"]]}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        return b64url(hashlib.sha256(canonical.encode()).digest())

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A proof for ``method`` ``url`` (with ``ath`` of ``token``); ``claims`` and
        ``header`` override what a well-behaved client would send."""
        payload: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if token is not None:
            payload["ath"] = b64url(hashlib.sha256(token.encode("ascii")).digest())
        if nonce is not None:
            payload["nonce"] = nonce
        payload.update(claims)
        headers = {"typ": "dpop+jwt", "jwk": self.public_jwk, **(header or {})}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)
