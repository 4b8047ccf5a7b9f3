"""storefront.eventloop: uvloop that accepts every waiting connection in one turn.

Counted in turns of the loop, not in time: a connection accepted k turns late waits for k
turns' worth of other requests, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest
import uvloop

from storefront import eventloop
from storefront.eventloop import GreedyAcceptLoop, GreedyAcceptServer

WAITING = 40


class Recorder(asyncio.Protocol):
    made: list[asyncio.BaseTransport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def turn(loop: asyncio.AbstractEventLoop, times: int = 1) -> None:
    """Run the loop for ``times`` turns: one poll for I/O and the callbacks it readied, each."""
    for _ in range(times):
        loop.call_soon(loop.stop)
        loop.run_forever()


@contextmanager
def listening(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> Iterator[tuple[asyncio.AbstractEventLoop, asyncio.AbstractServer, list[object], int]]:
    loop = new_loop()
    made: list[object] = []
    recorder = type("R", (Recorder,), {"made": made})
    server = loop.run_until_complete(loop.create_server(recorder, "127.0.0.1", 0, backlog=128))
    port = server.sockets[0].getsockname()[1]
    try:
        yield loop, server, made, port
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        for transport in made:
            transport.close()  # type: ignore[attr-defined]
        turn(loop)
        loop.close()


def connections_made_after_three_turns(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> int:
    with listening(new_loop) as (loop, _, made, port), ExitStack() as clients:
        for _ in range(WAITING):
            # The kernel completes the handshake: all are waiting before the loop turns.
            clients.enter_context(socket.create_connection(("127.0.0.1", port)))
        turn(loop, 3)
        return len(made)


def test_connections_that_arrive_together_are_all_accepted_within_three_turns() -> None:
    assert connections_made_after_three_turns(GreedyAcceptLoop) == WAITING


def test_stock_uvloop_still_accepts_one_connection_per_turn() -> None:
    """Why storefront.eventloop exists. When this fails, uvloop accepts greedily again and
    ``storefront serve`` can go back to uvicorn's ``loop="uvloop"``."""
    assert connections_made_after_three_turns(uvloop.new_event_loop) < WAITING // 4


def test_a_given_socket_is_served_and_closed_with_the_server() -> None:
    """uvicorn's ``--workers`` path binds the socket itself and passes ``sock=``."""
    loop = GreedyAcceptLoop()
    made: list[object] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = loop.run_until_complete(
        loop.create_server(type("R", (Recorder,), {"made": made}), sock=listener, backlog=16)
    )
    assert isinstance(server, GreedyAcceptServer)
    assert server.sockets == (listener,)
    with socket.create_connection(("127.0.0.1", port)):
        turn(loop, 3)
        assert len(made) == 1
    serving = loop.create_task(server.serve_forever())
    turn(loop)
    assert server.is_serving()
    assert not serving.done()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.run_until_complete(serving)  # serve_forever returns once the server is closed
    assert not server.is_serving()
    assert listener.fileno() == -1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    for transport in made:
        transport.close()  # type: ignore[attr-defined]
    turn(loop)
    loop.close()


def test_tls_and_other_options_go_to_uvloops_own_server() -> None:
    loop = GreedyAcceptLoop()
    server = loop.run_until_complete(
        loop.create_server(asyncio.Protocol, "127.0.0.1", 0, reuse_address=True)
    )
    try:
        assert not isinstance(server, GreedyAcceptServer)
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


class Exhausted:
    """A listening socket whose accept() fails as when the process has no descriptors left."""

    def __init__(self, fileno: int) -> None:
        self._fileno = fileno
        self.calls = 0

    def fileno(self) -> int:
        return self._fileno

    def accept(self) -> tuple[socket.socket, object]:
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")


def test_out_of_descriptors_pauses_accepting_and_resumes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(eventloop, "ACCEPT_RETRY_DELAY", 0.01)
    with listening(GreedyAcceptLoop) as (loop, server, _, _):
        assert isinstance(server, GreedyAcceptServer)
        exhausted = Exhausted(server.sockets[0].fileno())
        calls: list[tuple[str, int]] = []
        add, remove = loop.add_reader, loop.remove_reader
        monkeypatch.setattr(loop, "add_reader", lambda fd, *a: calls.append(("add", fd)))
        monkeypatch.setattr(loop, "remove_reader", lambda fd: calls.append(("remove", fd)))
        with caplog.at_level(logging.ERROR, logger="storefront.server"):
            server._accept(exhausted)  # type: ignore[arg-type]
        assert exhausted.calls == 1  # no busy retry within the turn
        assert "cannot accept connections (Too many open files)" in caplog.text
        assert calls == [("remove", exhausted.fileno())]  # paused
        loop.run_until_complete(asyncio.sleep(0.05))
        assert calls == [("remove", exhausted.fileno()), ("add", exhausted.fileno())]
        monkeypatch.setattr(loop, "add_reader", add)
        monkeypatch.setattr(loop, "remove_reader", remove)
