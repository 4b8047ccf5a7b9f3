"""The spec itself: valid OpenAPI 3.0.3, and every error response in the contract's shape."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from core.scopes import API_SCOPES
from storefront.app import (
    HTTP_METHODS,
    handler_name,
    load_spec,
    oauth_scopes_by_operation,
    operations_with_budget,
    spec_path,
)

SPEC = load_spec()
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
}
ERROR_SCHEMAS = {"#/components/schemas/Error", "#/components/schemas/OAuthError"}


UNLIMITED_TAGS = {"health", "discovery"}


def _operations(*, probes: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation; without ``probes``, not the health probes nor the discovery documents
    (neither needs credentials, so neither is limited)."""
    return [
        (method.upper(), path, op)
        for path, item in SPEC["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS and (probes or not UNLIMITED_TAGS & set(op.get("tags", [])))
    ]


def _resolve(ref_or_obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in ref_or_obj:
        node: Any = SPEC
        for part in ref_or_obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        ref_or_obj = node
    return ref_or_obj


def test_spec_is_valid_openapi_3_0() -> None:
    spec, _ = read_from_filename(str(spec_path()))
    assert spec["openapi"] == "3.0.3"
    validate(spec)


def _errors(operation: dict[str, Any]) -> dict[str, Any]:
    """The error responses: 4xx, 5xx and ``default`` (any other status, errors only here)."""
    return {
        code: response
        for code, response in operation["responses"].items()
        if code == "default" or int(code) >= 400
    }


@pytest.mark.parametrize(("method", "path", "operation"), _operations(probes=False))
def test_limited_operations_declare_429_500_and_503(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """429 on its own row; 500 and 503 on theirs or under ``default``, which then carries the
    503's ``Retry-After``."""
    errors = _errors(operation)
    assert "429" in errors, f"{method} {path} must declare 429"
    assert "Retry-After" in _resolve(errors["429"])["headers"]
    if "default" in errors:
        assert "Retry-After" in _resolve(errors["default"])["headers"], f"{method} {path}"
    else:
        assert {"500", "503"} <= set(errors), f"{method} {path} must declare 500 and 503"
    assert_error_schemas(method, path, errors)


@pytest.mark.parametrize(("method", "path", "operation"), _operations())
def test_every_operation_declares_its_errors_with_the_error_schema(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    errors = _errors(operation)
    assert {"500", "default"} & set(errors), f"{method} {path}: a 500 is always possible"
    assert_error_schemas(method, path, errors)


@pytest.mark.parametrize(("method", "path", "operation"), _operations())
def test_a_status_under_default_is_named_in_its_description(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """``default`` stands for the statuses an operation lists no row for: it names each (431,
    500, 503), so that a reader of Swagger UI or ReDoc learns them there."""
    default = operation["responses"].get("default")
    if default is None:
        return
    described = _resolve(default)["description"]
    for status in ("431", "500", "503"):
        if status not in operation["responses"]:
            assert status in described, f"{method} {path}: {status}"


def assert_error_schemas(method: str, path: str, errors: dict[str, Any]) -> None:
    for code, response in errors.items():
        schema = _resolve(response)["content"]["application/json"]["schema"]
        assert schema["$ref"] in ERROR_SCHEMAS, f"{method} {path} {code}"


@pytest.mark.parametrize(("method", "path", "operation"), _operations(probes=False))
def test_success_responses_declare_the_rate_limit_headers(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """The server sends them on every response to an identified caller (the info section says
    so once, and the 429's description); the document lists them on the success responses,
    where a client reads them, not on every error, so that an operation in Swagger UI stays a
    readable length. A 429 lists `Retry-After`, what its client needs."""
    assert "Rate limits" in _resolve(operation["responses"]["429"])["description"]
    for code, response in operation["responses"].items():
        headers = _resolve(response).get("headers", {})
        if code.startswith(("2", "3")):
            assert set(headers) >= RATE_LIMIT_HEADERS, f"{method} {path} {code}"
        listed = RATE_LIMIT_HEADERS & set(headers)
        assert not any(_resolve(headers[h]).get("required") for h in listed)


@pytest.mark.parametrize(("method", "path", "operation"), _operations())
def test_every_operation_has_a_handler(method: str, path: str, operation: dict[str, Any]) -> None:
    module_name, _, function = handler_name(operation).rpartition(".")
    module = __import__(module_name, fromlist=[function])
    assert callable(getattr(module, function))


def test_oauth2_client_credentials_flow_is_declared_for_swagger_ui() -> None:
    flows = SPEC["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/auth/token"


def test_the_flows_scopes_are_the_vocabulary() -> None:
    """Swagger UI's Authorize dialog offers what core.scopes knows, described as it is there
    (which discovery's scopes_supported lists too)."""
    flows = SPEC["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["clientCredentials"]["scopes"] == API_SCOPES


def _requirements() -> list[tuple[str, str, dict[str, list[str]]]]:
    return [
        (method, path, requirement)
        for method, path, operation in _operations()
        for requirement in operation.get("security", SPEC["security"])
    ] + [("(every operation)", "", requirement) for requirement in SPEC["security"]]


@pytest.mark.parametrize(("method", "path", "requirement"), _requirements())
def test_every_requirement_names_known_scopes(
    method: str, path: str, requirement: dict[str, list[str]]
) -> None:
    for scheme, named in requirement.items():
        assert scheme in SPEC["components"]["securitySchemes"], f"{method} {path}"
        if scheme == "OAuth2":
            assert set(named) <= set(API_SCOPES), f"{method} {path}: {named}"
        else:
            assert named == [], f"{method} {path}: only OAuth2 names scopes"


def test_api_key_scopes_are_known_for_every_operation() -> None:
    scopes = oauth_scopes_by_operation(SPEC)
    for method, path, operation in _operations():
        assert handler_name(operation) in scopes, f"{method} {path}"
    assert scopes["handlers.users.list_users"] == ["users:read"]
    assert scopes["handlers.users.get_user"] == ["users:read"]
    assert scopes["handlers.users.create_user"] == ["users:write"]
    assert scopes["handlers.users.update_user"] == ["users:write"]
    assert scopes["handlers.users.delete_user"] == ["users:write"]
    assert scopes["handlers.products.list_products"] == ["products:read"]
    for operation in ("create_product", "update_product", "delete_product"):
        assert scopes[f"handlers.products.{operation}"] == ["products:write"]
    assert scopes["handlers.products.get_product"] == ["products:read"]
    assert scopes["handlers.auth.issue_token"] == []


def test_only_get_rate_limit_spends_the_reads_budget_and_any_scope_may_call_it() -> None:
    assert operations_with_budget(SPEC, "rate_limit_reads") == {
        "handlers.rate_limit.get_rate_limit"
    }
    assert oauth_scopes_by_operation(SPEC)["handlers.rate_limit.get_rate_limit"] == []


def _parameters() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"components {name}", p) for name, p in SPEC["components"]["parameters"].items()]
    for path, item in SPEC["paths"].items():
        found += [(path, _resolve(p)) for p in item.get("parameters", [])]
        for method, op in item.items():
            if method in HTTP_METHODS:
                found += [
                    (f"{method.upper()} {path}", _resolve(p)) for p in op.get("parameters", [])
                ]
    return found


#: The defaults Swagger UI fills in may only be what the server does without them anyway.
DEFAULTS = {"limit": 20, "offset": 0}


@pytest.mark.parametrize(("where", "parameter"), _parameters())
def test_no_parameter_carries_a_value_swagger_ui_would_send(
    where: str, parameter: dict[str, Any]
) -> None:
    # "Try it out" fills a parameter's example in and sends it: example cursors once turned
    # every list into `200 []`. Formats are described in words instead.
    schema = parameter.get("schema", {})
    for key in ("example", "examples"):
        assert key not in parameter, f"{where}: parameter {parameter['name']} has an {key}"
        assert key not in schema, f"{where}: parameter {parameter['name']} has a schema {key}"
    if "default" in schema:
        assert DEFAULTS.get(parameter["name"]) == schema["default"], where


def test_the_servers_entry_names_the_server() -> None:
    # Swagger UI's Servers dropdown shows "url - description"; a bare "/" tells nobody anything.
    assert [s["url"] for s in SPEC["servers"]] == ["/"]
    assert SPEC["servers"][0]["description"].startswith("This Storefront API server")


def test_connexion_still_refuses_a_broken_document_each_time_it_is_built() -> None:
    """The run validates each document once (tests/spec_validation.py): a broken one must still
    be refused at every build, and a good one still validated by Connexion once."""
    from connexion.exceptions import InvalidSpecification
    from connexion.spec import Specification

    from tests import spec_validation

    broken = load_spec()
    broken["paths"]["/users"]["get"]["responses"] = "not a mapping"
    before = spec_validation.RUNS[0]
    for _ in range(2):
        with pytest.raises(InvalidSpecification):
            Specification.from_dict(copy.deepcopy(broken))
    assert spec_validation.RUNS[0] == before + 2

    Specification.from_dict(load_spec())  # validated once this run (here or earlier)
    after_good = spec_validation.RUNS[0]
    Specification.from_dict(load_spec())
    assert spec_validation.RUNS[0] == after_good
