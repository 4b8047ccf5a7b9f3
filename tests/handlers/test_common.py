"""handlers._common: the Link targets, built from one parse of the query, are Starlette's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from handlers._common import Target, _StarletteTarget

#: What a query is made of: the paging names, percent-escapes (of them too), separators,
#: blanks, non-ASCII bytes, '#', and any other byte.
QUERY_PIECES = st.one_of(
    st.sampled_from(
        [
            b"limit",
            b"offset",
            b"after",
            b"before",
            b"search",
            b"%61fter",
            b"lim%69t",
            b"=",
            b"&",
            b"&&",
            b"+",
            b"%20",
            b"%2B",
            b"%26",
            b"%3D",
            b"%C3%A9",
            b"%FF",
            b"%",
            b"%G1",
            b";",
            b"?",
            b"/",
            b"#",
            b"\xc3\xa9",
            b"20",
            b"1712000000000000.user_1",
        ]
    ),
    st.binary(min_size=1, max_size=3),
)
QUERIES = st.lists(QUERY_PIECES, max_size=12).map(b"".join)
PATHS = st.one_of(
    st.sampled_from(["/users", "/products", "/", "/api/v1/users"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=8).map(
        lambda text: "/" + text
    ),
    st.text(max_size=6).map(lambda text: "/users" + text),
)
#: Every (removed, added) combination paging_headers asks for.
CHANGES: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("offset", "before"), {"limit": 20, "after": "1712000000000000.user_1"}),
    (("offset", "after"), {"limit": 5, "before": "-17.a_b-c"}),
    ((), {"limit": 100, "offset": 40}),
    ((), {"limit": 1, "offset": 0}),
]


def scope(path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"api.example.com:8080")],
        "server": ("127.0.0.1", 8080),
    }


@hyp_settings(max_examples=2000, deadline=None)
@given(path=PATHS, query=QUERIES)
def test_the_link_targets_are_what_starlettes_url_makes(path: str, query: bytes) -> None:
    request = scope(path, query)
    try:
        # Starlette's URL parses lazily: what it cannot take apart may fail at the first
        # change (a path that reads as "//[" once tabs are dropped: "Invalid IPv6 URL").
        slow = _StarletteTarget(request)
        expected = [slow.with_params(removed, **added) for removed, added in CHANGES]
    except (UnicodeDecodeError, ValueError):
        # Starlette cannot take it apart: the fast path must not take it either (it is left
        # to Starlette, which fails as it did). No list route's path is such a path.
        assert not Target.plain(path, query)
        return
    fast = Target.of(request)
    for name in ("after", "before", "limit", "offset"):
        assert fast.has(name) == slow.has(name)
    assert [fast.with_params(removed, **added) for removed, added in CHANGES] == expected


def test_a_path_starlette_cannot_take_apart_is_not_plain() -> None:
    """Found by the test above: a tab is dropped by urlsplit, and "//[" is then a netloc."""
    for path in ["/\t/[", "//[", "/\n/[x"]:
        assert not Target.plain(path, b"limit=1")
        with pytest.raises(ValueError, match="IPv6"):
            _StarletteTarget(scope(path, b"limit=1")).with_params(("offset",), limit=1)


def test_plain_requests_take_the_fast_path() -> None:
    assert isinstance(Target.of(scope("/users", b"limit=20&offset=0")), Target)
    assert isinstance(Target.of(scope("/products", b"search=walnut+oak&x=%C3%A9")), Target)
    assert isinstance(Target.of(scope("/users", b"")), Target)
    # What Starlette escapes or splits on, and non-ASCII: Starlette's own URL decides.
    assert isinstance(Target.of(scope("/users?", b"")), _StarletteTarget)
    assert isinstance(Target.of(scope("//users", b"")), _StarletteTarget)
    assert isinstance(Target.of(scope("/users", b"a=1#x")), _StarletteTarget)
    assert isinstance(Target.of(scope("/users", b"a=\xc3\xa9")), _StarletteTarget)


def test_the_targets_keep_other_parameters_in_order() -> None:
    here = Target.of(scope("/products", b"search=oak+desk&limit=5&offset=10&category=Home"))
    assert here.with_params(("offset", "before"), limit=5, after="c1") == (
        "/products?search=oak+desk&category=Home&limit=5&after=c1"
    )
    assert here.with_params((), limit=5, offset=5) == (
        "/products?search=oak+desk&category=Home&limit=5&offset=5"
    )
