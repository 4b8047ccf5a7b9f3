"""Connexion's request validators, with messages a client can act on.

Registered through ``validator_map`` in ``create_app``: parameter errors name the parameter,
and a JSON body that is not UTF-8 is a 400 rather than a crash.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.types import Scope


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
            Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER).validate(value)
        except ValidationError as exc:
            return f"Invalid {parameter_type} parameter '{name}': {exc.message}"
        return None


class StrictJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        try:
            return await super()._parse(stream, scope)
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="The request body is not valid UTF-8.") from None


def validator_map() -> dict[str, Any]:
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = StrictJSONBodyValidator
    return {**VALIDATOR_MAP, "parameter": NamingParameterValidator, "body": body}
