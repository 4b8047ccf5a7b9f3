"""The names of uvicorn that storefront/server.py and storefront/eventloop.py rely on.

uvicorn is not pinned; these are not all documented API. When one of these tests fails after
an upgrade, it names what moved: re-read storefront/server.py's overrides against the new
HttpToolsProtocol before relaxing the test (tests/test_server_limits.py then shows whether the
limits still hold against a real server).
"""

from __future__ import annotations

import inspect

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from storefront import eventloop
from storefront.server import BoundedHttpToolsProtocol

#: Method -> the parameters (after self) storefront.server's override is written against.
OVERRIDDEN = {
    "__init__": ["config", "server_state", "app_state", "_loop"],
    "data_received": ["data"],
    "send_400_response": ["msg"],
    "on_message_begin": [],
    "on_headers_complete": [],
    "on_body": ["body"],
    "on_message_complete": [],
}
#: Attributes of the protocol the overrides read, each assigned by uvicorn's own code.
ATTRIBUTES = ["url", "headers", "transport", "cycle", "client", "loop", "server_state"]


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_each_overridden_method_is_still_there_with_its_parameters(name: str) -> None:
    assert name in vars(BoundedHttpToolsProtocol), f"storefront.server no longer overrides {name}"
    theirs = getattr(HttpToolsProtocol, name)
    parameters = list(inspect.signature(theirs).parameters)[1:]
    assert parameters == OVERRIDDEN[name], f"HttpToolsProtocol.{name}{inspect.signature(theirs)}"


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_each_attribute_read_is_still_assigned_by_uvicorn(attribute: str) -> None:
    assert f"self.{attribute} =" in inspect.getsource(HttpToolsProtocol), attribute


def test_the_cycle_and_server_state_still_carry_what_the_refusal_reads() -> None:
    cycle = inspect.getsource(RequestResponseCycle)
    assert "self.response_complete =" in cycle
    assert "self.keep_alive =" in cycle
    assert "default_headers" in inspect.getsource(ServerState)


def test_a_loop_named_by_import_string_is_the_function_that_makes_the_loop() -> None:
    """storefront serve passes loop="storefront.eventloop:new_event_loop"; uvicorn calls what
    it names, with no arguments, to make the loop (its own names take use_subprocess)."""
    config = Config(app=None, loop="storefront.eventloop:new_event_loop")
    assert config.get_loop_factory() is eventloop.new_event_loop
