"""What storefront serve relies on uvicorn to do, beyond the names it uses.

The names themselves (HttpToolsProtocol's methods that storefront/server.py overrides, with
their parameters, and the attributes it reads) are in storefront/internals.py, checked by
tests/test_internals_registry.py. tests/test_server_limits.py then shows whether the limits
still hold against a real server.
"""

from __future__ import annotations

from uvicorn.config import Config

from storefront import eventloop


def test_a_loop_named_by_import_string_is_the_function_that_makes_the_loop() -> None:
    """storefront serve passes loop="storefront.eventloop:new_event_loop"; uvicorn calls what
    it names, with no arguments, to make the loop (its own names take use_subprocess)."""
    config = Config(app=None, loop="storefront.eventloop:new_event_loop")
    assert config.get_loop_factory() is eventloop.new_event_loop
