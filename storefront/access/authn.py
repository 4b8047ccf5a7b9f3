"""The security functions named in ``openapi.yaml``: who is calling, with which scopes.

Connexion calls ``bearer_info`` for ``Authorization: Bearer …``, ``api_key_info`` for
``X-API-Key`` and ``dpop_info`` for ``Authorization: DPoP …`` (RFC 9449, with a ``DPoP``
proof). Each returns the token info Connexion stores as ``context["token_info"]``:
``{"sub": client_id, "scope": [...], "key_id": ... | None}``.
"""

from __future__ import annotations

import functools
import hmac
from typing import Any

from connexion.exceptions import OAuthProblem, OAuthScopeProblem
from connexion.lifecycle import ConnexionRequest
from starlette.types import Scope

from core import scopes
from core.crypto import InvalidToken
from core.errors import DPoPProofRefused
from core.ids import API_KEY_PREFIX
from core.settings import Settings
from persistence import clients
from persistence.models import utcnow
from storefront.access.dpop import SCHEME as DPOP_SCHEME
from storefront.access.dpop import request_path
from storefront.access.ratelimit import Uses, charge, report, uses_of
from storefront.access.revocation import is_revoked
from storefront.access.services import Services, from_scope
from storefront.access.state import Caller, publish_caller

#: A valid token whose audience is another resource than this API.
NOT_SERVED = (
    "The access token is for another resource (its aud): this API accepts tokens for its own "
    "audience or for the resources it serves."
)


class _DatabaseUses:
    """A key's uses spent in the database (``UsesLedger``), when the rate-limit store is in
    memory: they outlive a restart, and instances on one database share them."""

    def __init__(self, services: Services) -> None:
        self.db = services.db

    async def spend(self, uses: Uses) -> int | None:
        return await self.db.write(
            clients.spend_use, key_id=uses.key_id, period=uses.period, quota=uses.quota
        )

    async def spent(self, uses: Uses) -> int:
        return await self.db.read(clients.spent_uses, key_id=uses.key_id, period=uses.period)


async def _spend(
    services: Services,
    scope: Scope,
    *,
    kind: str,
    ident: str,
    override: str | None,
    own: str = "client",
    uses: Uses | None = None,
) -> None:
    """Charge the caller's limits (and a key's uses); or, for an operation that spends the
    ``rate_limit_reads`` budget instead (GET /rate_limit, ``x-rate-limit-budget`` in the
    spec), charge that one and read the caller's."""
    operation_id = scope["extensions"]["connexion_routing"]["operation_id"]
    ledger = None if uses is None else _DatabaseUses(services)
    spend = report if operation_id in services.reads_budget_operations else charge
    await spend(
        services.limiter,
        scope,
        kind=kind,
        ident=ident,
        override=override,
        own=own,
        uses=uses,
        ledger=ledger,
    )


async def _from_api_key(
    services: Services, request: ConnexionRequest, api_key: str
) -> dict[str, Any]:
    digest = services.digester.digest(api_key)
    found = await services.api_keys.get(
        digest,
        lambda: clients.find_active_key(services.db, digest=digest),
        keep=lambda row: row is not None,  # only keys that exist: no memory for guesses
    )
    if found is None:
        raise OAuthProblem(detail="The API key is invalid or has been revoked.")
    # Compared at every use, cached or not: a remembered key never outlives its expiry. A
    # failed authentication like a revoked key's (storefront.http.failures counts it).
    if found.expires_at is not None and found.expires_at <= utcnow():
        raise OAuthProblem(detail="The API key has expired.")
    publish_caller(request.scope, Caller(found.client_id, found.key_id))
    services.last_use.touch(found.key_id)
    # Each API key has its own budget (the seed: "per API key"): the key's own limits, else
    # its client's, else the server's; and its number of uses, if it has one.
    uses = None
    if found.uses is not None:
        assert found.created_at is not None
        uses = uses_of(found.key_id, found.uses, found.uses_refill, found.created_at.timestamp())
        # A request that a missing scope refuses spends no use: checked before spending.
        _check_scopes(services, request.scope, found.scopes.split())
    await _spend(
        services,
        request.scope,
        kind="key",
        ident=found.key_id,
        override=found.key_limits or found.rate_limit,
        own="key" if found.key_limits else "client",
        uses=uses,
    )
    return {"sub": found.client_id, "scope": found.scopes.split(), "key_id": found.key_id}


def _check_scopes(services: Services, scope: Scope, held: list[str]) -> None:
    """A 403 naming the missing scope unless ``held`` satisfies the operation's."""
    operation_id = scope["extensions"]["connexion_routing"]["operation_id"]
    # An operation missing from the map is a wiring bug: refuse rather than let a key through.
    required = services.required_scopes.get(operation_id, ["(unknown operation)"])
    if not validate_scope(required, held):
        raise OAuthScopeProblem(token_scopes=held, required_scopes=required)


def _one_credential(scope: Scope) -> None:
    # A request carrying more than one credential field (Authorization and X-API-Key, or
    # either twice) is ambiguous: rather than silently take the first (and ignore a bad one
    # after it), refuse it, as RFC 6750 §2 does for tokens. (The scope's header names, as
    # request.headers would look them up: ASGI's are lower-case.)
    fields = 0
    for name, _ in scope["headers"]:
        if name == b"authorization" or name == b"x-api-key":
            fields += 1
    if fields > 1:
        raise OAuthProblem(
            detail="Send one credential in one field: one Authorization or one X-API-Key."
        )


class DPoPChallenge(OAuthProblem):  # type: ignore[misc]
    """A 401 answered with a ``DPoP`` challenge (RFC 9449 §7.1): ``error`` is
    ``invalid_token``, ``invalid_dpop_proof`` or ``use_dpop_nonce`` (then with the ``nonce``
    to use). storefront.http.problems writes the header."""

    def __init__(self, error: str, detail: str, *, nonce: str | None = None) -> None:
        super().__init__(detail=detail)
        self.error = error
        self.nonce = nonce


BOUND_AS_BEARER = (
    "This access token is bound to a DPoP key: send it as 'Authorization: DPoP <token>' "
    "with a DPoP proof, not as a bearer token."
)


async def bearer_info(token: str, request: ConnexionRequest) -> dict[str, Any]:
    scope = request.scope  # once: each attribute of Connexion's request is a lookup
    _one_credential(scope)
    services = from_scope(scope)
    if token.startswith(API_KEY_PREFIX):
        return await _from_api_key(services, request, token)
    try:
        claims = await services.signing.verify(token)
    except InvalidToken as exc:
        raise OAuthProblem(detail=str(exc)) from None
    if "cnf" in claims:  # RFC 9449 §7.2: a DPoP-bound token is no bearer token
        raise DPoPChallenge("invalid_token", BOUND_AS_BEARER)
    return await _from_token(services, scope, claims)


async def _from_token(
    services: Services, scope: Scope, claims: dict[str, Any], *, dpop: bool = False
) -> dict[str, Any]:
    """The token info of a verified access token's claims: its client enabled, the token not
    revoked, the client's budget charged. Refused with a DPoP challenge when ``dpop``."""

    def refused(detail: str) -> OAuthProblem:
        return DPoPChallenge("invalid_token", detail) if dpop else OAuthProblem(detail=detail)

    # RFC 8707: a token for another service's resource is that service's to accept.
    if not services.resources.serves(claims["aud"]):
        raise refused(NOT_SERVED)
    # Checked (through a cache of STOREFRONT_AUTH_CACHE_TTL seconds) so that disabling a
    # client stops its tokens long before they expire.
    client_id = claims["sub"]
    active, own_limit = await services.client_status.get(
        client_id, lambda: clients.active_client_limit(services.db, client_id=client_id)
    )
    if not active:
        raise refused("The client of this access token is disabled.")
    if await is_revoked(services, claims):
        raise refused("The access token has been revoked.")
    publish_caller(scope, Caller(claims["sub"]))
    # All of a client's tokens share one budget, so minting more tokens buys nothing.
    await _spend(services, scope, kind="client", ident=claims["sub"], override=own_limit)
    return {"sub": claims["sub"], "scope": claims["scope"].split(), "key_id": None}


#: Pairs of (required, held) scopes remembered: operations' requirements and clients' scope
#: sets are few, and every request of every scheme asks.
SCOPE_ANSWERS_MAX = 1024


@functools.lru_cache(maxsize=SCOPE_ANSWERS_MAX)
def _satisfied(required: tuple[str, ...], held: tuple[str, ...]) -> bool:
    return not scopes.missing(required, held)


def validate_scope(required_scopes: list[str], token_scopes: list[str]) -> bool:
    """Whether the credential's scopes satisfy every scope the operation names
    (``core.scopes``: ``read`` satisfies ``users:read``, ``write`` satisfies ``users:write``)."""
    return _satisfied(tuple(required_scopes), tuple(token_scopes))


async def dpop_info(token: str, request: ConnexionRequest) -> dict[str, Any]:
    """``Authorization: DPoP <token>``: a DPoP-bound access token and a proof of possession of
    its key (storefront.access.dpop). Refusals are 401 with a ``DPoP`` challenge."""
    scope = request.scope
    _one_credential(scope)
    services = from_scope(scope)
    if not token or token.startswith(API_KEY_PREFIX):
        raise DPoPChallenge(
            "invalid_token",
            f"'Authorization: {DPOP_SCHEME}' carries a DPoP-bound access token; send an API key "
            "as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        )
    try:
        claims = await services.signing.verify(token)
    except InvalidToken as exc:
        raise DPoPChallenge("invalid_token", str(exc)) from None
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str):
        raise DPoPChallenge(
            "invalid_token",
            "This access token is not bound to a DPoP key: send it as 'Authorization: Bearer "
            "<token>', or request a DPoP-bound token with a DPoP proof.",
        )
    try:
        await services.dpop.check(
            (value for name, value in scope["headers"] if name == b"dpop"),
            method=scope["method"],
            path=request_path(scope),
            replay=services.replay,
            access_token=token,
            bound_to=jkt,
        )
    except DPoPProofRefused as exc:
        raise DPoPChallenge(exc.code, exc.message, nonce=exc.nonce) from None
    info = await _from_token(services, scope, claims, dpop=True)
    # The DPoP scheme names no scopes (an http scheme): the operation's OAuth2 ones apply.
    _check_scopes(services, scope, info["scope"])
    return info


async def api_key_info(api_key: str, request: ConnexionRequest) -> dict[str, Any]:
    _one_credential(request.scope)
    services = from_scope(request.scope)
    if not api_key.startswith(API_KEY_PREFIX):
        raise OAuthProblem(detail="The API key is invalid or has been revoked.")
    info = await _from_api_key(services, request, api_key)
    _check_scopes(services, request.scope, info["scope"])
    return info


def require_metrics_token(settings: Settings, authorization: str | None) -> None:
    """With STOREFRONT_METRICS_ACCESS=token, /metrics wants that token as a bearer token."""
    if settings.metrics_access != "token":
        return
    assert settings.metrics_token is not None  # the settings refuse "token" without one
    expected = f"Bearer {settings.metrics_token.get_secret_value()}"
    if not hmac.compare_digest((authorization or "").encode(), expected.encode()):
        raise OAuthProblem(detail="Reading metrics needs the metrics token.")
