"""The client credentials grant (RFC 6749 §4.4): who the client is, which scopes it gets."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.types import Scope

from core import scopes
from core.crypto import IssuedToken
from core.errors import OAuthError
from core.metrics import TOKENS_ISSUED
from persistence import clients
from persistence.models import utcnow
from storefront.access import assertions
from storefront.access.assertions import ASSERTION_TYPE
from storefront.access.ratelimit import admit_client
from storefront.access.services import Services
from storefront.access.state import Caller, publish_caller

GRANT_TYPE = "client_credentials"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str | None
    client_secret: str | None
    #: The request carried an ``Authorization`` header (HTTP Basic, or a scheme this endpoint
    #: does not take, such as a bearer token): RFC 6749 §5.2 then requires the 401 of
    #: ``invalid_client`` to carry ``WWW-Authenticate``.
    challenge: bool
    #: A signed client assertion (``private_key_jwt``, RFC 7523) instead of a secret.
    assertion: str | None = None


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """The (id, secret) of an HTTP Basic header, form-decoded as RFC 6749 §2.3.1 asks."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(
            "invalid_request",
            "The HTTP Basic credentials are not valid base64.",
            basic_challenge=True,
        ) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError(
            "invalid_request",
            "The HTTP Basic credentials must be 'client_id:client_secret'.",
            basic_challenge=True,
        )
    return unquote_plus(client_id), unquote_plus(secret)


def credentials(
    *,
    authorization: Sequence[str],
    client_id: str | None,
    client_secret: str | None,
    client_assertion_type: str | None = None,
    client_assertion: str | None = None,
) -> ClientCredentials:
    """The client's credentials from the request's Authorization fields (``authorization``,
    each as sent) and form."""
    if client_assertion_type is not None or client_assertion is not None:
        return _assertion_credentials(
            authorization=authorization,
            client_id=client_id,
            client_secret=client_secret,
            assertion_type=client_assertion_type,
            assertion=client_assertion,
        )
    if len(authorization) > 1:
        # Taking the first would ignore a bad one after it; RFC 6749 §5.2: invalid_request.
        raise OAuthError(
            "invalid_request",
            "Send one Authorization field: the client authenticates once, by one means.",
        )
    basic = parse_basic(authorization[0] if authorization else None)
    if basic is None:
        return ClientCredentials(client_id, client_secret, challenge=bool(authorization))
    if client_secret is not None:
        raise OAuthError(
            "invalid_request",
            "Send the client credentials either with HTTP Basic or in the form, not both.",
        )
    if client_id is not None and client_id != basic[0]:
        raise OAuthError("invalid_request", "The form's client_id differs from HTTP Basic's.")
    return ClientCredentials(basic[0], basic[1], challenge=True)


def _assertion_credentials(
    *,
    authorization: Sequence[str],
    client_id: str | None,
    client_secret: str | None,
    assertion_type: str | None,
    assertion: str | None,
) -> ClientCredentials:
    """RFC 7521 §4.2: ``client_assertion_type`` and ``client_assertion`` together, and no
    other means of authentication beside them (RFC 6749 §2.3)."""
    if assertion_type is None or assertion is None:
        raise OAuthError(
            "invalid_request",
            "Send client_assertion_type and client_assertion together (RFC 7521 §4.2).",
        )
    if authorization or client_secret is not None:
        raise OAuthError(
            "invalid_request",
            "Authenticate by one means: a client_assertion, or a client secret (HTTP Basic or "
            "form), not both.",
        )
    if assertion_type != ASSERTION_TYPE:
        raise OAuthError(
            "invalid_client",
            f"The only client_assertion_type supported is {ASSERTION_TYPE} (private_key_jwt).",
            client_id=client_id,
        )
    return ClientCredentials(client_id, None, challenge=False, assertion=assertion)


def parse_scope(scope: str) -> list[str]:
    """The tokens of a ``scope`` parameter, split as RFC 6749 §3.3 defines it.

    Only the space (0x20) separates tokens: a tab, a newline or a Unicode space is part of a
    token (which then names no scope of any client), so that the server and every client read
    one string as the same list. An empty token (a blank value, a leading, trailing or doubled
    space) does not fit the grammar ``scope-token *( SP scope-token )``: granting "all scopes"
    or "no scope" for it would be a guess.
    """
    if not scope.strip():
        raise OAuthError(
            "invalid_scope",
            "The 'scope' parameter is blank: name scopes separated by single spaces, or omit it "
            "to be granted all of the client's scopes.",
        )
    tokens = scope.split(" ")
    if "" in tokens:
        raise OAuthError(
            "invalid_scope",
            "The 'scope' parameter has an empty scope token: separate scopes by exactly one "
            "space, with none before the first or after the last.",
        )
    return tokens


def _printable(token: str) -> str:
    """A scope token for an error message, control and non-ASCII characters escaped (a tab
    shows as \\t), so that the reader sees why it matched nothing."""
    return token.encode("unicode_escape").decode("ascii")


def _secret_matches(svc: Services, client: clients.ClientRow | None, secret: str) -> bool:
    """Whether ``secret`` is the client's current secret, or the previous one within its
    grace (``storefront clients rotate-secret``).

    The same work whatever the client: one digest and two constant-time comparisons, against
    the dummy digest where there is no client or no previous secret, so that the response time
    reveals neither which client ids are real nor which are in a rotation's grace.
    """
    dummy = svc.digester.dummy_digest
    current = previous = dummy
    until = None
    if client is not None:
        current = client.secret_digest
        previous = client.previous_secret_digest or dummy
        until = client.previous_secret_expires_at
    digest = svc.digester.digest(secret)
    current_ok = hmac.compare_digest(digest, current)
    previous_ok = hmac.compare_digest(digest, previous)
    now = utcnow()
    in_grace = until is not None and now < until
    # Non-short-circuit: both comparisons count, whichever matched.
    return client is not None and (current_ok | (previous_ok & in_grace))


async def authenticate_client(
    svc: Services, asgi_scope: Scope, creds: ClientCredentials
) -> clients.ClientRow:
    """The enabled client whose credentials these are; ``invalid_client`` otherwise, which the
    failure counter (storefront.http.failures) counts wherever it is raised, and answers 429
    past the source's budget. A client proven here is then admitted (``admit_client``): a
    source over its failure budget is refused whether or not the secret was right."""
    if creds.assertion is not None:
        return await assertions.authenticate(
            svc, assertion=creds.assertion, client_id=creds.client_id
        )
    if not creds.client_id or creds.client_secret is None:
        raise OAuthError(
            "invalid_client",
            "Client authentication is required: send client_id and client_secret as form "
            "fields or with HTTP Basic, or a signed client_assertion (private_key_jwt).",
            basic_challenge=creds.challenge,
            client_id=creds.client_id,
        )
    client = None
    if "\x00" not in creds.client_id:  # no client id holds NUL; PostgreSQL rejects it
        client = await clients.find_client(svc.db, client_id=creds.client_id)
    secret_ok = _secret_matches(svc, client, creds.client_secret)
    if client is None or not secret_ok or client.disabled_at is not None:
        raise OAuthError(
            "invalid_client",
            "Client authentication failed.",
            basic_challenge=creds.challenge,
            client_id=creds.client_id,
        )
    return client


async def client_credentials_grant(
    svc: Services,
    asgi_scope: Scope,
    *,
    grant_type: str | None,
    creds: ClientCredentials,
    scope: str | None,
    resources: Sequence[str] = (),
    dpop_jkt: str | None = None,
) -> IssuedToken:
    """A token for the client; with ``dpop_jkt`` (the thumbprint of the key a DPoP proof
    proved, storefront.access.dpop) bound to that key."""
    if grant_type is None:
        raise OAuthError("invalid_request", "'grant_type' is a required parameter.")
    if grant_type != GRANT_TYPE:
        raise OAuthError(
            "unsupported_grant_type", f"Only the '{GRANT_TYPE}' grant type is supported."
        )
    client = await authenticate_client(svc, asgi_scope, creds)
    allowed = client.scopes.split()
    refused: OAuthError | None = None
    requested: list[str] = []
    audience: str | list[str] | None = None
    try:
        # RFC 8707: the audience the token is for, one of STOREFRONT_RESOURCES.
        audience = svc.resources.audience_for(resources)
        if client.require_dpop and dpop_jkt is None:
            raise OAuthError(
                "invalid_request",
                "This client must use DPoP: send a DPoP proof (RFC 9449) in the 'DPoP' header "
                "of the token request.",
            )
        requested = allowed if scope is None else parse_scope(scope)
        # What the client holds, or what a scope it holds covers: a client with `read` may
        # ask for `users:read` alone (core.scopes), never the other way round.
        excess = sorted(s for s in set(requested) if not scopes.allows(allowed, s))
        if excess:
            shown = " ".join(_printable(token) for token in excess)
            raise OAuthError(
                "invalid_scope", f"The requested scope exceeds the client's scopes: {shown}."
            )
    except OAuthError as exc:
        refused = exc  # answered once the source's failure budget has been looked at
    publish_caller(asgi_scope, Caller(client.id))
    # A token request spends the client's own budget, like any request of its tokens; a
    # refused one spends none.
    await admit_client(
        svc.limiter,
        asgi_scope,
        client_id=client.id,
        override=client.rate_limit,
        charge=refused is None,
    )
    if refused is not None:
        raise refused
    # What was asked for, as asked (`users:read`, not the `read` that covers it), in the
    # vocabulary's order so that "write read" and "read write" grant the same string.
    granted = scopes.ordered(requested)
    # Keys at most one refresh window old: a rotation reaches every instance before it signs.
    codec = await svc.signing.fresh()
    token = codec.issue(
        client_id=client.id, scopes=granted, audience=audience, confirmation=dpop_jkt
    )
    TOKENS_ISSUED.inc()
    return token
