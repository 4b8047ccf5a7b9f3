"""One settings object, read from ``STOREFRONT_*`` environment variables and ``.env``."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_limit
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger("storefront")

#: HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32


class SettingsError(Exception):
    """A configuration value is unusable; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STOREFRONT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    database_url: str = "sqlite:///storefront.db"
    #: Seconds a request waits for a database connection or statement before a 503.
    database_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0

    rate_limit: str = "100/minute"
    auth_failure_limit: str = "60/minute"
    rate_limit_storage_url: str = "memory://"
    #: fixed-window (default: the seed's "current window" headers, one atomic INCR per
    #: request), moving-window (no boundary bursts, O(limit) memory per key) or
    #: sliding-window-counter (approximate, cheap, smooth).
    rate_limit_strategy: Literal["fixed-window", "moving-window", "sliding-window-counter"] = (
        "fixed-window"
    )
    #: When the rate-limit store (Redis) is unreachable: serve unlimited and log a warning
    #: (true), or answer 503 (false).
    rate_limit_fail_open: bool = True
    #: Prefix of every rate-limit key, so that deployments (or test runs) sharing one Redis
    #: never see each other's counts.
    rate_limit_key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "storefront"

    jwt_secret: SecretStr | None = None
    pepper: SecretStr | None = None
    #: Where generated secrets are kept when STOREFRONT_JWT_SECRET / STOREFRONT_PEPPER are unset.
    key_dir: Path = Path("storefront-keys")
    token_ttl: Annotated[int, Field(ge=60, le=86400)] = 3600
    issuer: Annotated[str, Field(min_length=1)] = "storefront-api"
    audience: Annotated[str, Field(min_length=1)] = "storefront-api"

    #: Seconds a client's status and an API key's owner are remembered between database
    #: reads: disabling a client or revoking a key takes effect within this time. 0: no cache.
    auth_cache_ttl: Annotated[float, Field(ge=0, le=60)] = 1.0

    #: Upper bound on argon2id hashes computed at once (each takes 19 MiB and a core).
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 4

    log_level: str = "info"
    #: text (one readable line per event) or json (one object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    #: Browser origins allowed to call the API (CORS), comma-separated; none by default.
    cors_origins: Annotated[list[str], NoDecode] = []
    #: Who may read /metrics: public, token (STOREFRONT_METRICS_TOKEN as a bearer token), off.
    metrics_access: Literal["public", "token", "off"] = "public"
    metrics_token: SecretStr | None = None
    #: Serve /metrics on this port too (from the main process), e.g. for a private network.
    metrics_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    #: Seconds in-flight requests get to finish after SIGTERM before the server stops anyway.
    shutdown_grace: Annotated[float, Field(ge=0, le=600)] = 20.0
    #: Seconds an Idempotency-Key of POST /users and its response are remembered.
    idempotency_key_ttl: Annotated[int, Field(ge=60, le=7 * 86400)] = 86400
    #: Refuse PUT and DELETE of a user without If-Match (428), so that no client can
    #: overwrite a change it has not seen.
    require_if_match: bool = False
    #: Check every response against openapi.yaml (the tests do; costs time per request).
    validate_responses: bool = False
    #: How requests reach the handlers: compiled (each operation's Connexion pipeline built
    #: once; the default) or connexion (Connexion's stock middleware stack, for comparison
    #: and as a fallback). Clients see no difference; the tests run both.
    http_stack: Literal["compiled", "connexion"] = "compiled"

    @field_validator("rate_limit", "auth_failure_limit")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        try:
            parse_limit(value)
        except ValueError:
            raise ValueError(f"not a rate limit like '100/minute': {value!r}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _valid_storage_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in {"memory", "redis", "rediss", "redis+sentinel", "redis+cluster"}:
            raise ValueError("must be memory:// or a redis:// URL")
        return value

    @field_validator("jwt_secret", "pepper")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"not an origin like https://shop.example: {origin!r}")
        return value

    @model_validator(mode="after")
    def _metrics_token_when_needed(self) -> Settings:
        if self.metrics_access == "token" and self.metrics_token is None:
            raise ValueError("STOREFRONT_METRICS_ACCESS=token needs STOREFRONT_METRICS_TOKEN")
        return self

    @field_validator("log_level")
    @classmethod
    def _valid_log_level(cls, value: str) -> str:
        if value.lower() not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return value.lower()


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation error into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a rule across fields names its variables itself
            raise SettingsError(f"invalid configuration: {msg}") from None
        field = str(first["loc"][0])
        raise SettingsError(f"invalid STOREFRONT_{field.upper()}: {msg}") from None


def read_or_create_secret(path: Path) -> tuple[bytes, bool]:
    """Return the secret kept at ``path``, creating it (mode 0600) when missing.

    The boolean tells whether it was created, so that start-up can say so.
    """
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        pass
    else:
        if len(data) < MIN_SECRET_BYTES:
            raise SettingsError(f"key file {path} holds fewer than {MIN_SECRET_BYTES} bytes")
        return data, False
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_urlsafe(48).encode()
    # Write a private temporary file, then link it into place: link() fails if the key exists,
    # so two workers starting at once agree on one key and never read a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data + b"\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return read_or_create_secret(path)
    finally:
        tmp.unlink()
    return data, True


def _configured_or_kept(value: SecretStr | None, path: Path, what: str) -> bytes:
    if value is not None:
        return value.get_secret_value().encode()
    secret, created = read_or_create_secret(path)
    if created:
        logger.warning("generated a new %s and saved it to %s", what, path)
    return secret


def jwt_signing_key(settings: Settings) -> bytes:
    """``STOREFRONT_JWT_SECRET``, or the key kept in ``STOREFRONT_KEY_DIR``."""
    return _configured_or_kept(
        settings.jwt_secret, settings.key_dir / "jwt-signing.key", "JWT signing key"
    )


def secret_pepper(settings: Settings) -> bytes:
    """``STOREFRONT_PEPPER``, or the pepper kept in ``STOREFRONT_KEY_DIR``.

    Changing it invalidates every client secret and API key: they are stored as HMACs under it.
    """
    return _configured_or_kept(
        settings.pepper, settings.key_dir / "pepper.key", "secret-digest pepper"
    )
