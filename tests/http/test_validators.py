"""Request validation messages: they name the field and never echo what was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.formparsers import FormParser, MultiPartException
from starlette.testclient import TestClient

from storefront.http.validators import PARSED_BODY, UrlencodedFormParser, validator_map

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack

SECRET = "hunter2"  # 7 characters: one too few, so the request is rejected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "A", "email": "a@example.com", "password": SECRET},
            "'password' must be at least 8",
        ),
        (
            {"name": "A", "email": "a@example.com", "password": SECRET * 20},
            "'password' must be at most 128",
        ),
        (
            {"name": " \t", "email": "a@example.com", "password": "long-enough"},
            "'name' must be 1 to 100 characters",
        ),
        (
            {"name": "A", "email": "not-an-email", "password": "long-enough"},
            "'email' is not a valid",
        ),
        (
            {"name": 7, "email": "a@example.com", "password": "long-enough"},
            "'name' must be of type",
        ),
        ({"email": "a@example.com", "password": "long-enough"}, "'name' is a required property"),
        (
            {"name": "A", "email": "a@example.com", "password": "long-enough", "id": "x"},
            "'id' was unexpected",
        ),
        ([], "The request body must be of type object"),
    ],
)
def test_body_errors_name_the_field(
    api: TestClient,
    auth: Callable[..., dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    body: object,
    message: str,
) -> None:
    response = api.post("/users", headers=auth(), json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert message in response.json()["message"]
    assert SECRET not in response.text
    assert SECRET not in caplog.text


def test_parameter_errors_name_the_parameter(
    api: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    response = api.get("/users", params={"limit": "lots"}, headers=auth())
    assert response.status_code == 400
    assert "'limit'" in response.json()["message"]


def test_a_body_that_is_not_utf8_is_a_400(
    api: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    response = api.post("/users", headers=headers, content=b'{"name": "\xff"}')
    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": "The request body is not valid UTF-8.",
    }


@pytest.mark.parametrize("media_type", ["APPLICATION/JSON", "Application/Json; charset=UTF-8"])
def test_the_media_type_case_does_not_skip_validation(
    api: TestClient, auth: Callable[..., dict[str, str]], media_type: str
) -> None:
    # Connexion looks the schema up by the media type as sent: in another case the body went
    # unvalidated to the handler (a 500, or worse, a user with an invalid email). And the
    # compiled stack must not remember that miss for the lower-case type that follows.
    invalid = b'{"name": "A", "email": "bad", "password": "x"}'
    for content_type in (media_type, "application/json"):
        response = api.post(
            "/users", headers={**auth(), "Content-Type": content_type}, content=invalid
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "Bad Request"


@given(
    st.lists(
        st.tuples(
            st.text(alphabet="ab=&;%+2 \x00é", max_size=6),
            st.text(alphabet="ab=&;%+2F \x00é", max_size=8),
        ),
        max_size=6,
    ),
    st.sampled_from(["&", ";", "&&", "=&"]),
)
@hyp_settings(max_examples=300, deadline=None)
def test_the_form_parser_reads_a_body_as_starlettes_does(
    pairs: list[tuple[str, str]], joiner: str
) -> None:
    body = joiner.join(f"{name}={value}" for name, value in pairs).encode("utf-8")

    async def parse(parser_cls: Any) -> Any:
        async def stream() -> AsyncGenerator[bytes, None]:
            yield body[: len(body) // 2]
            yield body[len(body) // 2 :]

        try:
            return list(
                (
                    await parser_cls(Headers(), stream(), max_fields=5, max_part_size=12).parse()
                ).multi_items()
            )
        except MultiPartException as exc:
            return exc.message

    ours = asyncio.run(parse(UrlencodedFormParser))
    starlettes = asyncio.run(parse(FormParser))
    assert ours == starlettes


#: Form schemas: plain ones (all-string properties, which the form validator checks directly)
#: and ones that are not (a length, a pattern, an enum, a format, a non-string, nullable), which
#: go through Connexion's parse and jsonschema.
FORM_PROPERTIES = {
    "grant_type": {"type": "string", "description": "plain"},
    "client_id": {"type": "string"},
    "scope": {"type": "string", "example": "read write"},
    "short": {"type": "string", "maxLength": 3},
    "word": {"type": "string", "pattern": "^[a-z]+$"},
    "kind": {"type": "string", "enum": ["a", "b"]},
    "when": {"type": "string", "format": "date"},
    "count": {"type": "integer"},
    "maybe": {"type": "string", "nullable": True},
}
FORM_NAMES = [*FORM_PROPERTIES, "other", "a", ""]


@given(
    properties=st.lists(st.sampled_from(list(FORM_PROPERTIES)), unique=True, max_size=4),
    required=st.lists(st.sampled_from(FORM_NAMES), unique=True, max_size=2),
    encoding=st.sampled_from([None, {}, {"scope": {"style": "form", "explode": False}}]),
    fields=st.lists(
        st.tuples(
            st.sampled_from(FORM_NAMES), st.sampled_from(["", "x", "null", "7", "a,b", "é&="])
        ),
        max_size=6,
    ),
)
@hyp_settings(max_examples=600, deadline=None)
def test_a_plain_form_is_parsed_and_checked_as_connexion_does(
    properties: list[str],
    required: list[str],
    encoding: dict[str, Any] | None,
    fields: list[tuple[str, str]],
) -> None:
    """The form validator's direct parse and check of a plain form give what Connexion's
    parse (its URI parser's resolve_form) and jsonschema give: the same body, the same
    verdict, the same message."""
    from urllib.parse import urlencode

    from connexion.uri_parsing import OpenAPIURIParser
    from connexion.validators import FormDataValidator

    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: dict(FORM_PROPERTIES[name]) for name in properties},
        # As Connexion hands it over: with the spec's components, for $refs.
        "components": {"schemas": {"Other": {"type": "integer"}}},
    }
    if required:
        schema["required"] = required
    definition: dict[str, Any] = {"schema": schema}
    if encoding is not None:
        definition["encoding"] = encoding
    body = urlencode(fields).encode()
    ours_cls = validator_map()["body"]["application/x-www-form-urlencoded"]

    class Connexions(ours_cls):  # type: ignore[misc, valid-type]
        """Connexion's own parse and check, with our parser: the path before."""

        async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Any) -> Any:
            body = await FormDataValidator._parse(self, stream, scope)
            scope[PARSED_BODY] = body
            return body

        _validate = FormDataValidator._validate
        wrap_receive = FormDataValidator.wrap_receive

    async def run(cls: Any) -> Any:
        validator = cls(
            schema=schema,
            required=True,
            nullable=False,
            encoding="utf-8",
            strict_validation=False,
            uri_parser=OpenAPIURIParser([], definition),
        )
        scope: dict[str, Any] = {
            "type": "http",
            "headers": [(b"content-length", str(len(body)).encode())],
        }

        # The body in two messages, then a disconnect for any read past it.
        messages = iter(
            [
                {"type": "http.request", "body": body[:3], "more_body": True},
                {"type": "http.request", "body": body[3:], "more_body": False},
            ]
        )

        async def receive() -> dict[str, Any]:
            return next(messages, {"type": "http.disconnect"})

        try:
            replay, _ = await validator.wrap_receive(receive, scope=scope)
        except Exception as exc:
            return type(exc).__name__, getattr(exc, "detail", str(exc))
        replayed = [await replay() for _ in range(3)]  # what the app then reads
        return scope.get(PARSED_BODY, "no parsed body"), replayed

    assert asyncio.run(run(ours_cls)) == asyncio.run(run(Connexions))


def _spec_operations() -> list[tuple[str, list[dict[str, Any]]]]:
    """(method and path, its parameters resolved) for every operation of openapi.yaml."""
    from connexion.json_schema import resolve_refs

    from storefront.app import load_spec

    spec = resolve_refs(load_spec())
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            params = {(p["name"], p["in"]): p for p in item.get("parameters", [])}
            params.update({(p["name"], p["in"]): p for p in operation.get("parameters", [])})
            found.append((f"{method.upper()} {path}", list(params.values())))
    return found


SPEC_OPERATIONS = _spec_operations()
QUERY_NAMES = ["limit", "offset", "after", "before", "search", "category", "other", "lim%69t"]
QUERY_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "20",
            "100",
            "101",
            "-1",
            "+5",
            " 7",
            "1_0",
            "\u0661\u0662",
            "1e3",
            "abc",
            "1000000000",
            "1000000001",
            "17.user_1",
            "-17.a",
            "x" * 64,
            "x" * 65,
            "%00",
            "walnut",
            "a%20b",
            "%C3%A9",
        ]
    ),
    st.text(alphabet="0123456789.-_abAZ %+", max_size=8),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.integers(min_value=95, max_value=105).map(lambda n: "x" * n),
)


@given(
    operation=st.sampled_from(SPEC_OPERATIONS),
    query=st.lists(st.tuples(st.sampled_from(QUERY_NAMES), QUERY_VALUES), max_size=5),
    path_value=st.one_of(st.sampled_from(["user_1", "", "a b"]), st.text(max_size=5)),
    header=st.one_of(st.none(), st.sampled_from(['"1"', "*", "", '"x"', "w/1"])),
)
@hyp_settings(max_examples=1500, deadline=None)
def test_direct_parameter_checks_pass_exactly_what_connexion_passes(
    operation: tuple[str, list[dict[str, Any]]],
    query: list[tuple[str, str]],
    path_value: str,
    header: str | None,
) -> None:
    """``NamingParameterValidator.checked`` (the compiled pipeline's direct checks) accepts a
    request exactly when Connexion's validation (its URI parser, then jsonschema) does, and
    hands the handler the values Connexion's request would."""
    from connexion.exceptions import BadRequestProblem, ExtraParameterProblem
    from connexion.lifecycle import ConnexionRequest
    from connexion.uri_parsing import OpenAPIURIParser

    from storefront.http.validators import NamingParameterValidator

    _, params = operation
    uri_parser = OpenAPIURIParser(params, {})
    validator = NamingParameterValidator(params, uri_parser=uri_parser, strict_validation=True)
    headers = [(b"host", b"test")]
    if header is not None:
        for p in params:
            if p["in"] == "header":
                headers.append((p["name"].lower().encode(), header.encode()))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": "&".join(f"{k}={v}" for k, v in query).encode(),
        "headers": headers,
        "path_params": {p["name"]: path_value for p in params if p["in"] == "path"},
    }
    checked = validator.checked(scope)
    request = ConnexionRequest(scope, uri_parser=uri_parser)
    try:
        validator.validate_request(request)
    except (BadRequestProblem, ExtraParameterProblem):
        assert checked is None
        return
    assert checked is not None  # every parameter of the spec is within the direct checks
    path_values, query_values = checked
    assert path_values == {
        p["name"]: request.path_params[p["name"]] for p in params if p["in"] == "path"
    }
    assert query_values == {
        p["name"]: request.query_params[p["name"]]
        for p in params
        if p["in"] == "query" and p["name"] in request.query_params
    }


def test_the_token_form_takes_the_direct_path() -> None:
    """The token endpoint's form is plain as the app hands it over (with the components
    Connexion adds): a change to the spec that sends it back through Connexion's parse and
    jsonschema shows here, not only as a slower token endpoint."""
    from connexion.json_schema import resolve_refs
    from connexion.uri_parsing import OpenAPIURIParser

    from storefront.app import load_spec

    spec = resolve_refs(load_spec())
    content = spec["paths"]["/auth/token"]["post"]["requestBody"]["content"]
    definition = content["application/x-www-form-urlencoded"]
    validator = validator_map()["body"]["application/x-www-form-urlencoded"](
        schema={**definition["schema"], "components": spec["components"]},
        required=True,
        nullable=False,
        encoding="utf-8",
        strict_validation=False,
        uri_parser=OpenAPIURIParser([], definition),
    )
    assert validator._plain_required == {"grant_type"}
