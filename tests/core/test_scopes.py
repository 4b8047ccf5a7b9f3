"""The scope vocabulary and its one implication rule."""

from __future__ import annotations

import pytest

from core import scopes

RESOURCE_SCOPES = ["users:read", "users:write", "products:read", "products:write"]


def test_the_vocabulary() -> None:
    assert list(scopes.API_SCOPES) == ["read", "write", *RESOURCE_SCOPES]
    assert (*scopes.API_SCOPES, "introspect") == scopes.CLIENT_SCOPES
    assert all(description.endswith(".") for description in scopes.API_SCOPES.values())


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        # A scope satisfies itself.
        *[(s, s, True) for s in scopes.CLIENT_SCOPES],
        # The broad scopes satisfy their access on every resource.
        ("read", "users:read", True),
        ("read", "products:read", True),
        ("write", "users:write", True),
        ("write", "products:write", True),
        # Never across accesses: write does not read, as it never has.
        ("write", "read", False),
        ("write", "users:read", False),
        ("users:write", "users:read", False),
        ("read", "users:write", False),
        ("users:read", "users:write", False),
        # Never across resources, and never upwards.
        ("users:read", "products:read", False),
        ("products:write", "users:write", False),
        ("users:read", "read", False),
        ("products:write", "write", False),
        # introspect is its own; nothing else allows it, and it allows nothing else.
        ("read", "introspect", False),
        ("introspect", "read", False),
        # Unknown names satisfy nothing and are satisfied by nothing but themselves.
        ("read", "orders:read", False),
        ("admin", "users:read", False),
    ],
)
def test_satisfies(held: str, needed: str, allowed: bool) -> None:
    assert scopes.satisfies(held, needed) is allowed


def test_missing_names_what_nothing_held_satisfies() -> None:
    assert scopes.missing(["users:write"], ["products:read"]) == ["users:write"]
    assert scopes.missing(["users:write"], ["products:read", "write"]) == []
    assert scopes.missing(["users:read", "products:read"], ["users:read"]) == ["products:read"]
    assert scopes.missing([], []) == []


def test_broader() -> None:
    assert scopes.broader("users:write") == "write"
    assert scopes.broader("products:read") == "read"
    assert scopes.broader("read") is None
    assert scopes.broader("introspect") is None
    assert scopes.broader("orders:read") is None


def test_ordered_and_unknown() -> None:
    assert scopes.ordered(["write", "read"]) == ["read", "write"]
    assert scopes.ordered(["products:read", "introspect", "users:read", "read", "read"]) == [
        "read",
        "users:read",
        "products:read",
        "introspect",
    ]
    assert scopes.ordered(["b", "write", "a"]) == ["write", "b", "a"]
    assert scopes.unknown(["read", "admin", "users:admin", "admin"]) == ["admin", "users:admin"]
