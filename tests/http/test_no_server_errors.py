"""Property: whatever bytes, forms and headers arrive, no operation answers a 5xx.

Schemathesis (tests/test_schemathesis.py) generates from the spec, so its requests are
shaped by it; here Hypothesis sends what a careless or hostile client would: raw bytes under
any media type and charset, JSON nested deep or holding huge numbers and lone surrogates,
forms with many or long fields, odd header fields and credentials. Every error must be in
the error shape. On every platform (both engines, both stacks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from storefront.app import HTTP_METHODS, load_spec

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack

#: (method, path, the media type its body is declared in, if it takes one)
OPERATIONS = [
    (method.upper(), path, next(iter(op.get("requestBody", {}).get("content", {})), None))
    for path, item in load_spec()["paths"].items()
    for method, op in item.items()
    if method in HTTP_METHODS
]

#: Printable ASCII: what a header value may hold when it reaches the server in one piece.
VISIBLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_"), min_size=1, max_size=20)
#: Text with what breaks naive code: NUL, controls, surrogates, astral characters.
NASTY_TEXT = st.text(
    st.one_of(
        st.characters(codec=None, exclude_categories=()),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\U0001f600", "\n", "%", "&", "="]),
    ),
    max_size=40,
)


def nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


#: A user body that passes the schema but for what Hypothesis puts in one field: the input
#: that reaches the database and the password hash.
NEARLY_VALID_USER = st.builds(
    lambda field, value, mailbox: json.dumps(
        {"name": "Ada", "email": f"{mailbox}@example.com", "password": "long-enough"}
        | {field: value}
    ),
    st.sampled_from(["name", "email", "password"]),
    st.one_of(NASTY_TEXT.map(lambda t: t + "long-enough"), st.integers(), st.none()),
    TOKEN,
)
JSON_TEXT = st.one_of(
    NEARLY_VALID_USER,
    NEARLY_VALID_USER,
    NEARLY_VALID_USER,
    st.builds(nested, st.integers(0, 5_000), st.sampled_from(["", "1", '"x"', "{}"])),
    st.builds(lambda n, c: c * n, st.integers(1, 6_000), st.sampled_from(["1", "9"])),
    st.sampled_from(["NaN", "-Infinity", "1e99999", "-0", "{", '{"a":', "", "null", "[]"]),
    # Objects shaped like the users' bodies, with any text, surrogates escaped (ensure_ascii).
    st.dictionaries(
        st.sampled_from(["name", "email", "password", "id", "x", "\ud800"]),
        st.one_of(NASTY_TEXT, st.integers(), st.floats(), st.none(), st.booleans()),
        max_size=4,
    ).map(json.dumps),
)
FORM = st.one_of(
    st.lists(st.tuples(NASTY_TEXT, NASTY_TEXT), max_size=30).map(
        lambda pairs: urlencode(pairs, encoding="utf-8", errors="surrogatepass")
    ),
    st.builds(lambda n: "&".join(f"f{i}=v" for i in range(n)), st.integers(90, 1_200)),
    st.builds(lambda n: "client_secret=" + "s" * n, st.integers(8_000, 9_000)),
    st.text(VISIBLE, max_size=200),
)
BODY = st.one_of(
    JSON_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    FORM.map(str.encode),
    st.binary(max_size=300),
)
CONTENT_TYPE = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "application/json;charset=utf-16",
            "application/json;charset=no-such-charset",
            "APPLICATION/JSON;charset=UTF-8",
            "application/problem+json",
            "multipart/form-data; boundary=zzz",
            "text/plain",
            "",
        ]
    ),
    st.text(VISIBLE, max_size=40),
)
EXTRA_HEADERS = st.one_of(
    st.lists(st.tuples(TOKEN.map(lambda t: "x-" + t), st.text(VISIBLE, max_size=60)), max_size=8),
    st.builds(lambda n: [(f"x-many-{i}", "1") for i in range(n)], st.integers(90, 130)),
    st.builds(lambda n: [("x-big", "b" * n)], st.integers(15_000, 17_000)),
    st.sampled_from([[("content-length", "12x")], [("content-length", "9" * 30)]]),
)
PATH_ID = st.one_of(
    st.text(VISIBLE, max_size=30).map(lambda t: quote(t, safe="")),
    NASTY_TEXT.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")),
)


@pytest.fixture
def credentials(auth: Callable[..., dict[str, str]]) -> list[dict[str, str]]:
    return [
        auth("read write"),
        auth("read"),
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic !!!"},
        {"X-API-Key": "sk_\x7f"},
    ]


def often(common: Any, *others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` about three times in four, else one of ``others``: most requests get past
    authentication and content negotiation to where the body and the database are."""
    return st.one_of(st.just(common), st.just(common), st.just(common), *others)


@pytest.mark.parametrize(("method", "path", "media_type"), OPERATIONS)
@given(data=st.data())  # as many examples as the Hypothesis profile says (tests/conftest.py)
def test_no_request_gets_a_server_error(
    api: TestClient,
    credentials: list[dict[str, str]],
    method: str,
    path: str,
    media_type: str | None,
    data: st.DataObject,
) -> None:
    url = path.replace("{id}", data.draw(PATH_ID, label="id") or "x")
    query = data.draw(often([], st.lists(st.tuples(TOKEN, st.text(VISIBLE, max_size=20)))))
    credential = data.draw(often(credentials[0], st.sampled_from(credentials)), label="auth")
    headers: list[tuple[str, str]] = list(credential.items())
    body: bytes | None = None
    if media_type is not None or data.draw(st.booleans(), label="body on any method"):
        own = {"application/json": JSON_TEXT, "application/x-www-form-urlencoded": FORM}
        text = own.get(media_type or "", JSON_TEXT).map(
            lambda t: t.encode("utf-8", "surrogatepass")
        )
        body = data.draw(st.one_of(text, text, text, BODY), label="body")
        content_type = data.draw(often(media_type or "application/json", CONTENT_TYPE))
        headers.append(("content-type", content_type))
    headers += data.draw(often([], EXTRA_HEADERS), label="extra headers")
    response = api.request(method, url, params=query or None, content=body, headers=headers or None)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        problem: Any = response.json()
        assert response.headers["content-type"].startswith("application/json")
        assert isinstance(problem.get("error"), str), problem
        assert isinstance(problem.get("message"), str), problem
        assert {"error", "message"} <= set(problem) <= {"error", "message", "error_description"}
