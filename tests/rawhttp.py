"""HTTP/1.1 over a bare socket, for the tests of what ``storefront serve`` does at the edge:
bytes sent exactly as written (pipelined, malformed, trickled), answers read one by one, in
the order they come, and whether the server closed the connection."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    reason: str
    #: Lower-case names; a repeated field keeps its last value.
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def line(self) -> str:
        return f"{self.status} {self.reason}"


class Closed(Exception):
    """The server closed the connection before a whole answer arrived."""


class Connection:
    def __init__(self, base: str, timeout: float = 10) -> None:
        parts = urlsplit(base)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        # Refused part way, the send fails: the answer is waiting to be read all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def _more(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.buffer += chunk
        return bool(chunk)

    def answer(self, *, head_only: bool = False) -> Answer:
        """The next answer; ``head_only``: the answer to a HEAD request (no body)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise Closed(self.buffer)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        _, status, reason = [*status_line.split(" ", 2), ""][:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        if head_only or int(status) in (204, 304) or 100 <= int(status) < 200:
            length = 0
        elif headers.get("transfer-encoding") == "chunked":
            return Answer(int(status), reason, headers, self._chunked())
        else:
            length = int(headers["content-length"])
        while len(self.buffer) < length:
            if not self._more():
                raise Closed(self.buffer)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status), reason, headers, body)

    def _chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                if not self._more():
                    raise Closed(self.buffer)
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                if not self._more():
                    raise Closed(self.buffer)
            body += self.buffer[:size]
            self.buffer = self.buffer[size + 2 :]
            if size == 0:
                return body

    def answers(self) -> list[Answer]:
        """Every answer until the server closes the connection (within the socket's timeout)."""
        found = []
        while True:
            try:
                found.append(self.answer())
            except Closed:
                assert not self.buffer.strip(), f"a partial answer: {self.buffer!r}"
                return found

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection within ``seconds``; what it sent before
        closing stays in the buffer."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self._more():
                    return True
        except TimeoutError:
            pass
        return False


def request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A request as bytes: ``Host`` first unless ``headers`` names one (as "Host"), and a
    ``Content-Length`` when there is a body and no ``Transfer-Encoding``."""
    fields = {"Host": "test"} | (headers or {})
    if body and "Transfer-Encoding" not in fields and "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body
