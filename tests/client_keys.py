"""A client's own key pairs and the assertions it signs with them (``private_key_jwt``), as a
client written on PyJWT would make them."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class KeyPair:
    private: Any
    algorithm: str
    kid: str

    @classmethod
    def new(cls, algorithm: str = "ES256", kid: str | None = None) -> KeyPair:
        private: Any
        if algorithm in {"RS256", "PS256"}:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = ed25519.Ed25519PrivateKey.generate()
        return cls(private, algorithm, kid or f"k-{secrets.token_hex(4)}")

    def public_jwk(self) -> dict[str, Any]:
        loader: Any = {"RS256": RSAAlgorithm, "PS256": RSAAlgorithm, "ES256": ECAlgorithm}.get(
            self.algorithm, OKPAlgorithm
        )
        jwk: dict[str, Any] = json.loads(loader.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **header}
        )


def jwks(*pairs: KeyPair) -> str:
    return json.dumps({"keys": [pair.public_jwk() for pair in pairs]})


def assertion(
    pair: KeyPair,
    client_id: str,
    *,
    aud: Any = "storefront-api",
    expires_in: float = 60,
    jti: str | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": int(now + expires_in),
        "jti": jti or secrets.token_urlsafe(16),
        **claims,
    }
    return pair.sign({k: v for k, v in body.items() if v is not None})


def assertion_form(signed: str, **extra: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **extra}
