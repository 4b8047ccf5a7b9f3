"""Size limits every request meets before any other work: header fields, then the body.
(And one normalisation made in the same pass over the headers: the media type's case.)

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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import (
    ContentTooLarge,
    HeadersTooLarge,
    IncompleteBody,
    InvalidInput,
)

#: Methods whose requests this API never reads a body of: no need to watch their stream.
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


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
        headers = scope["headers"]
        if len(headers) > self.max_header_count:
            raise HeadersTooLarge(
                f"The request has {len(headers)} header fields; at most "
                f"{self.max_header_count} are accepted."
            )
        # One pass: the size of the head, and the Content-Length (ASGI names are lower-case).
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
        length = content_type = None
        for name, value in headers:
            size += len(name) + len(value) + 4  # ": " and CRLF, as sent on the wire
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if size > self.max_header_bytes:
            raise HeadersTooLarge(
                f"The request line and header fields take {size} bytes; at most "
                f"{self.max_header_bytes} are accepted."
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
