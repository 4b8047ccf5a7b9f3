"""The HTTP edge of ``storefront serve``, over real sockets (the contract's "The HTTP edge").

Framing that the server refuses (a transfer coding it does not implement, a bad chunk) runs
no handler; pipelined requests are answered in order, an error that ends the connection
last; slow or idle connections are timed out and their number capped, while normal clients
are served; ``Host`` and credentials are taken only once; a WebSocket upgrade and an unknown
method are refused in the error shape. Each test writes bytes as a client would and reads
what comes back, in order, as a client would. The size limits of heads are in
tests/test_server_limits.py.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.rawhttp import Answer, Connection, request
from tests.servers import Server, clean_env, demo_server, storefront_json, wait_until_up

#: The server's bounds, short so that the tests need not wait long (seconds).
HEAD_TIMEOUT = 2.0
FIRST_BYTE_TIMEOUT = 2.0
BODY_IDLE_TIMEOUT = 2.0
KEEP_ALIVE_TIMEOUT = 2
#: How much later than its bound a refusal may come on a busy machine.
SLACK = 3.0


@dataclass
class Edge:
    server: Server
    directory: Path
    client_id: str
    client_secret: str
    bearer: str

    @property
    def base(self) -> str:
        return self.server.base

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}

    def log_since(self, since: int, expect: str | None = None) -> list[str]:
        """The server's log lines after ``since``, once ``expect`` is among them."""
        deadline = time.monotonic() + 5
        while expect is not None and time.monotonic() < deadline:
            if any(expect in line for line in self.server.lines[since:]):
                break
            time.sleep(0.02)
        time.sleep(0.2)  # what the server logs right after
        return self.server.lines[since:]

    def new_user(self) -> str:
        email = f"edge-{uuid.uuid4().hex[:12]}@example.com"
        body = {"name": "Edge", "email": email, "password": "password-1"}
        created = httpx.post(f"{self.base}/users", json=body, headers=self.auth(), timeout=10)
        assert created.status_code == 201, created.text
        user_id: str = created.json()["id"]
        return user_id

    def user_status(self, user_id: str) -> int:
        found = httpx.get(f"{self.base}/users/{user_id}", headers=self.auth(), timeout=10)
        return found.status_code

    def user_count(self) -> int:
        listed = httpx.get(f"{self.base}/users?limit=1", headers=self.auth(), timeout=10)
        return int(listed.headers["x-total-count"])


def start(tmp_path_factory: pytest.TempPathFactory, name: str, **settings: str) -> Iterator[Edge]:
    env = clean_env(
        # The tests send many requests and many refused credentials on one client.
        STOREFRONT_RATE_LIMIT="1000000/minute",
        STOREFRONT_AUTH_FAILURE_LIMIT="1000000/minute",
        **{f"STOREFRONT_{key.upper()}": value for key, value in settings.items()},
    )
    directory = tmp_path_factory.mktemp(name)
    with demo_server(directory, env) as running:
        wait_until_up(running.base)
        found = dict(re.findall(r"(client_id|client_secret):\s+(\S+)", running.output))
        token = httpx.post(
            f"{running.base}/auth/token",
            data={"grant_type": "client_credentials", **found},
            timeout=10,
        )
        assert token.status_code == 200, token.text
        yield Edge(
            running,
            directory,
            found["client_id"],
            found["client_secret"],
            token.json()["access_token"],
        )


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    yield from start(
        tmp_path_factory,
        "edge",
        head_timeout=str(HEAD_TIMEOUT),
        first_byte_timeout=str(FIRST_BYTE_TIMEOUT),
        body_idle_timeout=str(BODY_IDLE_TIMEOUT),
        keep_alive_timeout=str(KEEP_ALIVE_TIMEOUT),
        max_connections="400",
    )


def assert_error(answer: Answer, status: int, *words: str) -> dict[str, str]:
    """An answer in the contract's error shape, naming ``words``."""
    assert answer.status == status, (answer.line, answer.body)
    assert answer.headers["content-type"] == "application/json", answer.headers
    body: dict[str, str] = answer.json()
    assert set(body) == {"error", "message"}, body
    for word in words:
        assert word in body["message"], body
    return body


def assert_quiet(lines: list[str]) -> None:
    """No traceback, no ERROR line, no 500 among the server's log lines."""
    for line in lines:
        assert "Traceback" not in line, lines
        assert " ERROR " not in line, lines
        assert " 500 " not in line, lines


def delete(user_id: str, edge: Edge, extra: str = "", body: bytes = b"") -> bytes:
    head = f"DELETE /users/{user_id} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {edge.bearer}"
    return (head + extra + "\r\n\r\n").encode() + body


# 1. A request whose framing is refused is not carried out.


@pytest.mark.parametrize(
    ("coding", "status", "words"),
    [
        # RFC 9112 §6.3: a request's final transfer coding is not chunked: its length is
        # unknown, 400 and close.
        ("gzip", 400, "does not end in chunked"),
        ("identity", 400, "does not end in chunked"),
        ("xchunked", 400, "does not end in chunked"),
        # httptools refuses this one itself while it reads the head.
        ("chunked, gzip", 400, "not valid HTTP/1.1"),
        # RFC 9112 §6.1: a coding the server does not implement, applied under chunked: 501.
        ("gzip, chunked", 501, "'gzip' is not implemented"),
        ("x-custom, chunked", 501, "'x-custom' is not implemented"),
    ],
)
def test_a_transfer_coding_not_implemented_is_refused_and_the_delete_not_carried_out(
    edge: Edge, coding: str, status: int, words: str
) -> None:
    user_id = edge.new_user()
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(delete(user_id, edge, f"\r\nTransfer-Encoding: {coding}", b"0\r\n\r\n"))
        answers = conn.answers()
    assert edge.user_status(user_id) == 200, "the user was deleted"
    lines = edge.log_since(since, expect="refused")
    assert not any("DELETE /users/{id}" in line for line in lines), lines
    assert_quiet(lines)
    assert [a.status for a in answers] == [status], [a.line for a in answers]
    assert_error(answers[0], status, words)
    assert answers[0].headers["connection"] == "close"


def test_a_bad_chunk_size_is_refused_and_the_delete_not_carried_out(edge: Edge) -> None:
    user_id = edge.new_user()
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(delete(user_id, edge, "\r\nTransfer-Encoding: chunked", b"zz\r\n"))
        answers = conn.answers()
    assert edge.user_status(user_id) == 200, "the user was deleted"
    lines = edge.log_since(since, expect="Invalid HTTP request")
    assert not any("DELETE /users/{id}" in line for line in lines), lines
    assert_quiet(lines)
    assert [a.status for a in answers] == [400]
    assert_error(answers[0], 400, "not valid HTTP/1.1")


def test_a_bad_chunk_after_a_good_one_creates_no_user(edge: Edge) -> None:
    email = f"chunk-{uuid.uuid4().hex[:12]}@example.com"
    body = json.dumps({"name": "Chunk", "email": email, "password": "password-1"}).encode()
    before = edge.user_count()
    since = len(edge.server.lines)
    head = request(
        "POST",
        "/users",
        edge.auth() | {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    with Connection(edge.base) as conn:
        conn.send(head + b"%x\r\n%s\r\n" % (len(body), body))
        time.sleep(0.3)  # the first chunk has arrived, on its own, before the bad one
        conn.send(b"zz\r\n")
        answers = conn.answers()
    assert [a.status for a in answers] == [400]
    assert_error(answers[0], 400)
    assert edge.user_count() == before, "the user was created"
    assert_quiet(edge.log_since(since, expect="Invalid HTTP request"))


def test_an_unimplemented_coding_on_a_get_runs_no_handler_and_logs_no_traceback(
    edge: Edge,
) -> None:
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(request("GET", "/healthz", {"Transfer-Encoding": "xchunked"}))
        answers = conn.answers()
    assert [a.status for a in answers] == [400]
    lines = edge.log_since(since, expect="refused")
    assert not any("GET /healthz" in line for line in lines), lines
    assert not any("write_eof" in line or "RuntimeError" in line for line in lines), lines
    assert_quiet(lines)


def test_transfer_encoding_in_http_1_0_is_refused(edge: Edge) -> None:
    user_id = edge.new_user()
    raw = delete(user_id, edge, "\r\nTransfer-Encoding: chunked", b"0\r\n\r\n")
    with Connection(edge.base) as conn:
        conn.send(raw.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        answers = conn.answers()
    assert [a.status for a in answers] == [400]
    assert_error(answers[0], 400, "HTTP/1.0")
    assert edge.user_status(user_id) == 200


def test_chunked_requests_are_served_once_their_last_chunk_arrives(edge: Edge) -> None:
    email = f"chunked-{uuid.uuid4().hex[:12]}@example.com"
    body = json.dumps({"name": "Chunked", "email": email, "password": "password-1"}).encode()
    half = len(body) // 2
    user_id = edge.new_user()
    with Connection(edge.base) as conn:
        # A body in two chunks, in two reads, with a trailer field: a 201.
        conn.send(
            request(
                "POST",
                "/users",
                edge.auth() | {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )
            + b"%x\r\n%s\r\n" % (half, body[:half])
        )
        time.sleep(0.3)
        conn.send(b"%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (len(body) - half, body[half:]))
        created = conn.answer()
        assert created.status == 201, created.body
        assert created.json()["email"] == email
        # A chunked DELETE with an empty body, on the same connection: carried out.
        conn.send(delete(user_id, edge, "\r\nTransfer-Encoding: chunked", b"0\r\n\r\n"))
        assert conn.answer().status == 204
    assert edge.user_status(user_id) == 404


def test_a_chunked_body_past_the_limit_is_a_413_before_the_app_runs(edge: Edge) -> None:
    before = edge.user_count()
    since = len(edge.server.lines)
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    with Connection(edge.base) as conn:
        conn.send(
            request(
                "POST",
                "/users",
                edge.auth() | {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )
            + chunk * 17  # 1 MiB and 64 KiB, never ended
        )
        answers = conn.answers()
    assert [a.status for a in answers] == [413]
    assert_error(answers[0], 413, "1048576 bytes")
    assert edge.user_count() == before
    lines = edge.log_since(since, expect="413")
    assert not any("POST /users" in line for line in lines), lines
    assert_quiet(lines)


# 2. Pipelined requests are answered in order; an error that ends the connection comes last.


def test_pipelined_answers_come_in_order_the_oversized_request_gets_its_431(edge: Edge) -> None:
    with Connection(edge.base) as conn:
        conn.send(
            request("GET", "/healthz")
            + request("GET", "/healthz", {"X-Big": "a" * 20_000})
            + request("GET", "/nope")
            + request("GET", "/.well-known/jwks.json")
        )
        answers = conn.answers()
    assert [a.line for a in answers] == ["200 OK", "431 Request Header Fields Too Large"]
    assert answers[0].json() == {"status": "ok"}
    assert_error(answers[1], 431, "16384 bytes")
    assert answers[1].headers["connection"] == "close"


def test_answers_already_due_are_sent_before_the_400_that_ends_the_connection(
    edge: Edge,
) -> None:
    deleted, kept = edge.new_user(), edge.new_user()
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(
            request("GET", "/healthz")
            + delete(deleted, edge)
            + request("GET", "/nope")
            + b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-A: b\rX-C: d\r\n\r\n"  # a bare CR
            + delete(kept, edge)  # after the malformed one: never read
        )
        answers = conn.answers()
    assert [a.status for a in answers] == [200, 204, 404, 400]
    assert answers[0].json() == {"status": "ok"}
    assert_error(answers[2], 404)
    assert_error(answers[3], 400, "not valid HTTP/1.1")
    assert answers[3].headers["connection"] == "close"
    assert edge.user_status(deleted) == 404
    assert edge.user_status(kept) == 200
    assert_quiet(edge.log_since(since, expect="Invalid HTTP request"))


def test_a_slow_answer_still_comes_before_the_error_after_it(edge: Edge) -> None:
    email = f"slow-{uuid.uuid4().hex[:12]}@example.com"
    body = json.dumps({"name": "Slow", "email": email, "password": "password-1"}).encode()
    with Connection(edge.base) as conn:
        conn.send(
            # argon2id: the slowest answer of the API, tens of milliseconds
            request("POST", "/users", edge.auth() | {"Content-Type": "application/json"}, body)
            + b"GET /healthz HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n"
        )
        answers = conn.answers()
    assert [a.status for a in answers] == [201, 400]
    assert answers[0].json()["email"] == email


# 3. A WebSocket upgrade is a 4xx in the error shape.

WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def refused_upgrades(edge: Edge) -> float:
    """The count of 400s of GET requests in /metrics, whatever their path label."""
    text = httpx.get(f"{edge.base}/metrics", timeout=10).text
    pattern = r'storefront_requests_total\{method="GET",path="[^"]*",status="400"\} (\S+)'
    return sum(float(value) for value in re.findall(pattern, text))


@pytest.mark.parametrize("path", ["/healthz", "/users", "/nope", "/"])
def test_a_websocket_upgrade_is_refused_in_the_error_shape_and_counted(
    edge: Edge, path: str
) -> None:
    before = refused_upgrades(edge)
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(request("GET", path, WEBSOCKET))
        answers = conn.answers()
    assert [a.status for a in answers] == [400]
    assert_error(answers[0], 400, "WebSocket")
    assert answers[0].headers["connection"] == "close"
    assert "x-request-id" in answers[0].headers
    assert_quiet(edge.log_since(since, expect=" 400 "))
    assert refused_upgrades(edge) == before + 1


def test_another_upgrade_is_ignored_and_the_request_served(edge: Edge) -> None:
    # RFC 9110 §7.8: a server may ignore Upgrade (curl --http2 sends h2c on http://).
    with Connection(edge.base) as conn:
        conn.send(
            request(
                "GET",
                "/healthz",
                {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": ""},
            )
        )
        answers = conn.answers()
    assert [a.status for a in answers] == [200]
    assert answers[0].json() == {"status": "ok"}


# 4. Bounded waits, a bounded number of connections, normal clients served meanwhile.


def test_connections_that_send_nothing_are_closed_after_the_first_byte_timeout(
    edge: Edge,
) -> None:
    connections = [Connection(edge.base) for _ in range(100)]
    started = time.monotonic()
    try:
        assert all(c.closed_within(FIRST_BYTE_TIMEOUT + SLACK) for c in connections)
        assert time.monotonic() - started >= FIRST_BYTE_TIMEOUT - 0.2
        assert all(c.buffer == b"" for c in connections), "nothing is said to a silent client"
    finally:
        for c in connections:
            c.close()


def test_empty_lines_do_not_keep_a_connection_open(edge: Edge) -> None:
    with Connection(edge.base) as conn:
        started = time.monotonic()
        while time.monotonic() - started < FIRST_BYTE_TIMEOUT + SLACK:
            conn.send(b"\r\n")
            if conn.closed_within(0.3):
                break
        else:
            pytest.fail("still open")


def test_a_trickling_head_is_refused_with_408(edge: Edge) -> None:
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        started = time.monotonic()
        while time.monotonic() - started < HEAD_TIMEOUT + SLACK:
            conn.send(b"a")  # a byte every 0.2 s: never idle, never done
            if conn.closed_within(0.2):
                break
        elapsed = time.monotonic() - started
        answers = conn.answers()
    assert HEAD_TIMEOUT - 0.2 <= elapsed <= HEAD_TIMEOUT + SLACK
    assert [a.status for a in answers] == [408]
    assert_error(answers[0], 408, f"{HEAD_TIMEOUT:g} seconds")
    assert answers[0].headers["connection"] == "close"
    lines = edge.log_since(since, expect="408")
    assert sum(" WARNING " in line for line in lines) == 1, lines
    assert_quiet(lines)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_that_stops_arriving_is_refused_with_408_and_creates_nothing(
    edge: Edge, framing: str
) -> None:
    email = f"idle-{uuid.uuid4().hex[:8]}@example.com"
    body = json.dumps({"name": "Idle", "email": email, "password": "pw-12345"}).encode()
    headers = edge.auth() | {"Content-Type": "application/json"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        start_of_body = b"%x\r\n%s" % (len(body), body[:10])
    else:
        headers["Content-Length"] = str(len(body))
        start_of_body = body[:10]
    before = edge.user_count()
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(request("POST", "/users", headers) + start_of_body)
        started = time.monotonic()
        assert conn.closed_within(BODY_IDLE_TIMEOUT + SLACK)
        elapsed = time.monotonic() - started
        answers = conn.answers()
    assert elapsed >= BODY_IDLE_TIMEOUT - 0.2
    assert [a.status for a in answers] == [408]
    assert_error(answers[0], 408, "body")
    assert edge.user_count() == before
    lines = edge.log_since(since, expect="408")
    assert_quiet(lines)
    if framing == "content-length":  # the app was reading it: it logs what the client got
        assert any("POST /users 408" in line for line in lines), lines
    else:  # held until its last chunk: the app never saw it
        assert not any("POST /users" in line for line in lines), lines


def test_an_idle_keep_alive_connection_is_closed(edge: Edge) -> None:
    with Connection(edge.base) as conn:
        conn.send(request("GET", "/healthz"))
        assert conn.answer().status == 200
        started = time.monotonic()
        assert conn.closed_within(KEEP_ALIVE_TIMEOUT + SLACK)
        assert time.monotonic() - started >= KEEP_ALIVE_TIMEOUT - 0.2


def test_normal_clients_are_served_in_milliseconds_while_slow_ones_wait(edge: Edge) -> None:
    user_id = edge.new_user()
    slow = [Connection(edge.base) for _ in range(200)]
    try:
        for n, conn in enumerate(slow):
            if n % 2:  # half a head, never finished; the other half: not a byte
                conn.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: a")
        slow_since = time.monotonic()
        times = []
        for n in range(40):
            raw = (
                request("GET", "/healthz")
                if n % 2
                else request("GET", f"/users/{user_id}", edge.auth())
            )
            started = time.monotonic()
            with Connection(edge.base) as conn:
                conn.send(raw)
                assert conn.answer().status == 200
            times.append(time.monotonic() - started)
        served_within = time.monotonic() - slow_since
        # Every normal request was served while every slow connection was still open...
        assert served_within < min(HEAD_TIMEOUT, FIRST_BYTE_TIMEOUT), served_within
        assert statistics.median(times) < 0.05, times
        # ...and then each slow one was ended: a 408 for half a head, a close for silence.
        assert all(c.closed_within(max(HEAD_TIMEOUT, FIRST_BYTE_TIMEOUT) + SLACK) for c in slow)
        statuses = [c.answers()[0].status if c.buffer else None for c in slow]
        assert statuses == [408 if n % 2 else None for n in range(len(slow))]
    finally:
        for conn in slow:
            conn.close()


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    yield from start(
        tmp_path_factory,
        "capped",
        max_connections="20",
        first_byte_timeout="60",
        keep_alive_timeout="60",
    )


def test_connections_past_the_cap_are_refused_with_a_503_and_served_once_one_closes(
    capped: Edge,
) -> None:
    held = [Connection(capped.base) for _ in range(20)]
    try:
        for conn in held:  # each accepted and served, then kept open
            conn.send(request("GET", "/healthz"))
            assert conn.answer().status == 200
        with Connection(capped.base) as extra:
            extra.send(request("GET", "/healthz"))
            answers = extra.answers()
        assert [a.status for a in answers] == [503]
        assert_error(answers[0], 503, "20 connections")
        assert answers[0].headers["connection"] == "close"
        assert answers[0].headers["retry-after"] == "1"
        held.pop().close()
        time.sleep(0.3)  # the server sees the close
        with Connection(capped.base) as conn:
            conn.send(request("GET", "/healthz"))
            assert conn.answer().status == 200
    finally:
        for conn in held:
            conn.close()


# 5. Exactly one Host; one credential field.


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: exa mple\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        # HTTP/1.0 needs none; an empty one is allowed (RFC 9112 §3.2).
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
        (b"GET /healthz HTTP/1.1\r\nHost:\r\n\r\n", 200),
        (b"GET /healthz HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", 200),
    ],
)
def test_http_1_1_needs_exactly_one_host(edge: Edge, head: bytes, status: int) -> None:
    with Connection(edge.base) as conn:
        conn.send(head)
        answer = conn.answer()
    if status == 200:
        assert answer.status == 200
        assert answer.json() == {"status": "ok"}
    else:
        assert_error(answer, 400, "Host")


def test_two_credential_fields_are_refused_like_two_credentials(edge: Edge) -> None:
    key = storefront_json(
        edge.server.env, "keys", "create", "--client-id", edge.client_id, cwd=edge.directory
    )["api_key"]
    token = f"Bearer {edge.bearer}"
    cases = {
        "two Authorization": [("Authorization", token), ("Authorization", token)],
        "two X-API-Key": [("X-API-Key", key), ("X-API-Key", key)],
        "a token then a key's Authorization": [
            ("Authorization", token),
            ("Authorization", f"Bearer {key}"),
        ],
    }
    for name, fields in cases.items():
        head = "GET /users HTTP/1.1\r\nHost: test\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
        with Connection(edge.base) as conn:
            conn.send(head.encode() + b"\r\n")
            answer = conn.answer()
        assert_error(answer, 401, "one")
        assert answer.headers["www-authenticate"].startswith("Bearer"), name
    # Each alone is accepted: what is refused is the repetition.
    with Connection(edge.base) as conn:
        conn.send(request("GET", "/users", {"X-API-Key": key}))
        assert conn.answer().status == 200
        conn.send(request("GET", "/users", {"Authorization": token}))
        assert conn.answer().status == 200


def test_two_authorization_fields_at_the_token_endpoint_are_an_invalid_request(
    edge: Edge,
) -> None:
    form = b"grant_type=client_credentials"
    right, wrong = (
        "Basic " + base64.b64encode(f"{edge.client_id}:{secret}".encode()).decode()
        for secret in (edge.client_secret, "not-the-secret")
    )
    head = (
        "POST /auth/token HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Authorization: {right}\r\nAuthorization: {wrong}\r\nContent-Length: {len(form)}\r\n\r\n"
    )
    with Connection(edge.base) as conn:
        conn.send(head.encode() + form)
        answer = conn.answer()
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"
    assert "one Authorization" in answer.json()["message"]


# 11. Allow lists HEAD; an unknown method is a 501.


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/users", "GET, HEAD, POST"),
        ("OPTIONS", "/users/user_abcdefghijkl", "GET, HEAD, PUT, DELETE"),
        ("DELETE", "/products", "GET, HEAD, POST"),
        ("PATCH", "/users", "GET, HEAD, POST"),
        ("GET", "/auth/token", "POST"),
    ],
)
def test_a_405_lists_head_where_get_is_allowed(
    edge: Edge, method: str, path: str, allow: str
) -> None:
    with Connection(edge.base) as conn:
        conn.send(request(method, path, edge.auth()))
        answer = conn.answer()
        assert_error(answer, 405)
        assert answer.headers["allow"] == allow
        if "HEAD" in allow:
            conn.send(request("HEAD", path.replace("abcdefghijkl", "a" * 12), edge.auth()))
            assert conn.answer(head_only=True).status in (200, 404)


@pytest.mark.parametrize("method", ["FOO", "PROPFIND", "get", "SEARCH", "BREW"])
def test_an_unknown_method_is_501_in_the_error_shape(edge: Edge, method: str) -> None:
    since = len(edge.server.lines)
    with Connection(edge.base) as conn:
        conn.send(request(method, "/users", edge.auth()))
        answer = conn.answer()
    assert answer.line == "501 Not Implemented"
    assert_error(answer, 501, "method")
    assert_quiet(edge.log_since(since, expect="501"))
