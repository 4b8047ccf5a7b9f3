"""Every error, from every layer, in the contract's shape: ``{"error", "message"}``.

Domain errors (``core.errors``), Connexion's problems (validation, security), Starlette's
HTTP exceptions (routing 404/405) and crashes are all turned into JSON here, once. The token
endpoint speaks RFC 6749 §5.2 as well, so its errors also carry ``error_description``. This
module only maps: failed authentications are counted before an error reaches it
(``storefront.http.failures``).
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Any

from connexion.exceptions import OAuthScopeProblem, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from core import scopes
from core.errors import (
    Conflict,
    ContentTooLarge,
    DPoPProofRefused,
    HeadersTooLarge,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotentResourceGone,
    IncompleteBody,
    InvalidInput,
    MethodNotImplemented,
    NotFound,
    NotReady,
    OAuthError,
    PreconditionFailed,
    PreconditionRequired,
    RateLimited,
    RateLimitUnavailable,
    ReplayStoreUnavailable,
    SearchTooBroad,
    StorefrontError,
    UnsupportedCharset,
)
from persistence.health import unavailable
from storefront.access.authn import DPoPChallenge
from storefront.access.dpop import ALGORITHMS as DPOP_ALGORITHMS
from storefront.http.failures import presented_credentials
from storefront.http.routes import RouteTable

logger = logging.getLogger(__name__)

#: Errors here speak RFC 6749 §5.2. Matched by path: Connexion's routing extension is not
#: visible to error handlers when the server's scope has no "extensions" key (uvicorn's).
OAUTH_PATHS = frozenset({"/auth/token", "/auth/revoke", "/auth/introspect"})
REALM = 'realm="storefront"'
#: A search past its budget is well-formed (it may succeed on a smaller catalogue), understood,
#: and not processed as it is: 422 (RFC 9110 §15.5.21), not the 400 of a malformed request.
_STATUS = {
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    ContentTooLarge: 413,
    IncompleteBody: 408,
    PreconditionFailed: 412,
    UnsupportedCharset: 415,
    SearchTooBroad: 422,
    IdempotencyKeyReused: 422,
    PreconditionRequired: 428,
    HeadersTooLarge: 431,
    MethodNotImplemented: 501,
}


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: str
) -> ConnexionResponse:
    body = {"error": error, "message": message, **extra}
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        content_type="application/json",
        body=json.dumps(body).encode(),
        headers=headers or {},
    )


def _oauth_response(exc: OAuthError) -> ConnexionResponse:
    status = 401 if exc.code == "invalid_client" else 400
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if exc.basic_challenge:
        headers["WWW-Authenticate"] = f'Basic {REALM}, charset="UTF-8"'
    if isinstance(exc, DPoPProofRefused) and exc.nonce is not None:
        headers["DPoP-Nonce"] = exc.nonce  # RFC 9449 §8: the nonce to put in the next proof
    return error_response(status, exc.code, exc.message, headers, error_description=exc.message)


def _presented_credentials(request: ConnexionRequest) -> bool:
    """RFC 6750 §3.1: with no credential at all, the challenge carries no error code."""
    return presented_credentials(request.scope)


def _dpop_enabled(request: ConnexionRequest) -> bool:
    """Whether this server checks DPoP proofs (it knows its public URL, which a proof names)."""
    services = request.scope.get("state", {}).get("services")
    return services is not None and services.dpop.enabled


def _quote(text: str) -> str:
    """``text`` as an auth-param's quoted string: RFC 6750 §3 allows printable ASCII only in
    ``error_description``, and a header field that is not Latin-1 cannot even be sent (the
    response would fail, a 500); so anything else is replaced."""
    text = text.replace("…", "...").encode("ascii", "replace").decode("ascii")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _rate_limited(exc: RateLimited) -> ConnexionResponse:
    retry = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return error_response(429, exc.title, exc.message, retry)


async def storefront_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, StorefrontError)
    if isinstance(exc, OAuthError):
        return _oauth_response(exc)
    if isinstance(exc, RateLimited):
        return _rate_limited(exc)
    if isinstance(exc, IdempotencyInProgress):
        return error_response(409, exc.title, exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, IdempotentResourceGone):
        # Answered from the key's record, as a replay is: the request was not run again.
        return error_response(410, exc.title, exc.message, {"Idempotent-Replayed": "true"})
    if isinstance(exc, RateLimitUnavailable | ReplayStoreUnavailable | NotReady):
        return error_response(503, exc.title, exc.message, {"Retry-After": "1"})
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
    if status == 400 and request.url.path in OAUTH_PATHS:
        # Raised before routing (an unusable Content-Length): still RFC 6749's shape here.
        return _oauth_response(OAuthError("invalid_request", exc.message))
    if status == 413:
        # The rest of the body is not wanted: closing is cheaper than reading it to the end.
        return error_response(status, exc.title, exc.message, {"Connection": "close"})
    return error_response(status, exc.title, exc.message)


#: What Connexion's body validators say of a request without a body.
_NO_BODY = "RequestBody is required"
#: What an OAuth endpoint's form holds, for a request that sent none.
_OAUTH_FORMS = {
    "/auth/token": "grant_type=client_credentials",
    "/auth/revoke": "token=<the token to revoke>",
    "/auth/introspect": "token=<the token to look at>",
}
_BEARER_FORM = re.compile(r"bearer [^ ]", re.IGNORECASE)
#: What Connexion's security handlers say of an Authorization field they cannot read (our
#: own refusals, as /metrics', say what they want already).
_CONNEXION_HEADER_PROBLEMS = ("Invalid authorization header", "No authorization token provided")


#: Instead of Connexion's "RequestBody is required" on the JSON routes.
JSON_BODY_MISSING = (
    "The request has no body: send the JSON object this operation takes, with Content-Type: "
    "application/json; its fields are in the API reference (/redoc, or Swagger UI at /ui/)."
)


def _oauth_form_missing(path: str) -> str:
    """Instead of Connexion's "RequestBody is required": the form to send, and how."""
    fields = _OAUTH_FORMS.get(path, "its fields")
    return (
        f"The request has no body: send {fields} as a form (Content-Type: "
        "application/x-www-form-urlencoded), with the client's credentials as client_id and "
        "client_secret fields or as HTTP Basic (-u client_id:client_secret)."
    )


def _malformed_authorization(request: ConnexionRequest, detail: Any) -> bool:
    """An Authorization field that is not ``Bearer <credential>`` (a bare token, another
    scheme), refused by Connexion: it says only "Invalid authorization header" or, for
    another scheme, "No authorization token provided", neither of which says what to send."""
    field = request.headers.get("authorization")
    return (
        field is not None
        and _BEARER_FORM.match(field) is None
        and isinstance(detail, str)
        and detail.startswith(_CONNEXION_HEADER_PROBLEMS)
    )


MALFORMED_AUTHORIZATION = (
    "The Authorization header must be 'Authorization: Bearer <token>', the token an access "
    "token from POST /auth/token or an API key (sk_...); an API key may instead be sent as "
    "'X-API-Key: <key>'."
)


def _message(status: int, detail: Any) -> str:
    if isinstance(detail, str) and detail and detail != HTTPStatus(status).phrase:
        return detail if detail.endswith(".") else detail + "."
    return {
        401: "Authentication is required: send a bearer token or an API key.",
        404: "No resource exists at this URL.",
        405: "This URL does not accept this HTTP method.",
        415: "The request body's media type is not supported by this operation.",
    }.get(status, HTTPStatus(status).description + ".")


async def http_error(
    request: ConnexionRequest, exc: Exception, *, routes: RouteTable | None = None
) -> ConnexionResponse:
    """Connexion's problems and Starlette's HTTP exceptions. ``routes`` gives a 405 its
    ``Allow``: every method the spec declares for the path (Starlette's router would name only
    the first operation's)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status >= 500:
        logger.error("%s %s: %r", request.method, request.url.path, exc)
        return _internal_error()
    detail = exc.detail
    message = _message(status, detail)
    headers = dict(exc.headers or {})
    if status == 405 and routes is not None:
        allow = routes.allow(request.url.path)
        if allow is not None:
            headers["Allow"] = allow
    if status == 400 and request.url.path in OAUTH_PATHS:
        if isinstance(detail, str) and detail.startswith(_NO_BODY):
            message = _oauth_form_missing(request.url.path)
        return _oauth_response(OAuthError("invalid_request", message))
    if status == 400 and isinstance(detail, str) and detail.startswith(_NO_BODY):
        message = JSON_BODY_MISSING
    if status == 401 and _malformed_authorization(request, detail):
        message = MALFORMED_AUTHORIZATION
    if status == 401 and isinstance(exc, DPoPChallenge):
        headers["WWW-Authenticate"] = dpop_challenge(exc.error, message)
        if exc.nonce is not None:
            headers["DPoP-Nonce"] = exc.nonce
    elif status == 401:
        challenge = f"Bearer {REALM}"
        if _presented_credentials(request):
            challenge += f', error="invalid_token", error_description="{_quote(message)}"'
        elif _dpop_enabled(request):
            # RFC 9449 §7.1: with no credentials, a challenge per scheme the API takes, so
            # that a client learns it may send a DPoP-bound token and with which algorithms.
            challenge += f', DPoP {REALM}, algs="{" ".join(DPOP_ALGORITHMS)}"'
        headers["WWW-Authenticate"] = challenge
    elif isinstance(exc, OAuthScopeProblem):
        message, needed = _insufficient_scope(exc.required_scopes, exc.token_scopes)
        headers["WWW-Authenticate"] = (
            f'Bearer {REALM}, error="insufficient_scope", scope="{needed}"'
        )
    title = (
        exc.title
        if isinstance(exc, ProblemException) and exc.title and status not in (400, 401)
        else HTTPStatus(status).phrase
    )
    return error_response(status, title, message, headers)


def dpop_challenge(error: str, message: str) -> str:
    """RFC 9449 §7.1's challenge: the error, what went wrong, and the proof algorithms taken."""
    algs = " ".join(DPOP_ALGORITHMS)
    return f'DPoP {REALM}, error="{error}", error_description="{_quote(message)}", algs="{algs}"'


def _insufficient_scope(required: list[str], held: list[str]) -> tuple[str, str]:
    """The 403's message, and the scopes it needs for ``WWW-Authenticate``'s ``scope``: those
    of ``required`` that nothing held satisfies (``core.scopes``), and for one of them the
    broad scope that would do as well."""
    lacking = scopes.missing(required, held)
    needed = " ".join(lacking)
    shown = f"'{needed}'"
    wider = scopes.broader(lacking[0]) if len(lacking) == 1 else None
    if wider is not None:
        shown += f" (or '{wider}')"
    granted = " ".join(scopes.ordered(held)) or "none"
    return f"This operation needs the scope {shown}; the credential grants '{granted}'.", needed


def _internal_error() -> ConnexionResponse:
    return error_response(
        500,
        "Internal Server Error",
        "An unexpected error occurred on the server. It has been logged; please retry later.",
    )


def _operator_intervention(exc: Exception) -> bool:
    """PostgreSQL's SQLSTATE class 57: a statement cancelled by an operator or a timeout, a
    server shutting down. psycopg raises OperationalError for these; asyncpg's reach
    SQLAlchemy as a bare DBAPIError."""
    sqlstate = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    return isinstance(sqlstate, str) and sqlstate.startswith("57")


async def unexpected_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # Refused, timed out, reset, still starting up, "database is locked", cancelled: the
    # database is not answering, which is worth a retry (503), not a bug report (500).
    # Behind PgBouncer, PostgreSQL's absence arrives as PgBouncer's own error (08P01, "server
    # login has been failing") on a connection it then closes, and SQLAlchemy may pass the
    # driver's error on unwrapped (when it surfaces while a connection is being reset).
    if (
        isinstance(exc, PoolTimeout | OSError | OperationalError | InterfaceError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or unavailable(exc)
        or _operator_intervention(exc)
    ):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return error_response(
            503,
            "Service Unavailable",
            "The database is unavailable; please retry shortly.",
            {"Retry-After": "1"},
        )
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _internal_error()
