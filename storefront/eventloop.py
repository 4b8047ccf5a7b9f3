"""The event loop ``storefront serve`` runs: uvloop, accepting every waiting connection at once.

libuv 1.45 (uvloop 0.18 and later bundle it) accepts one connection per turn of the loop
(libuv pull request 3696, "don't accept() connections in a loop"). A turn of a busy server
first answers every request that is ready, 20-30 ms of work at 32 connections, so the k-th of
several connections that arrive together waits k turns for its first answer. Captured on the
loopback (``bench/tails.py``), the first requests of 32 new connections finished one every
~22 ms, the last after 420 ms, while every other request took 20-40 ms: those 32 were the
whole p99 of a wrk run, and a new client meets the same wait whenever the server is busy.

asyncio's own loop accepts up to ``backlog`` connections per turn. This loop is uvloop in
everything else, and accepts the way asyncio does: ``create_server`` listens on the socket
itself (``add_reader``), accepts what is waiting, up to ``ACCEPT_BATCH`` per turn, and hands
each connection to uvloop (``connect_accepted_socket``), whose transports then serve it.

The interfaces between uvicorn and the loop are asyncio's: uvicorn takes a loop factory as an
import string (``loop=``), calls ``create_server(protocol_factory, host=, port= | sock=,
ssl=, backlog=)`` and uses the returned server's ``sockets``, ``close()`` and
``wait_closed()``; anything else asked of ``create_server`` (TLS, reuse_port, ...) goes to
uvloop's own. What uvloop does not document is its ``Loop`` class, subclassed here, and
overriding its ``create_server``: storefront/internals.py lists both.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

import uvloop

logger = logging.getLogger("storefront.server")

#: Most connections accepted in one turn of the loop. Bounded (asyncio takes up to the backlog,
#: 2048 under uvicorn) so that with several workers on one socket a single worker does not
#: take a whole burst, and one turn's set-up work stays short.
ACCEPT_BATCH = 64
#: How long accepting pauses when the process is out of file descriptors or memory (as asyncio).
ACCEPT_RETRY_DELAY = 1.0
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class GreedyAcceptServer(asyncio.AbstractServer):
    """Listening sockets served by :class:`GreedyAcceptLoop` (the ``asyncio.Server`` interface
    uvicorn uses)."""

    def __init__(
        self,
        loop: GreedyAcceptLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self._loop = loop
        self._sockets = sockets
        self._protocol_factory = protocol_factory
        self._serving = True
        self._closed = asyncio.Event()
        #: Hand-overs to uvloop in progress (each a task, so that close() can wait for them).
        self._handovers: set[asyncio.Task[Any]] = set()
        for sock in sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        """Serving starts with the server, as with ``create_server(start_serving=True)``."""

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        """Stop listening and close the listening sockets; open connections are uvicorn's."""
        if not self._serving:
            return
        self._serving = False
        self._closed.set()
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        if self._handovers:
            await asyncio.gather(*self._handovers, return_exceptions=True)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more is waiting
            except ConnectionAbortedError:
                continue  # the client gave up while queued; the next may be there
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                logger.error(
                    "cannot accept connections (%s); trying again in %.0f s",
                    exc.strerror,
                    ACCEPT_RETRY_DELAY,
                )
                self._loop.remove_reader(listener.fileno())
                self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume, listener)
                return
            self._hand_over(connection)

    def _resume(self, listener: socket.socket) -> None:
        if self._serving:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    def _hand_over(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        if connection.family in (socket.AF_INET, socket.AF_INET6):
            # As asyncio and uvloop do for the connections they accept: a response's head
            # and body, sent separately, must not wait for the client's delayed ACK.
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(self._protocol_factory, connection)
        )
        self._handovers.add(task)
        task.add_done_callback(self._handed_over(connection))

    def _handed_over(self, connection: socket.socket) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            self._handovers.discard(task)
            if not task.cancelled() and task.exception() is not None:
                # The client left between accept() and the hand-over: nothing to serve.
                logger.debug("connection lost before it was served: %s", task.exception())
                connection.close()

        return done


def _listening_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening sockets for host and port, as ``loop.create_server`` makes them."""
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    made: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio: IPv6 must not also take the IPv4 port.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError:
        for sock in made:
            sock.close()
        raise
    return made


class GreedyAcceptLoop(uvloop.Loop):
    async def create_server(  # type: ignore[override]  # the keyword-only subset uvicorn uses
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        **options: Any,
    ) -> asyncio.AbstractServer:
        if ssl is not None or options or (sock is None and port is None):
            uvloops: Any = super()  # its overloads split host/port from sock; all are passed on
            return await uvloops.create_server(  # type: ignore[no-any-return]
                protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl, **options
            )
        sockets: Iterable[socket.socket]
        if sock is not None:
            sock.listen(backlog)  # as asyncio does with a given socket (uvicorn's workers)
            sockets = [sock]
        else:
            assert port is not None
            sockets = _listening_sockets(host, port, backlog)
        return GreedyAcceptServer(self, list(sockets), protocol_factory)


def new_event_loop() -> GreedyAcceptLoop:
    """uvicorn's ``loop=`` hook: an import string names a function that makes the loop
    (``loop="storefront.eventloop:new_event_loop"``)."""
    return GreedyAcceptLoop()
