"""Conditional requests on a user (RFC 9110 §13): its ``ETag``, ``If-None-Match`` and
``If-Match``.

A user's entity tag is its version (``users.version``, one more on every update) in quotes: a
strong validator, since one version has exactly one representation. Clients treat it as
opaque.

Header values are read leniently: every quoted tag in the list counts, anything else in it is
ignored. A value with no tag that can be read matches nothing, which for ``If-Match`` means
412: a write never goes ahead under a condition the server could not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import PreconditionRequired

#: RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE.
_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class TagList:
    """A parsed ``If-Match`` / ``If-None-Match``: ``*``, or the tags listed (weak ones
    apart)."""

    any: bool
    strong: frozenset[str]
    weak: frozenset[str]


def parse(value: str) -> TagList:
    if value.strip() == "*":
        return TagList(any=True, strong=frozenset(), weak=frozenset())
    strong: set[str] = set()
    weak: set[str] = set()
    for match in _TAG.finditer(value):
        (weak if match.group(1) else strong).add(match.group(2))
    return TagList(any=False, strong=frozenset(strong), weak=frozenset(weak))


def not_modified(if_none_match: str | None, version: int | str) -> bool:
    """Whether a GET with this ``If-None-Match`` gets 304: the current tag (a row's version,
    or any opaque tag) is listed, by weak comparison (a weak ``W/"3"`` matches ``"3"``), or
    the header is ``*``."""
    if if_none_match is None:
        return False
    tags = parse(if_none_match)
    current = str(version)
    return tags.any or current in tags.strong or current in tags.weak


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """What a write's ``If-Match`` allows: ``versions`` None means any version (no header,
    or ``*``); otherwise the write goes ahead only over one of these."""

    versions: frozenset[int] | None


def write_condition(if_match: str | None, *, required: bool) -> WriteCondition:
    """The versions a PUT or DELETE may overwrite. Strong comparison (§13.1.1): a weak tag
    never matches. With ``required`` (STOREFRONT_REQUIRE_IF_MATCH), no header is a 428."""
    if if_match is None:
        if required:
            raise PreconditionRequired()
        return WriteCondition(None)
    tags = parse(if_match)
    if tags.any:
        return WriteCondition(None)
    return WriteCondition(frozenset(int(tag) for tag in tags.strong if _VERSION.fullmatch(tag)))
