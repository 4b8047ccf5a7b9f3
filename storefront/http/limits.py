"""What every request meets before any other work: its method, the size of its header
fields, the one ``Host`` of HTTP/1.1, no WebSocket upgrade, then the size of its body. (And
one normalisation made in the same pass over the headers: the media type's case.)

- A method this server does not know (not one of RFC 9110's, PATCH or QUERY) is a 501 on
  every path (RFC 9110 §15.6.2); a known one a path does not take stays a 405 with
  ``Allow``.
- An HTTP/1.1 request without ``Host``, and any request with two or with an invalid one, is
  a 400 (RFC 9112 §3.2).
- A WebSocket upgrade is a 400: the API speaks plain HTTP only. (``storefront serve`` runs
  uvicorn without a WebSocket protocol, so the request arrives here as HTTP; its connection
  closes after the answer, storefront.server.)

The server process (``storefront.server``) refuses oversized headers while reading them, so
that they never take memory; this middleware holds the same limits on any ASGI server (and in
the tests' in-process client), and bounds the body:

- a ``Content-Length`` over the limit is a 413 before a byte of the body is read;
- a body without one (chunked) is counted as it is received, and the read that passes the
  limit raises, wherever the body is being read (a validator, a handler);
- a body that ends before its last message (the client left, or the server stopped waiting
  for it) raises too, rather than being parsed as if it were whole: the request is not
  carried out (a 408 in the log; the client is gone).

It sits inside Connexion's exception middleware (``MiddlewarePosition.BEFORE_SWAGGER``), so
the domain errors it raises are mapped by ``storefront.http.problems`` like any other.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import (
    ContentTooLarge,
    HeadersTooLarge,
    IncompleteBody,
    InvalidInput,
    MethodNotImplemented,
)

#: Methods whose requests this API never reads a body of: no need to watch their stream.
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
#: The methods this server knows: RFC 9110's, PATCH (RFC 5789) and QUERY (the IETF's safe
#: method with a body, draft-ietf-httpbis-safe-method-w-body, which httptools parses and
#: schemathesis expects a 405 for). A path that does not take one of them answers 405 with
#: Allow; any other method is not implemented anywhere: 501.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)
#: RFC 9112 §3.2's Host: uri-host [ ":" port ] (RFC 3986 §3.2.2), or empty.
_HOST = re.compile(rb"(\[[0-9A-Za-z:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?")


def _lower_media_type(scope: Scope, content_type: bytes) -> None:
    """``Application/JSON`` is ``application/json`` (RFC 9110 §8.3.1), but Connexion looks
    the body's schema up by the media type as sent: in any other case the body skipped
    validation and reached the handler as it came. Parameters keep their case (a multipart
    boundary is case-sensitive)."""
    media_type, semicolon, parameters = content_type.partition(b";")
    lowered = media_type.strip().lower()
    if lowered == media_type:
        return
    value = lowered + semicolon + parameters
    scope["headers"] = [
        (name, value if name == b"content-type" else original)
        for name, original in scope["headers"]
    ]


class RequestLimitsMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_header_count: int, max_header_bytes: int
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_count = max_header_count
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in KNOWN_METHODS:
            raise MethodNotImplemented(
                "The request method is not one this server implements: the API takes GET, "
                "HEAD, POST, PUT and DELETE."
            )
        headers = scope["headers"]
        if len(headers) > self.max_header_count:
            raise HeadersTooLarge(
                f"The request has {len(headers)} header fields; at most "
                f"{self.max_header_count} are accepted."
            )
        # One pass: the size of the head, and the Content-Length (ASGI names are lower-case).
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
        length = content_type = host = upgrade = None
        hosts = 0
        for name, value in headers:
            size += len(name) + len(value) + 4  # ": " and CRLF, as sent on the wire
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"host":
                hosts += 1
                host = value
            elif name == b"upgrade":
                upgrade = value
        if size > self.max_header_bytes:
            raise HeadersTooLarge(
                f"The request line and header fields take {size} bytes; at most "
                f"{self.max_header_bytes} are accepted."
            )
        if hosts != 1:
            # HTTP/1.0 may leave it out; two are ambiguous in every version.
            if hosts or scope.get("http_version") == "1.1":
                raise InvalidInput(
                    f"The request has {hosts} Host header fields: send exactly one (RFC 9112 §3.2)."
                )
        elif host is not None and _HOST.fullmatch(host) is None:
            raise InvalidInput("The Host header field is not a host name or address and port.")
        if upgrade is not None and b"websocket" in upgrade.lower():
            raise InvalidInput(
                "This API does not accept WebSocket connections: send plain HTTP requests."
            )
        if content_type is not None:
            _lower_media_type(scope, content_type)
        if length is not None:
            if not length.isdigit():  # also refuses a sign, spaces and an empty value
                raise InvalidInput("The Content-Length header must be a non-negative integer.")
            # Compared as text first: a 10,000-digit value is never turned into an int.
            if len(length) > 19 or int(length) > self.max_body_bytes:
                raise ContentTooLarge(self._too_large())
            if length == b"0":
                await self.app(scope, receive, send)
                return
            # The server delivers no more than Content-Length promised: nothing to count.
            await self.app(scope, self._watching(receive, None), send)
            return
        if scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._watching(receive, self.max_body_bytes), send)

    def _too_large(self) -> str:
        return f"The request body is larger than the {self.max_body_bytes} bytes accepted."

    def _watching(self, receive: Receive, limit: int | None) -> Receive:
        """``receive``, refusing a body that passes ``limit`` (one whose length was not
        announced), and one that ends before its last message: the client left, or the
        server stopped waiting for it (storefront.server). Connexion's body reader takes a
        disconnect for the end of the body, and would parse what came as if it were whole."""
        received = 0
        whole = False

        async def watched() -> Message:
            nonlocal received, whole
            message = await receive()
            if whole:
                return message
            if message["type"] == "http.request":
                whole = not message.get("more_body", False)
                if limit is not None:
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise ContentTooLarge(self._too_large())
            elif message["type"] == "http.disconnect":
                raise IncompleteBody(
                    "The request body did not arrive whole: the request was not carried out."
                )
            return message

        return watched
