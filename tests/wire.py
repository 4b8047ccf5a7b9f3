"""Round trips counted on the wire: a TCP proxy in front of PostgreSQL for tests that hold the
server to its round-trip budget (tests/test_round_trips.py).

A client of PostgreSQL waits for an answer after each simple Query message ('Q'), after each
Sync ('S'), which ends a batch of extended-protocol messages (Parse, Bind, Execute, ...), and
after each Flush ('H'), which asks for the answers so far without ending the batch (asyncpg
prepares a statement so): counting those three, as they pass, counts the round trips,
whatever the driver.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

#: The codes of the untyped requests a client may send before its startup message.
_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


class PostgresWire:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.round_trips = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._connections):  # the server under test has stopped by now
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def answers() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        relay = asyncio.create_task(answers())
        pending, started = b"", False
        try:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                pending += data
                while True:
                    if not started:  # untyped: int32 length, int32 code
                        if len(pending) < 8 or len(pending) < int.from_bytes(pending[:4]):
                            break
                        code = int.from_bytes(pending[4:8])
                        pending = pending[int.from_bytes(pending[:4]) :]
                        started = code not in (_SSL_REQUEST, _GSSENC_REQUEST)
                        continue
                    if len(pending) < 5 or len(pending) < 1 + int.from_bytes(pending[1:5]):
                        break
                    if pending[:1] in (b"Q", b"S", b"H"):
                        self.round_trips += 1
                    pending = pending[1 + int.from_bytes(pending[1:5]) :]
        finally:
            up_writer.close()
            writer.close()
            relay.cancel()


@contextmanager
def postgres_wire(host: str, port: int) -> Iterator[PostgresWire]:
    """A counting proxy to PostgreSQL at ``host:port`` until the block ends."""
    wire = PostgresWire(host, port)
    wire.start()
    try:
        yield wire
    finally:
        wire.stop()


@contextmanager
def redis_commands(url: str, mark: str) -> Iterator[list[str]]:
    """The commands clients send to the Redis at ``url`` until the block ends, those naming
    ``mark`` (a key prefix of the test's own: MONITOR sees every client of a Redis that other
    tests share), as Redis shows them. A Lua script's own commands run inside Redis and are
    not sent by a client: MONITOR shows them apart ("lua"), and they are left out."""
    import redis

    watching, marking = redis.Redis.from_url(url), redis.Redis.from_url(url)
    marking.ping()  # connected before MONITOR starts: its handshake is not seen
    end = f"end-of-watch-{uuid.uuid4().hex}"
    seen: list[str] = []
    with watching.monitor() as monitor:

        def listen() -> None:
            for command in monitor.listen():
                text = str(command["command"])
                if end in text:
                    return
                if command.get("client_type") != "lua" and mark in text:
                    seen.append(text)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        try:
            yield seen
        finally:
            marking.get(end)
            listener.join(10)
            marking.close()
    watching.close()
