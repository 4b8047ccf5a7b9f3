"""Connexion's request validators, with messages a client can act on.

Registered through ``validator_map`` in ``create_app``: parameter errors name the parameter,
and a JSON body that is not UTF-8 is a 400 rather than a crash.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from decimal import Context, localcontext
from functools import cached_property, partial
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.validators import (
    VALIDATOR_MAP,
    FormDataValidator,
    JSONRequestBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.types import Message, Receive, Scope

from core.errors import UnsupportedCharset
from core.validation import json_decimal
from storefront.http.state import publish_form_values

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


#: Scope key of the parameters the compiled pipeline checked directly
#: (``NamingParameterValidator.checked``): ``(path values, query values)``, converted as
#: Connexion's URI parser converts them, for the handler's arguments.
CHECKED_PARAMETERS = "storefront.checked_parameters"

#: Schema keywords a direct check knows, per type (anything else: Connexion's path).
_STRING_KEYWORDS = frozenset({"type", "minLength", "maxLength", "pattern", "x-invalid-message"})
_INTEGER_KEYWORDS = frozenset({"type", "minimum", "maximum"})
#: Schema keywords that describe and do not constrain.
_ANNOTATIONS = frozenset({"title", "description", "example", "examples", "default"})


_PARAMETER_KEYWORDS = frozenset(
    {"name", "in", "required", "schema", "description", "example", "examples", "deprecated"}
)


def _direct_check(param: dict[str, Any]) -> Callable[[str], Any] | None:
    """A function that takes a parameter's raw text and returns the value Connexion's URI
    parser makes of it when jsonschema would accept that value, or ``_REFUSED``; None when
    the parameter's schema is beyond the few keywords these checks know."""
    if set(param) - _PARAMETER_KEYWORDS:
        return None
    schema = param.get("schema", {})
    kind = schema.get("type")
    if kind == "string" and not set(schema) - _STRING_KEYWORDS - _ANNOTATIONS:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

        def string(text: str) -> Any:
            if len(text) < low or (high is not None and len(text) > high):
                return _REFUSED
            if pattern is not None and pattern.search(text) is None:
                return _REFUSED
            return text

        return string
    if kind == "integer" and not set(schema) - _INTEGER_KEYWORDS - _ANNOTATIONS:
        minimum, maximum = schema.get("minimum"), schema.get("maximum")

        def integer(text: str) -> Any:
            try:
                number = int(text)  # what Connexion's coerce_type does (make_type)
            except ValueError:
                return _REFUSED
            if (minimum is not None and number < minimum) or (
                maximum is not None and number > maximum
            ):
                return _REFUSED
            return number

        return integer
    return None


_REFUSED: Any = object()


class NamingParameterValidator(ParameterValidator):  # type: ignore[misc]
    @cached_property
    def _direct(self) -> Any:
        # Worked out on first use, so once per operation on the compiled stack, and never on
        # the stock stack (which makes a validator per request and never asks).
        return self._direct_checks()

    def _direct_checks(self) -> Any:
        """Per kind of parameter, (name, required, check) for :meth:`checked`; None when a
        parameter is beyond the direct checks (then every request takes Connexion's path)."""
        if set(self.parameters) - {"query", "path", "header"}:
            return None
        checks: dict[str, list[tuple[str, bool, Callable[[str], Any]]]] = {}
        for kind in ("query", "path", "header"):
            for param in self.parameters.get(kind, []):
                check = _direct_check(param)
                # Connexion converts query and path values, never headers: a header is
                # checked as the text it is, so only string headers are checked directly.
                if check is None or (kind == "header" and param["schema"]["type"] != "string"):
                    return None
                if kind == "path" and "-" in param["name"]:  # Connexion renames those
                    return None
                checks.setdefault(kind, []).append(
                    (param["name"], param.get("required", False), check)
                )
        known = frozenset(
            [p["name"] for p in self.parameters.get("query", [])] + list(self.security_query_params)
        )
        return checks.get("query", []), checks.get("path", []), checks.get("header", []), known

    def checked(self, scope: Scope) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The request's path and query parameters, converted, when each passes the direct
        checks, which hold exactly when Connexion's validation would pass (jsonschema over
        what its URI parser makes of the text; ``tests/http/test_validators.py`` compares the
        two on generated requests); None otherwise: ``validate_request`` then validates, and
        says what is wrong in its own words."""
        direct = self._direct
        if direct is None:
            return None
        query_checks, path_checks, header_checks, known = direct
        # Starlette's QueryParams, as Connexion reads them: the last value of a repeated name.
        query = dict(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        if self.strict_validation and not known.issuperset(query):
            return None
        query_values: dict[str, Any] = {}
        for name, required, check in query_checks:
            text = query.get(name)
            if text is None:
                if required:
                    return None
                continue
            value = check(text)
            if value is _REFUSED:
                return None
            query_values[name] = value
        path_values: dict[str, Any] = {}
        if path_checks:
            raw = scope.get("path_params", {})
            for name, _required, check in path_checks:
                text = raw.get(name)
                if text is None or not isinstance(text, str):
                    return None
                value = check(text)
                if value is _REFUSED:
                    return None
                path_values[name] = value
        for name, required, check in header_checks:
            wanted = name.lower().encode("latin-1")
            text = next((v.decode("latin-1") for k, v in scope["headers"] if k == wanted), None)
            if text is None:
                if required:
                    return None
            elif check(text) is _REFUSED:
                return None
        return path_values, query_values

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
        case "multipleOf":
            message = schema.get(
                "x-invalid-message", f"must be a multiple of {error.validator_value}"
            )
            return f"{where} {message}"
        case _:
            return f"{where} is not valid ({error.validator})"


#: Scope key of the body a validator parsed: the handler's arguments are bound from it
#: (storefront.http.compiled.ArgumentBinder) instead of parsing the body a second time.
PARSED_BODY = "storefront.parsed_body"


#: A JSON string, escapes and all: what the depth scan skips over.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
#: A \\u escape of a UTF-16 surrogate: the only way a JSON text can make a lone one (UTF-8
#: cannot encode surrogates, and a valid pair is joined by the decoder).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings not counted)."""
    brackets = _BRACKETS.findall(_JSON_STRING.sub("", text))
    return max(accumulate(_DEPTH_STEP[b] for b in brackets), default=0)


def _has_lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


@dataclass(frozen=True)
class BodyLimits:
    """What a body may hold, from the settings (``STOREFRONT_MAX_*``)."""

    json_depth: int = 32
    json_number_chars: int = 100
    form_fields: int = 100
    form_field_bytes: int = 8 * 1024


#: Enough digits for any quotient of a JSON number the body parser lets through (at most
#: ``json_number_chars`` characters, floats below 2e308) by the spec's multiples.
_EXACT = Context(prec=1000)


def decimal_multiple_of(
    validator: Draft4Validator, multiple: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """``multipleOf`` in decimal, as the spec's reader means it: jsonschema divides binary
    floats, so that 19.99 is not a multiple of 0.01 to it (1998.9999999999998 hundredths).
    Each float is read as its shortest repr, the number its JSON text spelled (19.99 is,
    19.990000000000002 is not), as schemathesis and jsonschema-rs read them too."""
    if not validator.is_type(instance, "number"):
        return
    with localcontext(_EXACT):
        exact = json_decimal(instance) % json_decimal(multiple) == 0
    if not exact:
        yield ValidationError(f"{instance!r} is not a multiple of {multiple}")


#: Connexion's request validator (readOnly / writeOnly aware) with ``multipleOf`` in decimal.
RequestValidator: type[Draft4Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft4RequestValidator, {"multipleOf": decimal_multiple_of}
)


class StrictJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    limits = BodyLimits()

    @cached_property
    def _validator(self) -> Draft4Validator:
        # Built once per operation, not per request as Connexion's property does.
        validator: Draft4Validator = RequestValidator(
            self._schema, format_checker=Draft4Validator.FORMAT_CHECKER
        )
        return validator

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="The request body is not valid UTF-8.") from None
        except LookupError:
            raise UnsupportedCharset(
                f"The request body's charset ({self._encoding}) is not supported; send UTF-8."
            ) from None
        body = self.loads(text) if text else None
        scope[PARSED_BODY] = body
        return body

    def loads(self, text: str) -> Any:
        """``text`` parsed, within the limits; a 400 naming the limit otherwise.

        Each check costs nothing on an ordinary body: the depth is only measured when there
        are more brackets than the limit, the surrogate walk only runs when the text has a
        surrogate escape, and the number hooks see only the numbers' own characters.
        """
        limits = self.limits
        brackets = text.count("[") + text.count("{")
        if brackets > limits.json_depth and json_depth(text) > limits.json_depth:
            raise BadRequestProblem(
                detail=f"The request body nests arrays and objects more than "
                f"{limits.json_depth} levels deep."
            )
        try:
            body = json.loads(
                text,
                parse_int=self._parse_int,
                parse_float=self._parse_float,
                parse_constant=self._refuse_constant,
            )
        except json.JSONDecodeError as exc:
            raise BadRequestProblem(detail=f"The request body is not valid JSON: {exc}") from None
        except RecursionError:  # the depth check above makes this unreachable; kept as a net
            raise BadRequestProblem(detail="The request body nests too deeply.") from None
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(body):
            raise BadRequestProblem(
                detail="The request body contains a \\u escape of a lone UTF-16 surrogate, "
                "which is not a character; send valid Unicode."
            )
        return body

    def _parse_int(self, digits: str) -> int:
        self._check_number(digits)
        return int(digits)

    def _parse_float(self, digits: str) -> float:
        self._check_number(digits)
        value = float(digits)
        if not math.isfinite(value):
            raise BadRequestProblem(detail="The request body holds a number out of range.")
        return value

    def _check_number(self, digits: str) -> None:
        if len(digits) > self.limits.json_number_chars:
            raise BadRequestProblem(
                detail=f"The request body holds a number of more than "
                f"{self.limits.json_number_chars} characters."
            )

    @staticmethod
    def _refuse_constant(name: str) -> Any:
        # Python's json reads NaN and Infinity; JSON (RFC 8259) has neither.
        raise BadRequestProblem(detail=f"The request body is not valid JSON: {name} is not JSON.")

    def _validate(self, body: Any) -> Any:
        if body is None:
            raise BadRequestProblem(detail="The request body must not be empty.")
        error = best_match(self._validator.iter_errors(body))
        if error is not None:
            raise BadRequestProblem(detail=describe(error))
        return body


class UrlencodedFormParser:
    """Starlette's ``FormParser`` for url-encoded bodies, with the same result (a ``FormData``
    of ``unquote_plus``-ed latin-1 text), the same limits and the same errors, made with one
    split of the whole body instead of python-multipart's callback parser, per byte in Python:
    a fifth of the token endpoint's time. The body is already bounded
    (``STOREFRONT_MAX_BODY_BYTES``) when it gets here. ``tests/http/test_validators.py``
    compares the two parsers on generated bodies."""

    def __init__(
        self,
        headers: Any,
        stream: AsyncGenerator[bytes, None],
        *,
        max_fields: int,
        max_part_size: int,
    ) -> None:
        self.stream = stream
        self.max_fields = max_fields
        self.max_part_size = max_part_size

    async def parse(self) -> FormData:
        body = b"".join([chunk async for chunk in self.stream])
        return FormData(urlencoded_fields(body, self.max_fields, self.max_part_size))


def urlencoded_fields(
    body: bytes, max_fields: int, max_part_size: int
) -> list[tuple[str, str | UploadFile]]:
    """The (name, value) pairs of a url-encoded body, as :class:`UrlencodedFormParser` reads
    them (Starlette's ``MultiPartException`` past a limit)."""
    text = body.decode("latin-1")
    items: list[tuple[str, str | UploadFile]] = []
    # Field by field, in order, so that the first limit passed is the one reported.
    for field in text.split("&"):
        if not field:
            continue
        name, equals, value = field.partition("=")
        if len(field) - len(equals) > max_part_size:
            raise MultiPartException(
                f"Field exceeded maximum size of {int(max_part_size / 1024)}KB."
            )
        if len(items) == max_fields:
            raise MultiPartException(f"Too many fields. Maximum number of fields is {max_fields}.")
        items.append((unquote_plus(name), unquote_plus(value)))
    return items


class LenientFormValidator(FormDataValidator):  # type: ignore[misc]
    """Form bodies (only the token endpoint takes one) ignore fields they do not know:
    RFC 6749 §3.2 says the authorization server MUST ignore unrecognised parameters."""

    limits = BodyLimits()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "strict_validation": False})

    @property
    def _form_parser_cls(self) -> Any:
        return partial(
            UrlencodedFormParser,
            max_fields=self.limits.form_fields,
            max_part_size=self.limits.form_field_bytes,
        )

    @cached_property
    def _plain_required(self) -> frozenset[str] | None:
        """The required fields, when this form is *plain*: an object whose properties are all
        strings and nothing more (no format, length, pattern or enum, not nullable), with no
        encoding given for any field. Then Connexion's form parse and its schema check come
        down to two steps, done here directly (``_parse``, ``_validate``); None otherwise."""
        schema = self._schema
        # The requestBody's encoding (Connexion keeps it on the URI parser only).
        encoding = getattr(self._uri_parser, "_body_encoding", None)
        # "components": what Connexion adds for $refs to resolve against (no constraint).
        keywords = {"type", "required", "properties", "components", *_ANNOTATIONS}
        if encoding != {} or set(schema) - keywords:
            return None
        properties = schema.get("properties", {})
        if schema.get("type") != "object" or not all(
            prop.get("type") == "string" and not set(prop) - {"type", *_ANNOTATIONS}
            for prop in properties.values()
        ):
            return None
        return frozenset(schema.get("required", []))

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        """Connexion's ``wrap_receive`` (read the body, parse it, validate it, replay it to
        the app), done directly for a plain form with a body: the messages read in a loop
        rather than through an async generator, the fields parsed into the body Connexion's
        parse makes of them (:meth:`plain_body`) with no ``FormData`` in between. Anything else
        (no Content-Length, or 0: Connexion's default and required-body rules) is Connexion's.
        """
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        if self._plain_required is None or not int(length):
            wrapped: tuple[Receive, Scope] = await super().wrap_receive(receive, scope=scope)
            return wrapped
        messages: list[Message] = []
        more_body = True
        while more_body:
            message = await receive()
            messages.append(message)
            more_body = message.get("more_body", False)
        body = self._plain_body_published(
            b"".join([message.get("body", b"") for message in messages]), scope
        )
        scope[PARSED_BODY] = body
        self._validate(body)
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        return replayed, scope

    def plain_body(self, raw: bytes) -> dict[str, str]:
        """What Connexion's parse makes of a plain form (``FormDataValidator._parse``, then its
        URI parser's ``resolve_form``): each field's values joined with "," (style "form",
        exploded), left as strings. tests/http/test_validators.py holds the two to the same
        result."""
        return {name: ",".join(found) for name, found in self._plain_values(raw).items()}

    def _plain_values(self, raw: bytes) -> dict[str, list[str]]:
        try:
            fields = urlencoded_fields(raw, self.limits.form_fields, self.limits.form_field_bytes)
        except MultiPartException as exc:
            raise self._too_big(exc) from None
        values: dict[str, list[str]] = {}
        for name, value in fields:
            values.setdefault(name, []).append(str(value))
        return values

    def _plain_body_published(self, raw: bytes, scope: Scope) -> dict[str, str]:
        """:meth:`plain_body`, with each field's values also published as sent
        (``publish_form_values``): joined with ",", a field sent twice (RFC 8707's repeated
        ``resource``) cannot be told from one whose value holds a comma."""
        values = self._plain_values(raw)
        publish_form_values(scope, values)
        return {name: ",".join(found) for name, found in values.items()}

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        if self._plain_required is not None:
            body: Any = self._plain_body_published(
                b"".join([chunk async for chunk in stream]), scope
            )
        else:
            try:
                body = await super()._parse(stream, scope)
            except MultiPartException as exc:
                raise self._too_big(exc) from None
        scope[PARSED_BODY] = body
        return body

    def _too_big(self, exc: MultiPartException) -> BadRequestProblem:
        # Starlette's messages count in KB; ours name the settings' own units.
        if exc.message.startswith("Too many fields"):
            return BadRequestProblem(
                detail=f"The form has more than {self.limits.form_fields} fields."
            )
        return BadRequestProblem(
            detail=f"A form field (name and value) is over {self.limits.form_field_bytes} bytes."
        )

    @cached_property
    def _validator(self) -> Draft4Validator:
        # Built once per operation, not per request as Connexion's property does.
        validator: Draft4Validator = Draft4RequestValidator(
            self._schema, format_checker=Draft4Validator.FORMAT_CHECKER
        )
        return validator

    def _validate(self, body: Any) -> Any:
        required = self._plain_required
        # A plain form's fields are all strings: its schema holds exactly when every required
        # field is there. Otherwise jsonschema says what is wrong, in Connexion's words.
        if required is not None and isinstance(body, dict) and required.issubset(body):
            return None
        return super()._validate(body)


def validator_map(limits: BodyLimits | None = None) -> dict[str, Any]:
    """Connexion's validators with ours in place; ``limits`` bound to this app's body
    validators (subclasses, so that apps with other settings in one process stay apart)."""
    limits = limits or BodyLimits()
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = type(
        "StrictJSONBodyValidator", (StrictJSONBodyValidator,), {"limits": limits}
    )
    body["application/x-www-form-urlencoded"] = type(
        "LenientFormValidator", (LenientFormValidator,), {"limits": limits}
    )
    return {**VALIDATOR_MAP, "parameter": NamingParameterValidator, "body": body}
