"""Domain errors. Plain exceptions with no HTTP in them; ``storefront.http.problems`` maps them."""

from __future__ import annotations


class StorefrontError(Exception):
    """Base class: ``title`` is a short name, ``message`` a sentence a developer can act on."""

    title = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(StorefrontError):
    title = "Bad Request"


class NotFound(StorefrontError):
    title = "Not Found"


class UserNotFound(NotFound):
    # The seed's wording, reproduced word for word.
    title = "User not found"

    def __init__(self) -> None:
        super().__init__("The specified user ID does not exist.")


class ProductNotFound(NotFound):
    # Worded as the seed words a missing user.
    title = "Product not found"

    def __init__(self) -> None:
        super().__init__("The specified product ID does not exist.")


class Conflict(StorefrontError):
    title = "Conflict"


class EmailTaken(Conflict):
    title = "Email already registered"

    def __init__(self) -> None:
        super().__init__("A user with this email address already exists.")


class ProductTaken(Conflict):
    """Another product has this name and category (each compared case-insensitively): the
    pair names a product, as the importer's ids derived from it do."""

    title = "Product already exists"

    def __init__(self) -> None:
        super().__init__(
            "Another product already has this name in this category (compared "
            "case-insensitively); update that product, or choose another name."
        )


class PreconditionFailed(StorefrontError):
    """A write's precondition (``If-Match``, ``If-None-Match``, ``If-Unmodified-Since``) does
    not hold for the resource as it is; the message says which."""

    title = "Precondition Failed"


class PreconditionRequired(StorefrontError):
    """This server accepts writes of a user or a product only conditional on the version
    written over."""

    title = "Precondition Required"

    def __init__(self, noun: str = "user") -> None:
        super().__init__(
            f"This server requires If-Match on writes of a {noun}: send the ETag of the version "
            "you read (or * to write whatever the current version is)."
        )


class IdempotencyKeyReused(StorefrontError):
    """An idempotency key came back with another request body than the one it was first sent
    with."""

    title = "Idempotency-Key reused"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request body; use a new "
            "key for a new request."
        )


class IdempotentResourceGone(StorefrontError):
    """The first request with an idempotency key was carried out, and what it created has
    since been deleted: its stored response, which carried it, is forgotten."""

    title = "Resource deleted"

    def __init__(self) -> None:
        super().__init__(
            "The first request with this Idempotency-Key was carried out, and what it created "
            "has since been deleted, with the response that showed it. It is not carried out "
            "again: to create it anew, send a new key."
        )


class IdempotencyInProgress(Conflict):
    """The request that first sent an idempotency key is still running."""

    title = "Request in progress"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry after "
            "Retry-After seconds to get its response."
        )
        self.retry_after = retry_after


class ContentTooLarge(StorefrontError):
    """The request body is larger than the server accepts."""

    title = "Content Too Large"


class HeadersTooLarge(StorefrontError):
    """The request's header fields are too many or too large."""

    title = "Request Header Fields Too Large"


class IncompleteBody(StorefrontError):
    """The request body stopped before its end (the client left, or the server stopped
    waiting for it): the request is not carried out."""

    title = "Request Timeout"


class MethodNotImplemented(StorefrontError):
    """The request method is not one the server implements for any resource."""

    title = "Not Implemented"


class UnsupportedCharset(StorefrontError):
    """The request body declares a character set the server cannot decode."""

    title = "Unsupported Media Type"


class SearchTooBroad(StorefrontError):
    """A search would cost more than one request may (``STOREFRONT_SEARCH_BUDGET``): the same
    request may succeed on a smaller catalogue, so it is not malformed, but the client must
    narrow it (a longer term, a category) rather than retry it as it is."""

    title = "Search too broad"

    def __init__(self, budget: float) -> None:
        super().__init__(
            f"This search would take more than the {budget * 1000:g} ms one request may use: "
            "narrow it with a longer search term (3 characters or more) or a category."
        )
        self.budget = budget


class OAuthError(StorefrontError):
    """An RFC 6749 §5.2 error of the token endpoint; ``code`` is the RFC's error code."""

    def __init__(
        self,
        code: str,
        description: str,
        *,
        basic_challenge: bool = False,
        client_id: str | None = None,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.title = code
        self.basic_challenge = basic_challenge
        #: The client id the caller claimed, for counting failed authentications.
        self.client_id = client_id


class DPoPProofRefused(OAuthError):
    """A DPoP proof (RFC 9449) the server does not accept: ``code`` is ``invalid_dpop_proof``
    or ``use_dpop_nonce`` (§8: the proof lacks the current server nonce, ``nonce``), or
    ``invalid_token`` when the access token is not bound to the proof's key. The token
    endpoint answers it 400; the API answers it 401 with a ``DPoP`` challenge."""

    def __init__(self, code: str, description: str, *, nonce: str | None = None) -> None:
        super().__init__(code, description)
        self.nonce = nonce


class RateLimited(StorefrontError):
    """A budget is spent; ``retry_after`` is whole seconds until it resets (None: it never
    does, as a key's uses that do not refill)."""

    title = "Too Many Requests"

    def __init__(self, message: str, *, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitUnavailable(StorefrontError):
    """The rate-limit store cannot be reached and the server is set to fail closed."""

    title = "Service Unavailable"

    def __init__(self) -> None:
        super().__init__("Rate limiting is temporarily unavailable; please retry shortly.")


class ReplayStoreUnavailable(StorefrontError):
    """The store that remembers one-time identifiers (a client assertion's or a DPoP proof's
    ``jti``) cannot be reached. Always a refusal, whatever STOREFRONT_RATE_LIMIT_FAIL_OPEN says:
    accepting a proof that cannot be checked for replay would accept a replay."""

    title = "Service Unavailable"

    def __init__(self) -> None:
        super().__init__("The replay check is temporarily unavailable; please retry shortly.")


class NotReady(StorefrontError):
    """A dependency (database, rate-limit store) is unreachable or not migrated."""

    title = "Service Unavailable"
