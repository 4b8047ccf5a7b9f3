"""Connexion's parameter validator, with messages that name the offending parameter."""

from __future__ import annotations

from typing import Any

from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator, ValidationError


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
