"""A client's public keys for ``private_key_jwt`` (RFC 7523): a JWK Set (RFC 7517) registered
with the client, or fetched from the URL it publishes one at.

A key set is checked when it is registered (``storefront clients create --jwks`` /
``--jwks-uri``, ``clients set-jwks``) and again when it is fetched: public keys only, of the
kinds the allowed algorithms sign with (RSA of 2048 bits or more, P-256, Ed25519), each with
a distinct ``kid`` when it has one. A set that fails is refused with one line saying why.

Fetched sets are kept per URL for ``STOREFRONT_JWKS_CACHE_TTL`` seconds; an assertion naming
a ``kid`` the kept set lacks fetches it again at once (at most once per ``REFETCH_INTERVAL``
per URL), so that a client that publishes a new key can sign with it straight away. A fetch
that fails keeps the set fetched before, if any.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from core.crypto import CLIENT_KEY_TYPES, MIN_RSA_BITS, PRIVATE_JWK_MEMBERS

logger = logging.getLogger("storefront.access.client_keys")

#: The algorithms a client assertion may be signed with (listed in discovery as
#: ``token_endpoint_auth_signing_alg_values_supported``): never ``none`` nor an HMAC.
ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
#: Which algorithms each kind of key signs with (core.crypto.CLIENT_KEY_TYPES).
_KEY_ALGORITHMS = {
    kty: tuple(alg for alg in ALGORITHMS if CLIENT_KEY_TYPES[alg][0] == kty)
    for kty in ("RSA", "EC", "OKP")
}
#: Bounds on what a client may register or publish.
MAX_KEYS = 20
MAX_DOCUMENT_BYTES = 64 * 1024
#: The least time between two fetches of one URL for a kid the kept set lacks.
REFETCH_INTERVAL = 10.0


class BadKeySet(Exception):
    """A key set that cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class ClientKey:
    kid: str | None
    #: The algorithms this key verifies: its kind's, narrowed to its ``alg`` when it has one.
    algorithms: tuple[str, ...]
    #: The public key object PyJWT verifies with.
    key: Any


@dataclass(frozen=True)
class KeySet:
    keys: tuple[ClientKey, ...]

    def candidates(self, *, kid: str | None, algorithm: str) -> list[ClientKey]:
        """The keys that may have signed a JWT of this ``kid`` header (when it has one) and
        ``alg``."""
        return [
            key
            for key in self.keys
            if algorithm in key.algorithms and (kid is None or key.kid == kid)
        ]


def _prepare(jwk: Any, index: int) -> ClientKey:
    where = f"key {index + 1}"
    if not isinstance(jwk, dict):
        raise BadKeySet(f"{where} is not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise BadKeySet(f"{where}: 'kid' must be a string")
    if kid is not None:
        where = f"key {kid!r}"
    private = [name for name in PRIVATE_JWK_MEMBERS if name in jwk]
    if private:
        raise BadKeySet(
            f"{where} holds private key material ({', '.join(private)}): register the public "
            "keys only, and keep the private ones with the client"
        )
    kty = jwk.get("kty")
    if kty not in _KEY_ALGORITHMS:
        raise BadKeySet(f"{where}: 'kty' must be RSA, EC or OKP, not {kty!r}")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise BadKeySet(f"{where}: 'use' is {use!r}; a key that signs assertions has 'sig'")
    algorithms = _KEY_ALGORITHMS[kty]
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in algorithms:
            raise BadKeySet(
                f"{where}: 'alg' {alg!r} is not one a {kty} key signs assertions with here "
                f"({', '.join(algorithms)})"
            )
        algorithms = (alg,)
    if kty == "EC" and jwk.get("crv") != "P-256":
        raise BadKeySet(f"{where}: an EC key must be on P-256 ('crv': 'P-256') for ES256")
    if kty == "OKP" and jwk.get("crv") != "Ed25519":
        raise BadKeySet(f"{where}: an OKP key must be Ed25519 ('crv': 'Ed25519') for EdDSA")
    try:
        key: Any
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(jwk)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(jwk)
        else:
            key = OKPAlgorithm.from_jwk(jwk)
    except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise BadKeySet(f"{where} is not a valid {kty} public key: {exc}") from None
    if kty == "RSA" and key.key_size < MIN_RSA_BITS:
        raise BadKeySet(f"{where}: an RSA key must have at least {MIN_RSA_BITS} bits")
    return ClientKey(kid, algorithms, key)


def parse_key_set(document: str | bytes) -> KeySet:
    """The keys of a JWK Set document; BadKeySet when it is no usable set of public keys."""
    if len(document) > MAX_DOCUMENT_BYTES:
        raise BadKeySet(f"the key set is over {MAX_DOCUMENT_BYTES // 1024} KiB")
    try:
        parsed = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise BadKeySet("the key set is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise BadKeySet('the key set must be a JSON object with a "keys" array (RFC 7517 §5)')
    found = parsed["keys"]
    if not found:
        raise BadKeySet("the key set has no keys")
    if len(found) > MAX_KEYS:
        raise BadKeySet(f"the key set has more than {MAX_KEYS} keys")
    keys = tuple(_prepare(jwk, index) for index, jwk in enumerate(found))
    kids = [key.kid for key in keys if key.kid is not None]
    if len(kids) != len(set(kids)):
        raise BadKeySet("two keys of the set have the same 'kid'")
    return KeySet(keys)


def normalized(document: str | bytes) -> str:
    """A registered key set as stored: checked, then written compactly."""
    parse_key_set(document)
    return json.dumps(json.loads(document), separators=(",", ":"), sort_keys=True)


#: Hosts that a plain-http key set URL may name: this machine only.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_jwks_uri(uri: str) -> str:
    """``uri`` if it can be a key set's URL: https (http only to this machine), a host, no
    fragment. Keys fetched over plain http from another host could be swapped on the way, and
    whoever swaps them could then sign as the client."""
    parts = urlsplit(uri)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise BadKeySet(f"not an https URL like https://client.example/jwks.json: {uri!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise BadKeySet(
            f"a key set's URL must be https (http only for localhost, in development): {uri!r}"
        )
    if parts.fragment or "#" in uri:
        raise BadKeySet(f"a key set's URL has no fragment: {uri!r}")
    if len(uri) > 2048:
        raise BadKeySet("a key set's URL is at most 2048 characters")
    return uri


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(exc, httpx.HTTPError):
        return f"it could not be reached ({type(exc).__name__})"
    return str(exc)


def _document(response: httpx.Response) -> bytes:
    if response.status_code != 200:
        raise BadKeySet(f"it answered {response.status_code}, not 200")
    return response.content


def fetch_now(uri: str, *, timeout: float) -> KeySet:
    """Fetch and check the key set at ``uri`` (for the CLI); BadKeySet saying why not."""
    try:
        response = httpx.get(uri, timeout=timeout, follow_redirects=False)
        return parse_key_set(_document(response))
    except (httpx.HTTPError, BadKeySet) as exc:
        raise BadKeySet(f"the key set at {uri} cannot be used: {_describe(exc)}") from None


@dataclass
class _Fetched:
    keys: KeySet
    at: float


class ClientKeys:
    """Each process's key sets: registered ones prepared once per document, fetched ones
    kept per URL."""

    #: Registered documents prepared at most; past it the memory starts over.
    MAX_PREPARED = 1000

    def __init__(self, *, timeout: float, ttl: float) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self._prepared: dict[str, KeySet] = {}
        self._fetched: dict[str, _Fetched] = {}
        #: When a kid the kept set lacked last had the set fetched again, per URL.
        self._refreshed: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def registered(self, document: str) -> KeySet:
        """The keys of a stored key set (checked when it was registered)."""
        keys = self._prepared.get(document)
        if keys is None:
            keys = parse_key_set(document)
            if len(self._prepared) >= self.MAX_PREPARED:
                self._prepared.clear()
            self._prepared[document] = keys
        return keys

    async def published(self, uri: str, *, refresh: bool = False) -> KeySet:
        """The key set at ``uri``: the one kept, fetched again when older than the TTL, or
        when ``refresh`` asks (a kid it lacks) and no fetch ran within REFETCH_INTERVAL.
        BadKeySet when there is none to use."""
        now = time.monotonic()
        kept = self._fetched.get(uri)
        if kept is not None and now - kept.at < self.ttl and not refresh:
            return kept.keys
        if refresh and kept is not None:
            if now - self._refreshed.get(uri, float("-inf")) < REFETCH_INTERVAL:
                return kept.keys
            self._refreshed[uri] = now  # claimed before the fetch: one per interval
        lock = self._locks.setdefault(uri, asyncio.Lock())
        async with lock:
            latest = self._fetched.get(uri)
            if latest is not None and latest is not kept:  # fetched while this one waited
                return latest.keys
            try:
                keys = await self._fetch(uri)
            except BadKeySet as exc:
                if kept is not None:
                    logger.warning("%s; using the key set fetched before", exc)
                    return kept.keys
                raise
            self._fetched[uri] = _Fetched(keys, time.monotonic())
            return keys

    async def _fetch(self, uri: str) -> KeySet:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
                response = await http.get(uri, headers={"Accept": "application/json"})
            return parse_key_set(_document(response))
        except (httpx.HTTPError, BadKeySet) as exc:
            why = _describe(exc)
            raise BadKeySet(f"the client's key set at {uri} cannot be used: {why}") from None
