"""What the handlers need at run time, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.cache import TTLCache
from core.crypto import PasswordHashing, SecretDigester
from core.settings import Settings
from persistence.clients import KeyRow
from persistence.db import Database
from storefront.access.client_keys import ClientKeys
from storefront.access.dpop import DPoPVerifier
from storefront.access.last_use import LastUse
from storefront.access.ratelimit import Limiter
from storefront.access.replay import ReplayGuard
from storefront.access.resources import Resources
from storefront.access.signing import SigningKeys
from storefront.access.usage import Usage


@dataclass
class Services:
    settings: Settings
    db: Database
    #: The database's signing keys, kept loaded into their TokenCodec: verify and issue
    #: through it (``signing.fresh()``, ``signing.verify()``).
    signing: SigningKeys
    digester: SecretDigester
    passwords: PasswordHashing
    limiter: Limiter
    #: operationId -> the OAuth2 scopes it requires, read from the spec; API keys obey them too.
    required_scopes: dict[str, list[str]] = field(default_factory=dict)
    #: operationIds whose requests spend the ``rate_limit_reads`` budget rather than the
    #: caller's (``x-rate-limit-budget: rate_limit_reads`` in the spec: GET /rate_limit).
    reads_budget_operations: frozenset[str] = frozenset()
    #: client id -> (enabled, its own rate limit), for STOREFRONT_AUTH_CACHE_TTL seconds.
    client_status: TTLCache[str, tuple[bool, str | None]] = field(
        default_factory=lambda: TTLCache(0)
    )
    #: access token jti -> whether it is revoked, for STOREFRONT_AUTH_CACHE_TTL seconds.
    revoked: TTLCache[str, bool] = field(default_factory=lambda: TTLCache(0))
    #: API key digest -> its key and client, for STOREFRONT_AUTH_CACHE_TTL seconds.
    api_keys: TTLCache[str, KeyRow | None] = field(default_factory=lambda: TTLCache(0))
    #: Checks DPoP proofs (RFC 9449); without a base URL it refuses every proof.
    dpop: DPoPVerifier = field(
        default_factory=lambda: DPoPVerifier(base_url="", window=60, nonces=None)
    )
    #: When each API key was last used, written in the background at most once a minute.
    last_use: LastUse = field(init=False)
    #: Requests counted per day, client and key, written in batches (``storefront usage``).
    usage: Usage = field(init=False)
    #: The clients' public keys for private_key_jwt: registered sets prepared once, published
    #: ones (jwks_uri) fetched and kept for STOREFRONT_JWKS_CACHE_TTL seconds.
    client_keys: ClientKeys = field(init=False)
    #: RFC 8707: the resources tokens are issued for, and the audiences this API accepts.
    resources: Resources = field(init=False)

    def __post_init__(self) -> None:
        self.last_use = LastUse(self.db)
        self.usage = Usage(self.db, interval=self.settings.usage_flush_seconds)
        self.client_keys = ClientKeys(
            timeout=self.settings.jwks_fetch_timeout, ttl=self.settings.jwks_cache_ttl
        )
        self.resources = Resources.from_settings(self.settings)

    @property
    def replay(self) -> ReplayGuard:
        """Where a ``jti`` is accepted once: the rate-limit store (``storefront.access.replay``)."""
        return self.limiter.replay


def from_scope(scope: Any) -> Services:
    """The services of the app serving this request (put in the lifespan state)."""
    services: Services = scope["state"]["services"]
    return services
