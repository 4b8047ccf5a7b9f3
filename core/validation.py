"""Field rules the schema cannot express (trimming, real email syntax), shared by API and CLI."""

from __future__ import annotations

from decimal import Decimal

from core.errors import InvalidInput

NAME_MAX = 100
#: What "surrounding whitespace" means, here and in the spec's patterns: ASCII only, because
#: JSON Schema's (ECMA-262) \s and Python's disagree beyond it (U+001E, U+0085, ...).
WHITESPACE = " \t\n\r\f\v"
EMAIL_MAX = 254


def json_decimal(number: int | float) -> Decimal:
    """A JSON number, as the body parser made it (an int or a float), as the decimal its text
    spelled: a float by its shortest repr, so that ``19.99`` is 19.99 and
    ``19.990000000000002`` is not (``Decimal(19.99)`` is the binary float's 19.989999…)."""
    return Decimal(number) if isinstance(number, int) else Decimal(repr(number))


def clean_name(value: str, *, field: str = "name", max_length: int = NAME_MAX) -> str:
    name = value.strip(WHITESPACE)
    if not name:
        raise InvalidInput(f"'{field}' must not be blank.")
    if len(name) > max_length:
        raise InvalidInput(f"'{field}' must be at most {max_length} characters.")
    return name


def clean_email(value: str) -> str:
    """The address trimmed, with its domain in lower case (domains are case-insensitive; the
    local part, in principle, is not, so it keeps the case it was given).

    Syntax is checked against the spec's pattern (the HTML standard's definition) before the
    handler runs; this only normalises.
    """
    local, _, domain = value.strip(WHITESPACE).rpartition("@")
    email = f"{local}@{domain.lower()}"
    if len(email) > EMAIL_MAX:
        raise InvalidInput(f"'email' must be at most {EMAIL_MAX} characters.")
    return email
