"""The reading of conditional header fields (storefront/http/conditional.py); what a server
answers with them is in tests/test_http_semantics.py and tests/handlers/test_user_versions.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import InvalidInput
from storefront.http.conditional import FIELD, http_date, parse

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
NOV_6_1994 = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


def test_the_specs_patterns_are_the_parsers_grammar() -> None:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    parameters = spec["components"]["parameters"]
    jwks = spec["paths"]["/.well-known/jwks.json"]["get"]["parameters"]
    schemas = [
        parameters[name]["schema"] for name in ("IfMatch", "IfNoneMatch", "IfNoneMatchWrite")
    ]
    schemas += [p["schema"] for p in jwks if p["name"] == "If-None-Match"]
    assert len(schemas) == 4
    for schema in schemas:
        assert schema["pattern"] == f"^{FIELD.pattern}$"


@pytest.mark.parametrize(
    ("value", "strong", "weak"),
    [
        ('"3"', {"3"}, set()),
        ('W/"3"', set(), {"3"}),
        ('"1", W/"2" ,"3"', {"1", "3"}, {"2"}),
        (' , "1",, ', {"1"}, set()),  # empty list elements are allowed (RFC 9110 §5.6.1.2)
        ("", set(), set()),  # a list of no tags: matches nothing
        ('""', {""}, set()),
        ('"\xe9t\xe9"', {"\xe9t\xe9"}, set()),  # obs-text, as Latin-1 decoding gives it
    ],
)
def test_lists_of_entity_tags(value: str, strong: set[str], weak: set[str]) -> None:
    tags = parse("If-Match", value)
    assert (tags.any, set(tags.strong), set(tags.weak)) == (False, strong, weak)


def test_a_star_alone_is_any() -> None:
    assert parse("If-Match", " * ").any


@pytest.mark.parametrize(
    "value",
    ['w/"3"', 'W/ "3"', 'x"3"x', '"3""3"', '"3"x', "3", '*, "3"', '"a"b"', '"3', 'W/"3', "**"],
)
def test_anything_else_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^Invalid header parameter 'If-None-Match': must be"):
        parse("If-None-Match", value)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # rfc850-date
        "Sun Nov  6 08:49:37 1994",  # asctime-date
    ],
)
def test_the_three_forms_of_an_http_date(value: str) -> None:
    assert http_date(value) == NOV_6_1994


def test_a_two_digit_year_more_than_50_years_ahead_is_in_the_past() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert http_date("Saturday, 01-Jan-77 00:00:00 GMT", now=now) == datetime(
        1977, 1, 1, tzinfo=UTC
    )
    assert http_date("Wednesday, 01-Jan-76 00:00:00 GMT", now=now) == datetime(
        2076, 1, 1, tzinfo=UTC
    )
    assert http_date("Friday, 01-Jan-60 00:00:00 GMT", now=now) == datetime(2060, 1, 1, tzinfo=UTC)


def test_a_leap_second_is_the_start_of_the_next() -> None:
    assert http_date("Sat, 31 Dec 2016 23:59:60 GMT") == datetime(2017, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",  # GMT, exactly
        "sun, 06 Nov 1994 08:49:37 GMT",  # names are case-sensitive
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",  # a list of dates
        "784111777",
    ],
)
def test_what_is_not_an_http_date(value: str) -> None:
    assert http_date(value) is None
