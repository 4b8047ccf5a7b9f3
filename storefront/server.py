"""The HTTP/1.1 protocol ``storefront serve`` runs: uvicorn's httptools protocol, bounded.

uvicorn puts no limit on header fields with httptools (its default parser when
``uvicorn[standard]`` is installed; ``h11_max_incomplete_event_size`` applies to h11 only): a
2 MB header or 20,000 of them were read into memory and handed to the app. Here a request
with more than ``STOREFRONT_MAX_HEADER_COUNT`` fields, or more than
``STOREFRONT_MAX_HEADER_BYTES`` of request line and fields, is answered 431 as soon as its
head is parsed, and its connection closed; the app never sees it. A head still unfinished
once it has taken the byte limit plus one read from the socket is refused there and then.
So a head holds at most the limit plus one read of memory.

uvicorn's own answer to malformed HTTP (a bare CR, both Content-Length and
Transfer-Encoding, ...) is a text/plain 400; here it is the API's error shape.

The names of uvicorn used beyond its documented options (``HttpToolsProtocol``, the methods
overridden here, the attributes read) are in storefront/internals.py, each with its reason;
tests/test_internals_registry.py names any that moved or changed its parameters, and
tests/test_server_limits.py exercises them against a real server.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import load_settings

logger = logging.getLogger("storefront.server")
#: How long a refused connection's remaining input is read and dropped before it is closed.
LINGER_SECONDS = 2.0


@cache
def _limits() -> tuple[int, int]:
    """(header count, header bytes), read once per process: uvicorn builds the protocol in
    each worker, from the class alone."""
    settings = load_settings()
    return settings.max_header_count, settings.max_header_bytes


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_count, self.max_header_bytes = _limits()
        #: Why the current request is refused (None: it is not).
        self.refusal: str | None = None
        self.in_head = False
        self.head_began_in_this_read = False
        self.unfinished_head_reads = 0
        self.read_size = 0
        #: An answer of this module went out: the connection only lingers until it closes.
        self.answered = False

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return  # refused already: what still comes is dropped until the connection closes
        self.read_size = len(data)
        super().data_received(data)
        if self.refusal is None and self.in_head:
            # The head is unfinished: httptools is holding its bytes. Only reads that began
            # after it count (a read may end one request and start the next), so the memory
            # held is at most the limit plus one read.
            if self.head_began_in_this_read:
                self.head_began_in_this_read = False
            else:
                self.unfinished_head_reads += len(data)
                if self.unfinished_head_reads > self.max_header_bytes:
                    self.refusal = self._size_message(self.unfinished_head_reads)
        if self.refusal is not None:
            self._refuse()

    def _size_message(self, size: int) -> str:
        return (
            f"The request line and header fields take more than {self.max_header_bytes} "
            f"bytes ({size} at least)."
        )

    def _refuse(self) -> None:
        assert self.refusal is not None
        logger.warning(
            "refused a request from %s with 431: %s",
            self.client[0] if self.client else "?",
            self.refusal,
        )
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy:
            # A pipelined request: the one before it is still being answered, and answers go
            # out in order. That answer is the last on this connection, and this request
            # gets none: the client sees the connection close, as after any refusal.
            self.cycle.keep_alive = False
            self.answered = True
            return
        self._write(431, "Request Header Fields Too Large", self.refusal)

    def _write(self, status: int, reason: str, message: str) -> None:
        self.answered = True
        body = json.dumps({"error": reason, "message": message}).encode()
        head = [
            f"HTTP/1.1 {status} {reason}".encode(),
            *(name + b": " + value for name, value in self.server_state.default_headers),
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"x-content-type-options: nosniff",
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing with the client's bytes unread would reset the connection, and a reset can
        # destroy the answer before the client reads it. So: end our side, read (and drop,
        # see data_received) what is still coming for a moment, then close.
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        # uvicorn has logged the warning; only the body changes.
        self._write(400, "Bad Request", "The request is not valid HTTP/1.1.")

    # Parser callbacks. Only those that run once per request are overridden: one per header
    # field was the dearest part of parsing a request.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.refusal = None
        self.in_head = True
        self.head_began_in_this_read = True
        self.unfinished_head_reads = 0

    def on_headers_complete(self) -> None:
        self.in_head = False
        if len(self.headers) > self.max_header_count:
            self.refusal = f"The request has more than {self.max_header_count} header fields."
            return
        # A head that came whole in one read no longer than the limit is within it: only
        # other heads (long reads, heads in pieces) are measured.
        if not (self.head_began_in_this_read and self.read_size <= self.max_header_bytes):
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.max_header_bytes:
                self.refusal = self._size_message(size)
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.refusal is None:
            super().on_message_complete()
