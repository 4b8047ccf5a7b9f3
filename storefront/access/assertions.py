"""Client authentication with a signed assertion: ``private_key_jwt`` (RFC 7523 §2.2, RFC 7521
§4.2), with the audience of draft-ietf-oauth-rfc7523bis.

An assertion is accepted when, in this order:

- it is a JWT signed with one of ``client_keys.ALGORITHMS`` by one of the client's keys (the
  one its ``kid`` names, or any of the right kind when it names none);
- ``iss`` and ``sub`` are both the client's id (and the form's ``client_id``, when sent);
- ``aud`` is one value: the issuer identifier (``STOREFRONT_ISSUER``), or the token endpoint's
  absolute URL, which RFC 7523 allows; a list of audiences is refused (rfc7523bis);
- ``exp`` has not passed (LEEWAY seconds of skew) and is at most MAX_LIFETIME seconds ahead;
  ``nbf`` and ``iat``, when present, are not in the future;
- its ``jti`` was never seen before: it is remembered until ``exp`` (plus the leeway) in the
  replay store, which every instance sharing the rate-limit store shares.

Anything else is ``invalid_client``, like a wrong secret, and counted the same way.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from core.crypto import LEEWAY
from core.errors import OAuthError
from persistence import clients
from storefront.access.client_keys import ALGORITHMS, BadKeySet, KeySet
from storefront.access.services import Services

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The replay store's namespace for assertion jtis.
REPLAY_NAMESPACE = "client-assertion"
#: Seconds an assertion may be valid for ahead of now (its ``exp``).
MAX_LIFETIME = 300
#: The longest ``jti`` accepted (RFC 7519 sets none; a bound keeps the store's keys small).
MAX_JTI_CHARS = 256
#: ``typ`` headers of JWTs that are not client assertions: refused, so that no other kind of
#: JWT signed with the client's key passes for one.
_OTHER_TYPES = frozenset({"at+jwt", "application/at+jwt", "dpop+jwt", "application/dpop+jwt"})
_REQUIRED = ["iss", "sub", "aud", "exp", "jti"]


def _refused(message: str, client_id: str | None) -> OAuthError:
    return OAuthError("invalid_client", message, client_id=client_id)


def accepted_audiences(svc: Services) -> list[str]:
    """The issuer identifier, and the token endpoint's URL when it is absolute."""
    # Here, not at the top: discovery imports the grant (oauth), which imports this module.
    from storefront.access.discovery import TOKEN_PATH, base_url

    audiences = [svc.settings.issuer]
    base = base_url(svc.settings)
    if base:
        audiences.append(base + TOKEN_PATH)
    return audiences


def _unverified(assertion: str, claimed: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _refused("The client assertion is not a signed JWT.", claimed) from None
    return header, claims


async def authenticate(
    svc: Services, *, assertion: str, client_id: str | None
) -> clients.ClientRow:
    """The enabled client that signed ``assertion``; ``invalid_client`` otherwise."""
    header, unverified = _unverified(assertion, client_id)
    subject = unverified.get("sub")
    if not isinstance(subject, str) or not subject:
        raise _refused("The client assertion has no 'sub': it must be the client id.", client_id)
    if client_id is not None and client_id != subject:
        raise _refused("The client assertion's 'sub' is not the form's client_id.", client_id)
    claimed = subject
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise _refused(
            f"The client assertion is signed with {str(algorithm)[:20]!r}; it must be one of "
            f"{', '.join(ALGORITHMS)}.",
            claimed,
        )
    if str(header.get("typ", "")).lower() in _OTHER_TYPES:
        raise _refused("This JWT is not a client assertion (its 'typ').", claimed)
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _refused("The client assertion's 'kid' header is not a string.", claimed)
    client = None
    if "\x00" not in claimed:  # no client id holds NUL; PostgreSQL rejects it
        client = await clients.find_client(svc.db, client_id=claimed)
    if client is None or client.disabled_at is not None:
        raise _refused("Client authentication failed.", claimed)
    if not client.has_keys:
        raise _refused(
            "This client has no registered keys: it authenticates with its secret "
            "(client_secret_basic or client_secret_post), not with an assertion.",
            claimed,
        )
    claims = await _verified(svc, client, assertion, algorithm=algorithm, kid=kid)
    await _first_use(svc, claims, client.id)
    return client


async def _verified(
    svc: Services,
    client: clients.ClientRow,
    assertion: str,
    *,
    algorithm: str,
    kid: str | None,
) -> dict[str, Any]:
    keys = svc.client_keys
    key_set: KeySet
    try:
        if client.jwks is not None:
            key_set = keys.registered(client.jwks)
        else:
            assert client.jwks_uri is not None  # has_keys
            key_set = await keys.published(client.jwks_uri)
            if not key_set.candidates(kid=kid, algorithm=algorithm):
                # A key published since the set was fetched: fetched again, at most so often.
                key_set = await keys.published(client.jwks_uri, refresh=True)
    except BadKeySet as exc:
        raise _refused(f"{str(exc)[:1].upper()}{str(exc)[1:]}.", client.id) from None
    candidates = key_set.candidates(kid=kid, algorithm=algorithm)
    if not candidates:
        named = f"named {kid!r} " if kid is not None else ""
        raise _refused(
            f"None of the client's keys {named}signs with {algorithm}: the assertion is signed "
            "with a key this server does not hold for the client.",
            client.id,
        )
    audiences = accepted_audiences(svc)
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key.key,
                algorithms=[algorithm],
                audience=audiences,
                issuer=client.id,
                leeway=LEEWAY,
                options={"require": _REQUIRED},
            )
        except jwt.InvalidSignatureError:
            continue  # another key of the set may have signed it
        except jwt.ExpiredSignatureError:
            raise _refused("The client assertion has expired.", client.id) from None
        except jwt.InvalidAudienceError:
            raise _refused(_wrong_audience(audiences), client.id) from None
        except jwt.InvalidIssuerError:
            message = "The client assertion's 'iss' must be the client id."
            raise _refused(message, client.id) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refused(
                f"The client assertion has no {exc.claim!r} claim (it needs "
                f"{', '.join(_REQUIRED)}).",
                client.id,
            ) from None
        except jwt.ImmatureSignatureError:
            message = "The client assertion is not valid yet (nbf or iat)."
            raise _refused(message, client.id) from None
        except jwt.PyJWTError:
            raise _refused("The client assertion is not valid.", client.id) from None
        _check_claims(claims, audiences, client.id)
        return claims
    raise _refused(
        "The client assertion's signature does not verify with the client's keys.", client.id
    )


def _wrong_audience(audiences: list[str]) -> str:
    shown = " or ".join(repr(a) for a in audiences)
    return f"The client assertion's 'aud' must be this server's issuer identifier: {shown}."


def _check_claims(claims: dict[str, Any], audiences: list[str], client_id: str) -> None:
    if claims["sub"] != client_id:
        raise _refused("The client assertion's 'sub' must be the client id.", client_id)
    aud = claims["aud"]
    if isinstance(aud, list):
        if len(aud) != 1:
            raise _refused(
                "The client assertion's 'aud' must be one value, the issuer identifier, not a "
                "list of audiences.",
                client_id,
            )
        aud = aud[0]
    if aud not in audiences:
        raise _refused(_wrong_audience(audiences), client_id)
    exp = claims["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _refused("The client assertion's 'exp' is not a number.", client_id)
    if exp > time.time() + MAX_LIFETIME + LEEWAY:
        raise _refused(
            f"The client assertion expires too late: 'exp' may be at most {MAX_LIFETIME} "
            "seconds ahead.",
            client_id,
        )
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise _refused(
            f"The client assertion's 'jti' must be a string of 1 to {MAX_JTI_CHARS} characters.",
            client_id,
        )


async def _first_use(svc: Services, claims: dict[str, Any], client_id: str) -> None:
    until = float(claims["exp"]) + LEEWAY
    if not await svc.replay.first_use(REPLAY_NAMESPACE, f"{client_id}\0{claims['jti']}", until):
        raise _refused(
            "This client assertion was used before (its 'jti'): sign a new one, with a new "
            "jti, for every request.",
            client_id,
        )
