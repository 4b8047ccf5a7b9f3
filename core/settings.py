"""One settings object, read from ``STOREFRONT_*`` environment variables and ``.env``."""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse as parse_limit
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

logger = logging.getLogger("storefront")

#: HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32


class SettingsError(Exception):
    """A configuration value is unusable; the message is one line naming the variable."""


#: The default of STOREFRONT_RATE_LIMIT_READS, GET /rate_limit's own budget per caller.
RATE_LIMIT_READS = "30/minute"


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
    #: What sits between the server and PostgreSQL: none, or pgbouncer (any pooler in
    #: transaction mode). A transaction pooler hands each transaction to whichever server
    #: connection is free, so nothing may outlive a transaction: no named prepared statements,
    #: no per-connection settings (they are set per transaction instead).
    database_pooler: Literal["none", "pgbouncer"] = "none"
    #: PostgreSQL connections each worker may hold, opened as they are first needed and then
    #: kept; a request that finds them all busy waits for one (up to database_timeout). A pool
    #: that opens connections past its size and closes them again when they come back spends
    #: more on connecting (and preparing each statement anew) than on the queries.
    database_pool_size: Annotated[int, Field(ge=1, le=1000)] = 20
    #: Where migrations run when it is not STOREFRONT_DATABASE_URL: PostgreSQL itself, when
    #: the database URL names a transaction pooler (migrations take locks and run DDL over
    #: several statements, which a pooler would spread over server connections).
    migration_database_url: str | None = None

    #: Seconds of database time one product search may use; past it the client gets a 422
    #: and is told to narrow the search. Bounds what a term too short for the trigram index
    #: costs on a large catalogue (it reads every product: ~1.2 s at 1,000,000).
    search_budget: Annotated[float, Field(gt=0, le=300)] = 0.25

    rate_limit: str = "100/minute"
    auth_failure_limit: str = "60/minute"
    #: GET /rate_limit's own budget per caller (API key or OAuth client): reading what is
    #: left of the caller's budget spends none of it, so this bounds the reads instead.
    rate_limit_reads: str = RATE_LIMIT_READS
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

    #: The key-encryption key of the signing keys stored in the database (and the seed of
    #: the first one, as before migration 0009); generated into the key directory when unset.
    jwt_secret: SecretStr | None = None
    #: The algorithm of new signing keys (the first one, and `keys rotate-signing` without
    #: --algorithm): EdDSA (Ed25519, the default), ES256 (P-256), both published in the JWKS
    #: so that other services verify tokens without asking, or HS256 (a shared secret, for
    #: compatibility). Each stored key keeps its own (storefront/access/signing.py).
    jwt_algorithm: Literal["EdDSA", "ES256", "HS256"] = "EdDSA"
    pepper: SecretStr | None = None
    #: Where generated secrets are kept when STOREFRONT_JWT_SECRET / STOREFRONT_PEPPER are unset.
    #: Unset: beside a SQLite database file (see key_directory), else ./storefront-keys.
    key_dir: Path | None = None
    token_ttl: Annotated[int, Field(ge=60, le=86400)] = 3600
    issuer: Annotated[str, Field(min_length=1)] = "storefront-api"
    audience: Annotated[str, Field(min_length=1)] = "storefront-api"
    #: The resources (RFC 8707: absolute URIs, comma-separated) this server issues tokens
    #: for: a token request's ``resource`` must be one of them, and the token's ``aud`` is
    #: then that resource. This server's own API accepts a token whose ``aud`` holds
    #: STOREFRONT_AUDIENCE or one of these at or under STOREFRONT_PUBLIC_URL
    #: (storefront.access.resources); the others are other services' to accept.
    resources: Annotated[list[str], NoDecode] = []
    #: Seconds a client's key set (``clients create --jwks-uri``) may take to fetch.
    jwks_fetch_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    #: Seconds a fetched client key set is used before it is fetched again (an assertion
    #: naming a kid the set lacks fetches it sooner, at most once per 10 seconds).
    jwks_cache_ttl: Annotated[int, Field(ge=0, le=86400)] = 300

    #: DPoP (RFC 9449): seconds a proof's ``iat`` may lie from the server's clock, either
    #: side; a proof's ``jti`` is remembered (in the rate-limit store) for as long.
    dpop_proof_window: Annotated[int, Field(ge=1, le=600)] = 60
    #: DPoP server nonces (RFC 9449 §8): every proof must carry the current ``DPoP-Nonce``.
    #: Nonces are derived from the time and the pepper, so every instance knows them.
    dpop_nonce: bool = False
    #: Seconds each nonce is the current one; the one before it is still accepted as long.
    dpop_nonce_period: Annotated[int, Field(ge=10, le=3600)] = 300

    #: Seconds a client's status and an API key's owner are remembered between database
    #: reads: disabling a client or revoking a key takes effect within this time. 0: no cache.
    auth_cache_ttl: Annotated[float, Field(ge=0, le=60)] = 1.0

    #: Seconds between the writes of the requests counted per day, client and key
    #: (``storefront usage``): each process writes what it counted at most this often, and
    #: at a clean shutdown.
    usage_flush_seconds: Annotated[float, Field(ge=0.1, le=60)] = 5.0

    #: Upper bound on argon2id hashes computed at once (each takes 19 MiB and a core).
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 4

    #: Largest request body in bytes; a larger one is a 413, refused before it is read when
    #: Content-Length says so, and as soon as the count passes it when the body is chunked.
    max_body_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 1024 * 1024
    #: Most header fields a request may carry, and the most bytes its request line and header
    #: fields may take together; past either the answer is a 431.
    max_header_count: Annotated[int, Field(ge=16, le=1000)] = 100
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024**2)] = 16 * 1024
    #: Most fields, and the most bytes of one field (name and value), in a form body.
    max_form_fields: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_form_field_bytes: Annotated[int, Field(ge=64, le=1024**2)] = 8 * 1024
    #: How deeply arrays and objects may nest in a JSON body, and the most characters one
    #: JSON number may have.
    max_json_depth: Annotated[int, Field(ge=2, le=500)] = 32
    max_json_number_chars: Annotated[int, Field(ge=16, le=4000)] = 100

    #: Seconds a new connection may stay silent before its first request begins; then it is
    #: closed without a word (there is no request to answer).
    first_byte_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    #: Seconds a request's head (request line and header fields) may take from its first
    #: byte to its last; then the answer is a 408 and the connection closes.
    head_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    #: The longest pause, in seconds, while a request's body is arriving; then a 408, the
    #: connection closes and the request is not carried out.
    body_idle_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    #: Seconds an idle keep-alive connection is kept open after an answer (uvicorn's
    #: timeout_keep_alive, whose default this is).
    keep_alive_timeout: Annotated[int, Field(ge=1, le=3600)] = 5
    #: Most connections one server process holds open; past it a new connection is answered
    #: 503 and closed. Each costs a file descriptor and ~8 KiB when idle.
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000

    log_level: str = "info"
    #: text (one readable line per event) or json (one object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    #: The base URL clients reach the API at (https://api.example.com), for the absolute URLs
    #: of Link and Location. Unset: they are relative references. Never taken from the request:
    #: its Host header is whatever the client chose to send.
    public_url: str | None = None
    #: Addresses or networks (comma-separated: 10.0.0.5, 10.1.0.0/16, or * for any) of the
    #: proxies whose X-Forwarded-For / X-Forwarded-Proto are believed. None by default, loopback
    #: included: otherwise any local process could claim a new address, and with it a fresh
    #: failed-authentication budget, on every request.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = []
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

    @field_validator("rate_limit", "auth_failure_limit", "rate_limit_reads")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        try:
            parse_limit(value)
        except ValueError:
            raise ValueError(f"not a rate limit like '100/minute': {value!r}") from None
        return value

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _valid_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must start with sqlite:// or postgresql://")
        # Here, not at the first connection: there a port that is no number is a ValueError
        # deep in SQLAlchemy and one out of range an OverflowError in the socket layer, both
        # tracebacks. The message never quotes the URL, which may hold a password.
        port = url_port(value)
        if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"the port must be a number from 1 to 65535, got {port!r}")
        try:
            make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL like postgresql://user@host:5432/db") from None
        return value

    @model_validator(mode="after")
    def _pooler_needs_postgres(self) -> Settings:
        if self.database_pooler == "none":
            return self
        if self.database_url.startswith("sqlite"):
            raise ValueError("STOREFRONT_DATABASE_POOLER needs a postgresql:// database URL")
        if self.migration_database_url is None:
            raise ValueError(
                "STOREFRONT_DATABASE_POOLER=pgbouncer needs STOREFRONT_MIGRATION_DATABASE_URL: "
                "PostgreSQL itself, for migrations, which must not run through the pooler"
            )
        return self

    @property
    def migrations_url(self) -> str:
        """Where migrations run: STOREFRONT_MIGRATION_DATABASE_URL, else the database URL."""
        return self.migration_database_url or self.database_url

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _valid_storage_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        # No redis+cluster://: a budget's keys (the two failure budgets and the client's, in
        # one script) would live on different nodes, and the limiter's pool speaks to one.
        if scheme not in {"memory", "redis", "rediss", "redis+sentinel"}:
            raise ValueError(
                "must be memory://, redis://, rediss:// or redis+sentinel://host:26379/SERVICE"
            )
        if scheme == "redis+sentinel" and not value.split("://", 1)[1].partition("/")[2].strip("/"):
            raise ValueError("must name the service: redis+sentinel://host:26379/SERVICE")
        return value

    @field_validator("jwt_secret", "pepper")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not a base URL like https://api.example.com: {value!r}")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError(f"a base URL has no query or fragment: {value!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"a base URL has no user or password: {value!r}")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError(f"not a valid port in {value!r}") from None
        return value.rstrip("/")

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        if "*" in value:
            if len(value) > 1:
                raise ValueError("* (any address) cannot be combined with other entries")
            return value
        for entry in value:
            try:
                # strict=False: 10.0.0.1/8 means the network 10.0.0.0/8, as uvicorn reads it.
                ip_network(entry, strict=False) if "/" in entry else ip_address(entry)
            except ValueError:
                raise ValueError(
                    f"not an IP address or network like 10.0.0.5 or 10.0.0.0/8: {entry!r}"
                ) from None
        return value

    @field_validator("resources")
    @classmethod
    def _valid_resources(cls, value: list[str]) -> list[str]:
        for uri in value:
            problem = resource_uri_problem(uri)
            if problem is not None:
                raise ValueError(f"{uri!r} {problem}")
        return list(dict.fromkeys(value))

    @field_validator("cors_origins", "forwarded_allow_ips", "resources", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
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


#: RFC 3986 §3.1: a scheme is a letter, then letters, digits, "+", "-" or ".".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def resource_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be an RFC 8707 resource indicator (an absolute URI, RFC 3986
    §4.3, with no fragment), in words that follow the URI; None when it can be one."""
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme) or not rest:
        return "is not an absolute URI (one with a scheme, as https://api.example.com)"
    if "#" in uri:
        return "has a fragment (#…), which a resource indicator must not have"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        return "holds a space or control character"
    return None


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


#: The start of a URL as SQLAlchemy's make_url reads it (its own expression), up to the port:
#: a password runs to the first "@", and may hold "/" or "?".
_URL_HEAD = re.compile(
    r"[\w+]+://(?:[^:/]*(?::[^@]*)?@)?(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?"
)


def url_port(url: str) -> str | None:
    """The port of a database URL as written, as SQLAlchemy will read it (``""`` after a bare
    colon); None when it names none."""
    found = _URL_HEAD.match(url)
    return found["port"] if found else None


#: Query parameters whose value is a password: libpq's and the drivers' ``password`` (asyncpg
#: and psycopg read ``?password=``), ``sslpassword``, Redis' ``password``.
_SECRET_PARAMETER = re.compile(r"[^=&;]*password=", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, in the user information
    (``user:pw@``) and in query parameters (``?password=pw``): for messages and logs that
    name it.

    Masks rather too much than too little: the user information runs to the last "@" (a
    password written with "@", "/" or "?" in it unencoded is still hidden whole)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{after}"
    before, question, query = rest.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        separator = ";" if ";" in query and "&" not in query else "&"
        masked = [
            f"{part.partition('=')[0]}=***" if _SECRET_PARAMETER.match(part) else part
            for part in query.split(separator)
        ]
        rest = f"{before}?{separator.join(masked)}{hash_}{fragment}"
    return f"{scheme}{sep}{rest}"


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


@dataclass(frozen=True)
class SecretKind:
    """One of the two secrets a database is bound to, and the names it goes by."""

    #: How the database's record of its fingerprint is named.
    name: str
    #: What the messages call it.
    what: str
    #: The variable that sets it.
    variable: str
    #: Its file in the key directory, when the variable is unset.
    filename: str


PEPPER = SecretKind("pepper", "pepper", "STOREFRONT_PEPPER", "pepper.key")
JWT_KEY = SecretKind(
    "jwt-signing-key", "JWT signing key", "STOREFRONT_JWT_SECRET", "jwt-signing.key"
)
#: The key directory when neither STOREFRONT_KEY_DIR nor a SQLite file decides it.
DEFAULT_KEY_DIR = Path("storefront-keys")


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL (relative to the working directory, as SQLite opens it);
    None for an in-memory database or another engine."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):  # a SQLite URI filename: no plain path to speak of
        return None
    return Path(url.database)


def key_directory(settings: Settings) -> Path:
    """``STOREFRONT_KEY_DIR``; unset, the keys live beside a SQLite database file
    (``shop.db`` -> ``shop-keys/``, so the default ``storefront.db`` keeps ``storefront-keys/``)
    and in ``./storefront-keys`` for a server database."""
    if settings.key_dir is not None:
        return settings.key_dir
    database = sqlite_file(settings.database_url)
    if database is None:
        return DEFAULT_KEY_DIR
    return database.with_name(f"{database.stem}-keys")


def key_file(settings: Settings, kind: SecretKind) -> Path:
    return key_directory(settings) / kind.filename


def configured_secret(settings: Settings, kind: SecretKind) -> bytes | None:
    """The secret's variable, when it is set."""
    value = settings.pepper if kind is PEPPER else settings.jwt_secret
    return None if value is None else value.get_secret_value().encode()


def read_secret(path: Path) -> bytes | None:
    """The secret kept at ``path``; None when there is no such file."""
    if not path.exists():
        return None
    return read_or_create_secret(path)[0]


def _configured_or_kept(settings: Settings, kind: SecretKind) -> bytes:
    configured = configured_secret(settings, kind)
    if configured is not None:
        return configured
    path = key_file(settings, kind)
    secret, created = read_or_create_secret(path)
    if created:
        logger.warning("generated a new %s and saved it to %s", kind.what, path)
    return secret


def jwt_signing_key(settings: Settings) -> bytes:
    """``STOREFRONT_JWT_SECRET``, or the key kept in the key directory."""
    return _configured_or_kept(settings, JWT_KEY)


def secret_pepper(settings: Settings) -> bytes:
    """``STOREFRONT_PEPPER``, or the pepper kept in the key directory.

    Changing it invalidates every client secret and API key: they are stored as HMACs under it.
    """
    return _configured_or_kept(settings, PEPPER)
