"""What a product's fields must be, in one place: ``storefront products import`` and the HTTP
API (``POST``/``PUT /products``) both check rows with these functions, and openapi.yaml's
``ProductName``, ``ProductDescription``, ``ProductPrice`` and ``ProductCategory`` state the same
rules for the request validator, Swagger UI and schemathesis.

- ``name``: 1 to 200 characters, ``category``: 1 to 100, once surrounding whitespace is trimmed
  (ASCII whitespace only, ``core.validation.WHITESPACE``: JSON Schema's patterns and Python
  disagree about the rest); stored trimmed.
- ``description``: optional (empty), at most 5,000 characters, kept as given.
- ``price``: a number from 0 to 9,999,999,999.99 (the column is ``Numeric(12, 2)``) with at
  most two decimals.
- No text may hold NUL (PostgreSQL cannot store it) or a lone UTF-16 surrogate (not Unicode).

A problem is ``BadField``: an ``InvalidInput`` naming the field, which the importer prefixes
with the file and row, and the API answers as a 400.
"""

from __future__ import annotations

import re
from decimal import Decimal

from core.errors import InvalidInput
from core.validation import WHITESPACE, json_decimal

NAME_MAX, DESCRIPTION_MAX, CATEGORY_MAX = 200, 5000, 100
MAX_PRICE = Decimal("9999999999.99")  # Numeric(12, 2)
CENT = Decimal("0.01")
PRICE_RULE = "must be a number >= 0 with at most two decimals"
#: Text no database column may hold: PostgreSQL refuses NUL in text, and neither engine can
#: store a lone UTF-16 surrogate (JSON's "\ud800"), which is not Unicode text.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class BadField(InvalidInput):
    """``field`` is not a valid product field: ``problem`` says why ("must be …")."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"'{field}' {problem}.")
        self.field = field
        self.problem = problem


def storable(value: str, field: str) -> None:
    found = _UNSTORABLE.search(value)
    if found is None:
        return
    if found.group() == "\x00":
        raise BadField(field, "must not contain a NUL character (\\x00)")
    shown = found.group().encode("unicode_escape").decode("ascii")
    raise BadField(field, f"must be Unicode text, but holds a lone UTF-16 surrogate ({shown})")


def clean_text(value: str, field: str, limit: int) -> str:
    """``name`` or ``category``: trimmed, 1 to ``limit`` characters."""
    storable(value, field)
    text = value.strip(WHITESPACE)
    if not 1 <= len(text) <= limit:
        raise BadField(field, f"must be 1 to {limit} characters (spaces trimmed), got {len(text)}")
    return text


def clean_name(value: str) -> str:
    return clean_text(value, "name", NAME_MAX)


def clean_category(value: str) -> str:
    return clean_text(value, "category", CATEGORY_MAX)


def clean_description(value: str | None) -> str:
    if value is None:
        return ""
    storable(value, "description")
    if len(value) > DESCRIPTION_MAX:
        raise BadField(
            "description", f"must be at most {DESCRIPTION_MAX} characters, got {len(value)}"
        )
    return value


def clean_price(number: Decimal, shown: str) -> Decimal:
    """``number`` in cents (``Decimal("0.00")`` rather than ``-0.00``); ``shown`` is how the
    value reads in an error."""
    if not number.is_finite() or number < 0:
        raise BadField("price", f"{PRICE_RULE}, got {shown}")
    # Compared before quantize(), which fails on numbers too long for the Decimal context.
    if number > MAX_PRICE:
        raise BadField("price", f"must be at most {MAX_PRICE}, got {shown}")
    cents = number.quantize(CENT)
    if cents != number:
        raise BadField("price", f"{PRICE_RULE}, got {shown}")
    return cents if cents else Decimal("0.00")


def price_of_json(value: int | float) -> Decimal:
    """A JSON number as the request body parser made it (an int or a float) as a price
    (``core.validation.json_decimal``)."""
    return clean_price(json_decimal(value), repr(value))
