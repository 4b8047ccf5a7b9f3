"""The HTTP/1.1 protocol ``storefront serve`` runs: uvicorn's httptools protocol, bounded.

What it adds to uvicorn's, each answered in the API's error shape (``{"error", "message"}``,
``Connection: close``) by the server itself, without the app:

- **Sizes.** uvicorn puts no limit on header fields with httptools
  (``h11_max_incomplete_event_size`` applies to h11 only): a request with more than
  ``STOREFRONT_MAX_HEADER_COUNT`` fields, or more than ``STOREFRONT_MAX_HEADER_BYTES`` of
  request line and fields, is a 431 as soon as its head is parsed; a head still unfinished
  once it has taken the byte limit plus one read is refused there and then. A chunked body
  is held here (below) and refused past ``STOREFRONT_MAX_BODY_BYTES`` with a 413.
- **Framing.** uvicorn calls the app as soon as a head is parsed, before httptools judges the
  body's framing: a ``DELETE`` with ``Transfer-Encoding: gzip`` got a 400 and was carried
  out. Here a transfer coding is judged with the head (RFC 9112 §6.1, §6.3: a final coding
  other than chunked is a 400, another coding under chunked a 501, any in HTTP/1.0 a 400),
  and a chunked request reaches the app only once its last chunk has been parsed, with its
  body whole and a ``Content-Length`` in place of ``Transfer-Encoding``: a bad chunk is a 400
  and no app code has run. A ``Content-Length`` body has no framing left to go wrong; it
  streams to the app as uvicorn sends it.
- **Order.** An error that ends a connection (any refusal here, or malformed HTTP: uvicorn's
  text/plain 400, here in the error shape) stops the parser at that request. Its answer
  waits until the requests before it on the connection are answered (RFC 9112 §9.3.2); the
  requests after it are never read.
- **Time and number.** A new connection must begin a request within
  ``STOREFRONT_FIRST_BYTE_TIMEOUT`` (else it is closed without a word), a head must arrive
  whole within ``STOREFRONT_HEAD_TIMEOUT`` of its first byte (else a 408), and a body may
  not pause longer than ``STOREFRONT_BODY_IDLE_TIMEOUT`` (else a 408, and the app, if it is
  reading it, sees the client leave). A connection past ``STOREFRONT_MAX_CONNECTIONS`` gets a
  503 and is closed before anything of it is read. Most requests arrive in one read and
  never arm a timer: a timer is armed only when a read leaves a head or a body unfinished.
  uvicorn's ``limit_concurrency`` is not used for the cap: it counts only once a head is
  parsed (idle and slow connections past it still hold their descriptors and memory), and
  answers text/plain.
- **Methods and upgrades.** A method httptools does not know (``FOO``, ``get``) is a 501;
  the methods it knows reach the app, which answers those it does not implement with a 501
  too. ``storefront serve`` runs uvicorn with ``ws="none"``: an ``Upgrade`` request is an
  ordinary request to the app (which refuses a WebSocket upgrade, storefront.http.limits),
  answered on a connection that then closes, since httptools reads nothing after an upgrade.

The names of uvicorn and httptools used beyond their documented options (``HttpToolsProtocol``,
the methods overridden here, the attributes read and set, httptools' parser errors) are in
storefront/internals.py, each with its reason; tests/test_internals_registry.py names any
that moved or changed its parameters, tests/test_uvicorn_pins.py pins the source of the
``data_received`` replaced here, and tests/test_server_limits.py and tests/test_server_edge.py
exercise them against a real server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NoReturn

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core import metrics
from core.settings import load_settings

logger = logging.getLogger("storefront.server")
#: How long a refused connection's remaining input is read and dropped before it is closed.
LINGER_SECONDS = 2.0
#: Connections refused past the cap are logged at most once per this many seconds.
CAP_WARNING_INTERVAL = 10.0
#: Reason phrases of the answers given here (Python's differ between versions for 413).
PHRASES = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    503: "Service Unavailable",
}
MALFORMED = "The request is not valid HTTP/1.1."

#: What a connection's one timer waits for.
FIRST_BYTE = "first_byte_timeout"
IDLE = "idle_timeout"
HEAD = "head_timeout"
BODY = "body_timeout"


@dataclass(frozen=True)
class Bounds:
    max_header_count: int
    max_header_bytes: int
    max_body_bytes: int
    first_byte_timeout: float
    head_timeout: float
    body_idle_timeout: float
    keep_alive_timeout: float
    max_connections: int


@cache
def _bounds() -> Bounds:
    """Read once per process: uvicorn builds the protocol in each worker, from the class
    alone."""
    s = load_settings()
    return Bounds(
        s.max_header_count,
        s.max_header_bytes,
        s.max_body_bytes,
        s.first_byte_timeout,
        s.head_timeout,
        s.body_idle_timeout,
        s.keep_alive_timeout,
        s.max_connections,
    )


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    #: The label of storefront_http_refused_total.
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


class _StopParsing(Exception):
    """Raised in a parser callback so that httptools parses nothing after the request refused
    (it raises HttpParserCallbackError from feed_data)."""


class _CapWarnings:
    """One WARNING per interval for connections refused past the cap, with their count: a
    flood of them must not become a flood of log lines."""

    def __init__(self) -> None:
        self.last = 0.0
        self.unlogged = 0

    def refused(self, cap: int) -> None:
        self.unlogged += 1
        now = time.monotonic()
        if now - self.last >= CAP_WARNING_INTERVAL:
            logger.warning(
                "refused %d connection(s) with 503: %d connections are open already "
                "(STOREFRONT_MAX_CONNECTIONS)",
                self.unlogged,
                cap,
            )
            self.last, self.unlogged = now, 0


_cap_warnings = _CapWarnings()


def _shown(value: bytes) -> str:
    """A client's bytes in a message: decoded, and short."""
    text = value.decode("latin-1")
    return text if len(text) <= 40 else text[:40] + "…"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bounds = _bounds()
        self.max_header_count = bounds.max_header_count
        self.max_header_bytes = bounds.max_header_bytes
        self.max_body_bytes = bounds.max_body_bytes
        self.bounds = bounds
        #: The answer that ends this connection, sent once the answers before it are.
        self.refusal: Refusal | None = None
        #: Nothing more is parsed: what still arrives is read and dropped.
        self.stopped = False
        #: The refusal went out: the connection only lingers until it closes.
        self.answered = False
        self.in_head = False
        self.in_body = False
        self.head_began_in_this_read = False
        self.unfinished_head_reads = 0
        self.read_size = 0
        #: The body of the current request, when it is chunked: held until its last chunk.
        self.held_body: bytearray | None = None
        self.held_headers: list[tuple[bytes, bytes]] = []
        #: The connection's one timer, and what it waits for (FIRST_BYTE, IDLE, HEAD, BODY).
        self.timer: asyncio.TimerHandle | None = None
        self.waiting_for: str | None = None
        self.last_body_read = 0.0

    # The connection.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections:
            # Before a byte is read: the point is to spend nothing more on it.
            _cap_warnings.refused(self.bounds.max_connections)
            self._refuse(
                Refusal(
                    503,
                    f"The server holds {self.bounds.max_connections} connections, its most; "
                    "retry in a moment, or reuse a connection you hold.",
                    "connection_cap",
                    ((b"retry-after", b"1"),),
                ),
                log=False,
            )
            return
        self._wait(FIRST_BYTE, self.bounds.first_byte_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._stop_waiting()

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with each parser error told apart, and refusals answered in order.
        if self.stopped:
            return  # refused already: what still comes is dropped until the connection closes
        self._unset_keepalive_if_required()
        self.read_size = len(data)
        self.head_began_in_this_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self.refusal is None:  # a callback of uvicorn's own failed (e.g. on the URL)
                self._malformed()
            return
        except httptools.HttpParserInvalidMethodError:
            # Any token but the methods httptools knows (HTTP's and WebDAV's, in capitals).
            self._refuse(
                Refusal(
                    501,
                    "The request method is not one this server implements.",
                    "unknown_method",
                )
            )
            return
        except httptools.HttpParserUpgrade:
            # An Upgrade this server does not take (uvicorn runs with ws="none"): the request
            # went to the app as plain HTTP (httptools raises once its message is complete,
            # before the app has answered). httptools parses nothing after an upgrade, so
            # that answer is the connection's last; what follows is never read.
            cycle = self.cycle
            if cycle is not None and cycle.scope is self.scope:
                cycle.keep_alive = False
            self.stopped = True
            self._stop_waiting()
            return
        except httptools.HttpParserError:
            self._malformed()
            return
        self._after_read()

    def _after_read(self) -> None:
        # Most reads end with a request whole, no timer armed: three attribute tests.
        if self.in_head:
            # The head is unfinished: httptools is holding its bytes. Only reads that began
            # after it count (a read may end one request and start the next), so the memory
            # held is at most the limit plus one read.
            if not self.head_began_in_this_read:
                self.unfinished_head_reads += self.read_size
                if self.unfinished_head_reads > self.max_header_bytes:
                    self._refuse(self._too_large(self.unfinished_head_reads))
                    return
            if self.waiting_for is not HEAD:
                self._wait(HEAD, self.bounds.head_timeout)
        elif self.in_body:
            self.last_body_read = self.loop.time()
            if self.waiting_for is not BODY:
                self._wait(BODY, self.bounds.body_idle_timeout)
        elif self.head_began_in_this_read:
            if self.timer is not None:
                self._stop_waiting()  # a request arrived whole: the server has the next move
        elif self.timer is None and self._idle():
            # Bytes that began no request (empty lines): still waiting for one.
            self._wait(IDLE, self.bounds.keep_alive_timeout)

    def _idle(self) -> bool:
        """No request is being read, run or answered on this connection."""
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not self.pipeline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.refusal is not None and not self.answered:
            self._answer_when_due()
        elif self.in_head or self.in_body:
            # The next request is under way: its own timer bounds it, not keep-alive's.
            self._unset_keepalive_if_required()

    # Parser callbacks. Only those that run once per request are overridden: one per header
    # field was the dearest part of parsing a request.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_began_in_this_read = True
        self.unfinished_head_reads = 0

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.waiting_for is HEAD:
            self._stop_waiting()
        headers = self.headers
        # A head that came whole in one read no longer than the limit is within it: only
        # other heads (long reads, heads in pieces) are measured. Bytes before the count, so
        # that a head over both gets one answer however it was split into reads (one that
        # stays unfinished can only be refused for its bytes, data_received).
        if not (self.head_began_in_this_read and self.read_size <= self.max_header_bytes):
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in headers)
            if size > self.max_header_bytes:
                self._stop(self._too_large(size))
        if len(headers) > self.max_header_count:
            self._stop(
                Refusal(
                    431,
                    f"The request has more than {self.max_header_count} header fields.",
                    "header_fields",
                )
            )
        for name, _ in headers:
            if name == b"transfer-encoding":
                self._check_transfer_coding(headers)
                self._hold()
                return
        super().on_headers_complete()
        self.in_body = True  # until on_message_complete, which follows at once without a body

    def on_body(self, body: bytes) -> None:
        held = self.held_body
        if held is None:
            super().on_body(body)
            return
        held += body
        if len(held) > self.max_body_bytes:
            self._stop(
                Refusal(
                    413,
                    f"The request body is larger than the {self.max_body_bytes} bytes accepted.",
                    "body_too_large",
                )
            )

    def on_message_complete(self) -> None:
        self.in_body = False
        if self.waiting_for is BODY:
            self._stop_waiting()
        held = self.held_body
        if held is None:
            super().on_message_complete()
            return
        # The last chunk is in: the app gets the request now, its body whole, framed as if
        # it had come with Content-Length (how the server received it is not the app's
        # business; Connexion reads a body's presence from Content-Length).
        self.held_body = None
        headers = [(name, v) for name, v in self.held_headers if name != b"transfer-encoding"]
        headers.append((b"content-length", str(len(held)).encode()))
        self.headers = self.scope["headers"] = headers
        super().on_headers_complete()  # the app is called, or queued behind those before
        self.cycle.body = held
        super().on_message_complete()

    # Requests.

    def _check_transfer_coding(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Refuse a request whose transfer codings are not chunked alone (RFC 9112 §6)."""
        if self.parser.get_http_version() != "1.1":
            self._stop(
                Refusal(
                    400,
                    "Transfer-Encoding is not allowed in an HTTP/1.0 request (RFC 9112 §6.1): "
                    "send the body with Content-Length.",
                    "transfer_coding",
                )
            )
        codings = [
            coding.partition(b";")[0].strip().lower()
            for name, value in headers
            if name == b"transfer-encoding"
            for coding in value.split(b",")
            if coding.strip()
        ]
        if not codings or codings[-1] != b"chunked":
            sent = b", ".join(value for name, value in headers if name == b"transfer-encoding")
            self._stop(
                Refusal(
                    400,
                    f"The request's Transfer-Encoding ({_shown(sent)}) does not end in chunked: "
                    "the length of its body cannot be determined.",
                    "transfer_coding",
                )
            )
        others = codings[:-1]
        if b"chunked" in others:
            self._stop(Refusal(400, "The request is chunked more than once.", "transfer_coding"))
        if others:
            self._stop(
                Refusal(
                    501,
                    f"The transfer coding '{_shown(others[0])}' is not implemented: send the "
                    "body with Content-Length, or with Transfer-Encoding: chunked alone.",
                    "transfer_coding",
                )
            )

    def _hold(self) -> None:
        """A chunked request: no app code runs until its last chunk has been parsed."""
        self.held_body = bytearray()
        self.in_body = True
        # Trailer fields are parsed like header fields: they must not join the head.
        self.held_headers, self.headers = self.headers, []
        if self.expect_100_continue:
            # uvicorn sends 100 Continue when the app first reads the body; the app waits for
            # the body here. Only when no answer is due before it, so that answers stay in
            # order; otherwise the client sends its body after its own wait.
            if self._idle():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.expect_100_continue = False

    # Timers.

    def _wait(self, what: str, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.waiting_for = what
        self.timer = self.loop.call_later(seconds, self._timed_out)

    def _stop_waiting(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.waiting_for = None

    def _timed_out(self) -> None:
        what, self.timer, self.waiting_for = self.waiting_for, None, None
        if self.stopped or self.transport.is_closing():
            return
        if what in (FIRST_BYTE, IDLE):
            if self._idle() and not self.in_head and not self.in_body:
                # Nothing was asked: there is nothing to answer.
                logger.debug("closed a connection that sent no request: %s", what)
                metrics.HTTP_REFUSED.labels(reason=what, status="none").inc()
                self.stopped = True
                self.transport.close()
        elif what == HEAD and self.in_head:
            if not self._idle():
                # Answers are still due before this head's: the client may wait for them.
                self._wait(HEAD, self.bounds.head_timeout)
                return
            self._refuse(
                Refusal(
                    408,
                    f"The request head did not arrive whole within "
                    f"{self.bounds.head_timeout:g} seconds.",
                    HEAD,
                )
            )
        elif what == BODY and self.in_body:
            self._body_timed_out()

    def _body_timed_out(self) -> None:
        paused_for = self.loop.time() - self.last_body_read
        if paused_for < self.bounds.body_idle_timeout or not self.transport.is_reading():
            # Bytes came meanwhile, or the server is not reading (the app has not read what
            # came, or answers are due first): the client is not the one waiting.
            self._wait(BODY, max(self.bounds.body_idle_timeout - paused_for, 0.1))
            return
        refusal = Refusal(
            408,
            f"The request body stopped arriving: nothing came for "
            f"{self.bounds.body_idle_timeout:g} seconds. The request was not carried out.",
            BODY,
        )
        cycle = self.cycle
        if self.held_body is None and cycle is not None:
            if cycle.response_started:
                # Answered already (e.g. a 401 before the body was read): no second answer.
                metrics.HTTP_REFUSED.labels(reason=BODY, status="none").inc()
                self.stopped = True
                if cycle.response_complete:
                    self.transport.close()
                else:
                    cycle.keep_alive = False
                return
            # The app is waiting for the rest of the body: it is told the client left
            # (http.disconnect), so that it stops without carrying the request out; what it
            # might still send is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(refusal)

    # Refusals.

    def _malformed(self) -> None:
        # uvicorn's own warning, as it logs it; only the answer differs.
        self.logger.warning("Invalid HTTP request received.")
        self._refuse(Refusal(400, MALFORMED, "malformed"), log=False)

    def _too_large(self, size: int) -> Refusal:
        return Refusal(
            431,
            f"The request line and header fields take more than {self.max_header_bytes} "
            f"bytes ({size} at least).",
            "header_fields",
        )

    def _stop(self, refusal: Refusal) -> NoReturn:
        """In a parser callback: refuse, and stop httptools at this request."""
        self._refuse(refusal)
        raise _StopParsing

    def _refuse(self, refusal: Refusal, *, log: bool = True) -> None:
        """End the connection with ``refusal``, once the answers already due are sent."""
        if self.refusal is not None:
            return
        self.refusal = refusal
        self.stopped = True
        self.held_body = None  # a held request is dropped: its app never ran
        self._stop_waiting()
        metrics.HTTP_REFUSED.labels(reason=refusal.reason, status=str(refusal.status)).inc()
        if log:
            logger.warning(
                "refused a request from %s with %d: %s",
                self.client[0] if self.client else "?",
                refusal.status,
                refusal.message,
            )
        self._answer_when_due()

    def _answer_when_due(self) -> None:
        cycle = self.cycle
        if self.pipeline or (
            cycle is not None and not cycle.response_complete and not cycle.disconnected
        ):
            return  # on_response_complete comes back here once the answer in progress is out
        assert self.refusal is not None
        self._write(self.refusal)

    def _write(self, refusal: Refusal) -> None:
        self.answered = True
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        body = json.dumps({"error": PHRASES[refusal.status], "message": refusal.message}).encode()
        head = [
            f"HTTP/1.1 {refusal.status} {PHRASES[refusal.status]}".encode(),
            *(name + b": " + value for name, value in self.server_state.default_headers),
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"x-content-type-options: nosniff",
            *(name + b": " + value for name, value in refusal.headers),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing with the client's bytes unread would reset the connection, and a reset can
        # destroy the answer before the client reads it. So: end our side, read (and drop,
        # see data_received) what is still coming for a moment, then close. Reading may
        # have been paused for a pipeline: it resumes.
        self.transport.write_eof()
        self.transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
