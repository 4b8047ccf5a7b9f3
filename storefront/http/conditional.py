"""Conditional requests (RFC 9110 §13): a user's ``ETag``, and the preconditions
``If-Match``, ``If-None-Match`` and ``If-Unmodified-Since``.

A user's entity tag is its version (``users.version``, one more on every update) in quotes: a
strong validator, since one version has exactly one representation. Clients treat it as
opaque.

``If-Match`` and ``If-None-Match`` are read by RFC 9110's grammar and nothing looser: ``*``
alone, or a comma-separated list of entity tags (``"3"``, ``W/"3"``; empty list elements are
allowed, §5.6.1.2). Anything else (a lower-case ``w/``, a space after ``W/``, text around or
between the tags) is a 400 naming the header: a condition the server cannot read must neither
let a write through nor turn a read into a 304 nobody asked for. ``If-Unmodified-Since`` that
is not an HTTP-date is ignored, as §13.1.4 requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import InvalidInput, PreconditionFailed, PreconditionRequired
from persistence.rows import Precondition

#: RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; weak = %s"W/" (case-sensitive);
#: opaque-tag = DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text. Header values reach
#: us decoded as Latin-1, so obs-text (%x80-FF) is U+0080 to U+00FF.
_ETAGC = "[\\x21\\x23-\\x7e\\x80-\\xff]"
_ENTITY_TAG = f'(?:W/)?"{_ETAGC}*"'
#: ``If-Match = "*" / #entity-tag`` (the same for If-None-Match), with the optional
#: whitespace around the commas of a list (§5.6.1). openapi.yaml's IfMatch and IfNoneMatch
#: patterns are this expression.
FIELD = re.compile(
    f"[ \\t]*(?:\\*|(?:{_ENTITY_TAG})?(?:[ \\t]*,[ \\t]*(?:{_ENTITY_TAG})?)*)[ \\t]*"
)
_TAG = re.compile(f'(W/)?"({_ETAGC}*)"')
FIELD_RULE = (
    'must be * or a comma-separated list of entity tags, each in double quotes ("3"), '
    'a weak one prefixed by a capital W/ (W/"3")'
)


def etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class TagList:
    """A parsed ``If-Match`` / ``If-None-Match``: ``*``, or the tags listed (weak ones
    apart)."""

    any: bool
    strong: frozenset[str]
    weak: frozenset[str]


def parse(name: str, value: str) -> TagList:
    """The field ``name`` (``If-Match``, ``If-None-Match``); ``InvalidInput`` naming it when
    it does not follow the grammar."""
    if not FIELD.fullmatch(value):
        raise InvalidInput(f"Invalid header parameter '{name}': {FIELD_RULE}.")
    if value.strip(" \t") == "*":
        return TagList(any=True, strong=frozenset(), weak=frozenset())
    strong: set[str] = set()
    weak: set[str] = set()
    for match in _TAG.finditer(value):
        (weak if match.group(1) else strong).add(match.group(2))
    return TagList(any=False, strong=frozenset(strong), weak=frozenset(weak))


def _weak_match(tags: TagList, current: str) -> bool:
    """§13.1.2: If-None-Match compares weakly (``W/"3"`` matches ``"3"``); ``*`` matches any
    current representation."""
    return tags.any or current in tags.strong or current in tags.weak


def not_modified(if_none_match: str | None, version: int | str) -> bool:
    """Whether a GET with this ``If-None-Match`` gets 304: the current tag (a row's version,
    or any opaque tag) is listed, by weak comparison, or the header is ``*``."""
    if if_none_match is None:
        return False
    return _weak_match(parse("If-None-Match", if_none_match), str(version))


# The dates of If-Unmodified-Since (RFC 9110 §5.6.7). Names are case-sensitive (%s"…").
_MONTHS = {
    month: number
    for number, month in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = f"(?P<month>{'|'.join(_MONTHS)})"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
#: IMF-fixdate, the one to send: Sun, 06 Nov 1994 08:49:37 GMT
_IMF_FIXDATE = re.compile(f"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT")
#: rfc850-date, obsolete: Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(
    "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    f"(?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT"
)
#: asctime-date, obsolete: Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(f"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})")


def http_date(value: str, *, now: datetime | None = None) -> datetime | None:
    """An HTTP-date in any of its three formats (a recipient must accept all three); None
    when ``value`` is not one, a list of dates included."""
    for form in (_IMF_FIXDATE, _RFC850, _ASCTIME):
        found = form.fullmatch(value.strip(" \t"))
        if found is not None:
            break
    else:
        return None
    year = int(found["year"])
    if form is _RFC850:
        # Two digits: a year more than 50 years ahead is the latest past one ending so.
        this_year = (now or datetime.now(UTC)).year
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    second = int(found["second"])
    try:
        # 60 is a leap second, which datetime cannot hold: the next second's start instead.
        moment = datetime(
            year,
            _MONTHS[found["month"]],
            int(found["day"]),
            int(found["hour"]),
            int(found["minute"]),
            min(second, 59),
            tzinfo=UTC,
        )
    except ValueError:  # 31 Feb, hour 25, ...
        return None
    return moment + timedelta(seconds=1) if second == 60 else moment


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """The preconditions of a PUT or DELETE, checked by ``check`` on the row locked for the
    write, in RFC 9110 §13.2.2's order. An absent field is None."""

    if_match: TagList | None
    #: Only when If-Match is absent (§13.1.4: a recipient must ignore it otherwise).
    unmodified_since: datetime | None
    if_none_match: TagList | None
    #: What is written, in the messages: "user", "product".
    noun: str = "user"

    def check(self, version: int, last_modified: datetime | None) -> None:
        """Raise ``PreconditionFailed`` unless the write may go ahead over this version of the
        resource, last changed at ``last_modified`` (None: no time is kept, and
        If-Unmodified-Since does not apply, §13.1.4)."""
        current = str(version)
        noun = self.noun
        if self.if_match is not None:
            # §13.1.1: strong comparison; a weak tag never matches.
            if not (self.if_match.any or current in self.if_match.strong):
                raise PreconditionFailed(
                    f"The {noun} has changed since the version this request names: read it "
                    "again and retry with its current ETag in If-Match."
                )
        # An HTTP-date has whole seconds: a change within the named second is not after it,
        # so the Date of the response a client read, sent back, does not fail by itself.
        elif (
            self.unmodified_since is not None
            and last_modified is not None
            and last_modified.replace(microsecond=0) > self.unmodified_since
        ):
            raise PreconditionFailed(
                f"The {noun} has changed since the time If-Unmodified-Since names: read it "
                "again and retry with its current ETag in If-Match."
            )
        if self.if_none_match is not None and _weak_match(self.if_none_match, current):
            raise PreconditionFailed(
                f"The {noun} exists, and If-None-Match: * allows the write only where none does."
                if self.if_none_match.any
                else f"The {noun} is at a version If-None-Match names, and the write is allowed "
                "only if it is not."
            )


def write_condition(
    *,
    if_match: str | None,
    if_none_match: str | None,
    if_unmodified_since: str | None,
    required: bool,
    noun: str = "user",
) -> Precondition | None:
    """What a PUT or DELETE of a user (or of the ``noun`` written) requires of it (None:
    nothing), from its header fields. A malformed If-Match or If-None-Match is a 400; with
    ``required`` (STOREFRONT_REQUIRE_IF_MATCH), a write without If-Match is a 428.
    ``if_unmodified_since`` is None for a resource that keeps no modification time."""
    if if_match is None and required:
        raise PreconditionRequired(noun)
    matches = None if if_match is None else parse("If-Match", if_match)
    none_match = None if if_none_match is None else parse("If-None-Match", if_none_match)
    since = None
    if matches is None and if_unmodified_since is not None:
        since = http_date(if_unmodified_since)
    if matches is None and since is None and none_match is None:
        return None
    if matches is not None and matches.any and none_match is None:
        return None  # If-Match: * holds for any user that exists, and a missing one is a 404
    return WriteCondition(matches, since, none_match, noun).check
