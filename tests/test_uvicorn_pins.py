"""What storefront serve relies on uvicorn and httptools to do, beyond the names it uses.

The names themselves (HttpToolsProtocol's methods that storefront/server.py overrides, with
their parameters, the attributes it reads and sets, httptools' errors) are in
storefront/internals.py, checked by tests/test_internals_registry.py. Here: the source of the
``data_received`` that storefront/server.py replaces, and the behaviour of httptools and of
uvicorn's configuration it is written against. When one fails after an upgrade, re-read
storefront/server.py against the new code before relaxing it (tests/test_server_limits.py
and tests/test_server_edge.py then show whether the bounds still hold against a real server).
"""

from __future__ import annotations

import hashlib
import inspect

import httptools
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from storefront import eventloop

#: uvicorn's data_received, which storefront.server replaces (it does not call it): the
#: SHA-256 of its source. When it changes, read the new one and carry what it does over.
DATA_RECEIVED_SHA256 = "010a7ae59a5d3b1a5e7326ce246878568629d126a076d8af5ba10cab040fae43"


def test_the_replaced_data_received_is_still_the_one_read() -> None:
    source = inspect.getsource(HttpToolsProtocol.data_received)
    assert hashlib.sha256(source.encode()).hexdigest() == DATA_RECEIVED_SHA256, source


def test_without_a_websocket_protocol_an_upgrade_is_plain_http() -> None:
    """storefront serve passes ws="none": uvicorn then loads no WebSocket protocol, and its
    on_headers_complete hands an upgrade request to the app like any other."""
    config = Config(app=None, ws="none")
    config.load()
    assert config.ws_protocol_class is None


class Recorder:
    """httptools' callbacks, recorded."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.events: list[object] = []
        self.stop_at = stop_at

    def _record(self, event: object) -> None:
        self.events.append(event)
        if event == self.stop_at:
            raise KeyError(event)

    def on_message_begin(self) -> None:
        self._record("begin")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._record(name)

    def on_headers_complete(self) -> None:
        self._record("head")

    def on_body(self, body: bytes) -> None:
        self._record(body)

    def on_message_complete(self) -> None:
        self._record("end")


def feed(recorder: Recorder, data: bytes) -> type[Exception] | None:
    try:
        httptools.HttpRequestParser(recorder).feed_data(data)
    except httptools.HttpParserError as exc:
        return type(exc)
    return None


def test_httptools_calls_the_app_before_it_judges_a_transfer_coding() -> None:
    """Why storefront.server judges Transfer-Encoding itself, in on_headers_complete."""
    recorder = Recorder()
    raw = b"DELETE /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert feed(recorder, raw) is httptools.HttpParserError
    assert recorder.events[-1] == "head"


def test_a_callback_that_raises_stops_httptools_at_that_request() -> None:
    recorder = Recorder(stop_at="head")
    raw = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    assert feed(recorder, raw) is httptools.HttpParserCallbackError
    assert recorder.events == ["begin", b"Host", "head"]


def test_trailer_fields_come_through_on_header_after_the_head() -> None:
    """Why a held chunked request's head is set aside before its body is parsed."""
    recorder = Recorder()
    raw = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nz\r\n0\r\nX-T: 1\r\n\r\n"
    )
    assert feed(recorder, raw) is None
    assert recorder.events[recorder.events.index("head") :] == ["head", b"z", b"X-T", "end"]


def test_an_unknown_method_is_its_own_parser_error() -> None:
    assert feed(Recorder(), b"FOO /x HTTP/1.1\r\n\r\n") is httptools.HttpParserInvalidMethodError
    assert issubclass(httptools.HttpParserInvalidMethodError, httptools.HttpParserError)
    assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError)
    # Not a parser error: storefront.server catches it apart (an upgrade it does not take).
    assert not issubclass(httptools.HttpParserUpgrade, httptools.HttpParserError)


def test_the_parser_still_tells_the_http_version() -> None:
    parser = httptools.HttpRequestParser(Recorder())
    parser.feed_data(b"GET / HTTP/1.0\r\n\r\n")
    assert parser.get_http_version() == "1.0"


def test_an_upgrade_is_raised_once_its_request_is_complete() -> None:
    """Why data_received may still end the keep-alive of the upgrade request's own cycle:
    its head and end were parsed, and the app not yet run, when feed_data raises."""
    recorder = Recorder()
    raw = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0"
    with pytest.raises(httptools.HttpParserUpgrade):
        httptools.HttpRequestParser(recorder).feed_data(raw)
    assert recorder.events[-2:] == ["head", "end"]


def test_a_loop_named_by_import_string_is_the_function_that_makes_the_loop() -> None:
    """storefront serve passes loop="storefront.eventloop:new_event_loop"; uvicorn calls what
    it names, with no arguments, to make the loop (its own names take use_subprocess)."""
    config = Config(app=None, loop="storefront.eventloop:new_event_loop")
    assert config.get_loop_factory() is eventloop.new_event_loop
