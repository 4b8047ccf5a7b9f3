"""What ``storefront serve`` itself refuses, over a socket: oversized heads and malformed HTTP.

Each was once answered 200 (a 2 MB header, 20,000 headers) or with uvicorn's text/plain 400.
Now they get the API's error shape, one WARNING line and no traceback. The refusals inside
the app (bodies, forms, JSON) are in tests/http/test_limits.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers import Server, clean_env, demo_server, wait_until_up

#: A credential every refused request carries: it must not reach the log.
CANARY = b"sk_canary0123456789abcdefghijklmnopqrstuv"
HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " + CANARY + b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Limits other than the defaults, so that the numbers in the answers show they are read.
    env = clean_env(STOREFRONT_MAX_HEADER_COUNT="50", STOREFRONT_MAX_HEADER_BYTES="8192")
    with demo_server(tmp_path_factory.mktemp("limits"), env) as running:
        wait_until_up(running.base)  # startup completes before the socket is bound
        yield running


def connect(server: Server) -> socket.socket:
    parts = urlsplit(server.base)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One response off ``sock``: status, headers (lower-case names), body as JSON."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length])


def exchange(server: Server, raw: bytes) -> tuple[int, dict[str, str], Any]:
    with connect(server) as sock:
        # Refused part way, the send fails: the answer is waiting to be read all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        return read_response(sock)


def new_log_lines(server: Server, since: int, expect: str | None = None) -> list[str]:
    """The server's log lines after ``since``, once ``expect`` is among them."""
    deadline = time.monotonic() + 5
    while expect is not None and time.monotonic() < deadline:
        if any(expect in line for line in server.lines[since:]):
            break
        time.sleep(0.02)
    return server.lines[since:]


def oversized(raw: bytes, words: str, name: str) -> Any:
    """A head the server layer refuses with a 431 (storefront/server.py)."""
    return pytest.param(raw, 431, words, "storefront.server", id=name)


def malformed(raw: bytes, name: str) -> Any:
    """A request httptools cannot parse: uvicorn's 400, in the error shape."""
    return pytest.param(raw, 400, "not valid HTTP/1.1", "Invalid HTTP request received", id=name)


TOO_MANY_BYTES = "more than 8192 bytes"


@pytest.mark.parametrize(
    ("raw", "status", "words", "logged"),
    [
        oversized(
            HEAD + b"X-Big: " + b"a" * (2 * 1024 * 1024) + b"\r\n\r\n",
            TOO_MANY_BYTES,
            "one-2MB-header",
        ),
        # In one read: measured whole.
        oversized(HEAD + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", TOO_MANY_BYTES, "one-9KB-header"),
        # 250 KB of head: the byte limit trips first, before the fields are counted.
        oversized(
            HEAD + b"".join(b"x-h%d: 1\r\n" % i for i in range(20_000)) + b"\r\n",
            TOO_MANY_BYTES,
            "20000-headers",
        ),
        oversized(
            HEAD + b"".join(b"x-h%d: 1\r\n" % i for i in range(60)) + b"\r\n",
            "more than 50 header fields",
            "60-headers",
        ),
        malformed(HEAD + b"X-Y: z\rX-Z: y\r\n\r\n", "bare-CR"),
        malformed(
            HEAD.replace(b"GET", b"POST") + b"Content-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "content-length-and-chunked",
        ),
        pytest.param(
            HEAD.replace(b"GET /healthz", b"POST /users")
            + b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
            + b" " * 65536,
            413,
            "larger than the 1048576 bytes",
            "POST unmatched 413",
            id="10MB-body",
        ),
    ],
)
def test_refused_in_the_error_shape_with_one_warning(
    server: Server, raw: bytes, status: int, words: str, logged: str
) -> None:
    since = len(server.lines)
    got, headers, body = exchange(server, raw)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert set(body) == {"error", "message"}
    assert words in body["message"]
    lines = new_log_lines(server, since, expect=logged)
    assert any(logged in line for line in lines), lines
    assert not any("Traceback" in line or " ERROR " in line for line in lines), lines
    assert sum(" WARNING " in line for line in lines) <= 1, lines
    assert not any(CANARY.decode() in line for line in lines)


def test_an_unfinished_head_is_refused_once_it_passes_the_limit(server: Server) -> None:
    # Sent in pieces and never finished: the server answers without waiting for the end.
    with connect(server) as sock:
        sock.sendall(HEAD + b"X-Slow: ")
        for _ in range(40):
            time.sleep(0.005)
            try:
                sock.sendall(b"a" * 1024)
            except (BrokenPipeError, ConnectionResetError):
                break
        status, _, body = read_response(sock)
    assert status == 431
    assert "8192 bytes" in body["message"]


def test_heads_within_the_limits_are_served_and_keep_the_connection(server: Server) -> None:
    fields = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(45))  # ~5 KB
    with connect(server) as sock:
        for _ in range(2):  # one connection, two requests: the counts start over
            sock.sendall(HEAD + fields + b"\r\n")
            status, headers, body = read_response(sock)
            assert (status, body) == (200, {"status": "ok"})
            assert headers.get("connection") != "close"
        # A head that arrives a few bytes at a time is counted once, not per read.
        request = HEAD + fields + b"\r\n"
        for start in range(0, len(request), 1024):
            sock.sendall(request[start : start + 1024])
            time.sleep(0.002)
        assert read_response(sock)[0] == 200
