"""The names of uvicorn and httptools that storefront/server.py and storefront/eventloop.py
rely on.

uvicorn is not pinned; these are not all documented API. When one of these tests fails after
an upgrade, it names what moved: re-read storefront/server.py's overrides against the new
HttpToolsProtocol before relaxing the test (tests/test_server_limits.py and
tests/test_server_edge.py then show whether the bounds still hold against a real server).
"""

from __future__ import annotations

import hashlib
import inspect
import re

import httptools
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from storefront import eventloop
from storefront.server import BoundedHttpToolsProtocol

#: Method -> the parameters (after self) storefront.server's override is written against.
OVERRIDDEN = {
    "__init__": ["config", "server_state", "app_state", "_loop"],
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "on_message_begin": [],
    "on_headers_complete": [],
    "on_body": ["body"],
    "on_message_complete": [],
    "on_response_complete": [],
}
#: Methods of uvicorn's that storefront.server calls without overriding them.
CALLED = {"_unset_keepalive_if_required": []}
#: uvicorn's data_received, which storefront.server replaces (it does not call it): the
#: SHA-256 of its source. When it changes, read the new one and carry what it does over.
DATA_RECEIVED_SHA256 = "010a7ae59a5d3b1a5e7326ce246878568629d126a076d8af5ba10cab040fae43"
#: Attributes of the protocol the overrides read, each assigned by uvicorn's own code.
ATTRIBUTES = [
    "parser",
    "url",
    "headers",
    "scope",
    "expect_100_continue",
    "transport",
    "cycle",
    "pipeline",
    "connections",
    "client",
    "loop",
    "logger",
    "server_state",
]
#: Attributes of a request's cycle the overrides read or set.
CYCLE_ATTRIBUTES = [
    "scope",
    "body",
    "keep_alive",
    "response_started",
    "response_complete",
    "disconnected",
    "message_event",
]


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_each_overridden_method_is_still_there_with_its_parameters(name: str) -> None:
    assert name in vars(BoundedHttpToolsProtocol), f"storefront.server no longer overrides {name}"
    theirs = getattr(HttpToolsProtocol, name)
    parameters = list(inspect.signature(theirs).parameters)[1:]
    assert parameters == OVERRIDDEN[name], f"HttpToolsProtocol.{name}{inspect.signature(theirs)}"


@pytest.mark.parametrize("name", sorted(CALLED))
def test_each_method_called_is_still_there_with_its_parameters(name: str) -> None:
    theirs = getattr(HttpToolsProtocol, name)
    parameters = list(inspect.signature(theirs).parameters)[1:]
    assert parameters == CALLED[name], f"HttpToolsProtocol.{name}{inspect.signature(theirs)}"


def test_the_replaced_data_received_is_still_the_one_read() -> None:
    source = inspect.getsource(HttpToolsProtocol.data_received)
    assert hashlib.sha256(source.encode()).hexdigest() == DATA_RECEIVED_SHA256, source


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_each_attribute_read_is_still_assigned_by_uvicorn(attribute: str) -> None:
    assigned = re.compile(rf"self\.{attribute}(: [^=]+)? = ")
    assert assigned.search(inspect.getsource(HttpToolsProtocol)), attribute


@pytest.mark.parametrize("attribute", CYCLE_ATTRIBUTES)
def test_the_cycle_still_carries_what_the_overrides_read(attribute: str) -> None:
    assigned = re.compile(rf"self\.{attribute}(: [^=]+)? = ")
    assert assigned.search(inspect.getsource(RequestResponseCycle)), attribute


def test_the_server_state_still_carries_the_default_headers() -> None:
    assert "default_headers" in inspect.getsource(ServerState)


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
