"""Identifiers and server-generated secrets: random, URL-safe, prefixed by what they name."""

from __future__ import annotations

import secrets

API_KEY_PREFIX = "sk_"


def new_secret() -> str:
    """A client secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_id(prefix: str, nbytes: int = 12) -> str:
    """``prefix`` + 16 URL-safe random characters (96 bits) for 12 bytes."""
    return prefix + secrets.token_urlsafe(nbytes)
