"""Connexion's request validators, with messages a client can act on.

Registered through ``validator_map`` in ``create_app``: parameter errors name the parameter,
and a JSON body that is not UTF-8 is a 400 rather than a crash.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import cached_property
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.validators import (
    VALIDATOR_MAP,
    FormDataValidator,
    JSONRequestBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator, ValidationError
from jsonschema.exceptions import best_match
from starlette.types import Scope

#: id(schema) -> (schema, its validator). Connexion hands over the same schema dict on every
#: request; building a Draft4Validator (and its format checker) per call is the cost saved. The
#: schema is kept in the value so that its id cannot be reused by another object.
_VALIDATORS: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}


def _validator_for(schema: dict[str, Any]) -> Draft4Validator:
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _VALIDATORS[id(schema)] = cached
    return cached[1]


class NamingParameterValidator(ParameterValidator):  # type: ignore[misc]
    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        name = param_name or param.get("name")
        if value is None:
            if param.get("required"):
                return f"Missing {parameter_type} parameter '{name}'"
            return None
        schema = param.get("schema", param)
        try:
            _validator_for(schema).validate(value)
        except ValidationError as exc:
            # A pattern means little to a reader; the spec may say what it asks for instead.
            explained = schema.get("x-invalid-message") if exc.validator == "pattern" else None
            return f"Invalid {parameter_type} parameter '{name}': {explained or exc.message}"
        return None


def describe(error: ValidationError) -> str:
    """What was wrong, naming the field but never echoing its value.

    jsonschema's own messages quote the value ("'hunter2' is too short"), which would put a
    password into the response and the log.
    """
    field = ".".join(str(part) for part in error.absolute_path)
    where = f"'{field}'" if field else "The request body"
    schema = error.schema if isinstance(error.schema, dict) else {}
    match error.validator:
        case "required" | "additionalProperties":
            # These name properties, not values.
            return f"{error.message}" if not field else f"{where}: {error.message}"
        case "type":
            return f"{where} must be of type {error.validator_value}"
        case "minLength":
            return f"{where} must be at least {error.validator_value} characters long"
        case "maxLength":
            return f"{where} must be at most {error.validator_value} characters long"
        case "minProperties":
            return f"{where} must have at least {error.validator_value} field(s)"
        case "pattern" | "format":
            # The spec says, next to the pattern, how to explain a mismatch.
            return f"{where} {schema.get('x-invalid-message', 'is not in the expected format')}"
        case "enum":
            return f"{where} must be one of {', '.join(map(str, schema.get('enum', [])))}"
        case "minimum":
            return f"{where} must be at least {error.validator_value}"
        case "maximum":
            return f"{where} must be at most {error.validator_value}"
        case _:
            return f"{where} is not valid ({error.validator})"


#: Scope key of the body a validator parsed: the handler's arguments are bound from it
#: (storefront.http.compiled.ArgumentBinder) instead of parsing the body a second time.
PARSED_BODY = "storefront.parsed_body"


class StrictJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    @cached_property
    def _validator(self) -> Draft4Validator:
        # Built once per operation, not per request as Connexion's property does.
        validator: Draft4Validator = Draft4RequestValidator(
            self._schema, format_checker=Draft4Validator.FORMAT_CHECKER
        )
        return validator

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        try:
            body = await super()._parse(stream, scope)
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="The request body is not valid UTF-8.") from None
        scope[PARSED_BODY] = body
        return body

    def _validate(self, body: Any) -> Any:
        if body is None:
            raise BadRequestProblem(detail="The request body must not be empty.")
        error = best_match(self._validator.iter_errors(body))
        if error is not None:
            raise BadRequestProblem(detail=describe(error))
        return body


class LenientFormValidator(FormDataValidator):  # type: ignore[misc]
    """Form bodies (only the token endpoint takes one) ignore fields they do not know:
    RFC 6749 §3.2 says the authorization server MUST ignore unrecognised parameters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "strict_validation": False})

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        body = await super()._parse(stream, scope)
        scope[PARSED_BODY] = body
        return body

    @cached_property
    def _validator(self) -> Draft4Validator:
        # Built once per operation, not per request as Connexion's property does.
        validator: Draft4Validator = Draft4RequestValidator(
            self._schema, format_checker=Draft4Validator.FORMAT_CHECKER
        )
        return validator


def validator_map() -> dict[str, Any]:
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = StrictJSONBodyValidator
    body["application/x-www-form-urlencoded"] = LenientFormValidator
    return {**VALIDATOR_MAP, "parameter": NamingParameterValidator, "body": body}
