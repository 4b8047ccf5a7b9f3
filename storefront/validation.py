"""Field rules the schema cannot express (trimming, real email syntax), shared by API and CLI."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from storefront.errors import InvalidInput

NAME_MAX = 100
EMAIL_MAX = 254


def clean_name(value: str, *, field: str = "name", max_length: int = NAME_MAX) -> str:
    name = value.strip()
    if not name:
        raise InvalidInput(f"'{field}' must not be blank.")
    if len(name) > max_length:
        raise InvalidInput(f"'{field}' must be at most {max_length} characters.")
    return name


def clean_email(value: str) -> str:
    """The address with its domain normalised; the local part keeps the case it was given."""
    try:
        email = validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"'email' is not a valid email address: {exc}") from None
    if len(email) > EMAIL_MAX:
        raise InvalidInput(f"'email' must be at most {EMAIL_MAX} characters.")
    return email
