"""Tables. Constraints that keep data consistent (unique email) live here, in the database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    false,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every engine.

    SQLite keeps no time zone, so values are stored as naive UTC and tagged on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @staticmethod
    def from_sqlite_text(value: str | None) -> datetime | None:
        """What SQLAlchemy's SQLite processor and ``process_result_value`` make of a stored
        value, for prepared reads (persistence.db.PreparedQuery): ``fromisoformat`` is C code,
        SQLAlchemy's parse a regular expression per value, twice per user row. A value it
        cannot read raises ValueError, and the caller falls back to SQLAlchemy's."""
        if value is None:
            return None
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: 1 when created, one more on every update: the strong ETag of GET /users/{id}. A
    #: timestamp would not do: two updates within one clock tick would share a tag.
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __table_args__ = (
        # Case-insensitive uniqueness is the database's job: a check-then-insert would race.
        Index("uq_users_email_lower", func.lower(email), unique=True),
        # The list order, and the index that serves it.
        Index("ix_users_created_at_id", created_at, id),
    )


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    category: Mapped[str] = mapped_column(String(100))
    #: 1 when created, one more on every change (over HTTP or by an import that changes the
    #: row): the strong ETag of GET /products/{id} (migration 0012).
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __table_args__ = (
        # A category's products in list order (id): a page reads `limit` index entries. With
        # category included, PostgreSQL counts them in an index-only scan.
        Index(
            "ix_products_category_lower_id",
            func.lower(category),
            id,
            postgresql_include=["category"],
        ),
        # Substring search on PostgreSQL (pg_trgm): the lower(x) LIKE '%term%' predicates of
        # persistence/products.py use these. SQLite's counterpart is the FTS5 table
        # products_fts (migration 0003), which no model describes; see FTS_TABLES.
        Index(
            "ix_products_name_lower_trgm",
            func.lower(name).label("name_lower"),
            postgresql_using="gin",
            postgresql_ops={"name_lower": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_products_description_lower_trgm",
            func.lower(description).label("description_lower"),
            postgresql_using="gin",
            postgresql_ops={"description_lower": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )


class TableCount(Base):
    """How many rows a table holds (``users``, ``products``): X-Total-Count of an unfiltered
    list without COUNT(*). Kept by triggers (migration 0004), never written by the code."""

    __tablename__ = "table_counts"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
    #: Moved on by every write to the table's rows (products only; migration 0006): what a
    #: remembered search count is valid for.
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")


class CategoryCount(Base):
    """How many products each category holds, by ``lower(category)`` as the category filter
    compares it. Kept by triggers (migration 0004), never written by the code."""

    __tablename__ = "category_counts"

    category: Mapped[str] = mapped_column(Text, primary_key=True)
    products: Mapped[int] = mapped_column(BigInteger)


#: Triggers of migration 0004 that keep TableCount and CategoryCount.
COUNT_TRIGGERS = (
    "count_users_insert",
    "count_users_delete",
    "count_products_insert",
    "count_products_delete",
    "count_products_update",
)


#: SQLite objects of migration 0003 outside these models: the FTS5 table (its shadow tables
#: are named after it) and the triggers that keep it in step with products.
FTS_TABLES = ("products_fts",)
FTS_TRIGGERS = ("products_fts_insert", "products_fts_update", "products_fts_delete")


class Client(Base):
    """An OAuth 2.0 client of the client-credentials grant."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: HMAC-SHA256 of the secret under the server pepper, hex; the empty string (which no
    #: digest equals) for a client without a secret, one that authenticates with a signed
    #: assertion (``private_key_jwt``, migration 0015).
    secret_digest: Mapped[str] = mapped_column(String(64))
    #: Space-separated scopes the client may be granted.
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: This client's own rate limits, ";"-separated ("100/minute;10000/day"); None means
    #: STOREFRONT_RATE_LIMIT. The column is ``rate_limits`` (migration 0013).
    rate_limit: Mapped[str | None] = mapped_column("rate_limits", String(200), nullable=True)
    #: The secret replaced by the last rotation (``storefront clients rotate-secret``), as
    #: ``secret_digest``, still accepted until ``previous_secret_expires_at`` (migration
    #: 0010). Only one is kept: a second rotation within the grace replaces it.
    previous_secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True
    )
    #: The client's public keys for ``private_key_jwt`` (RFC 7523), a JWK Set as JSON,
    #: checked when registered (storefront.access.client_keys); or ``jwks_uri``, where the
    #: client publishes it. At most one of the two is set (migration 0015).
    jwks: Mapped[str | None] = mapped_column(Text(), nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    #: Its token requests must carry a DPoP proof (RFC 9449), so that every token it gets is
    #: bound to its key (``storefront clients create --require-dpop``; migration 0016).
    require_dpop: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    #: HMAC-SHA256 of the key under the server pepper, hex; the key itself is never stored.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The key's first characters ("sk_" and 8 more: 48 of its 256 random bits), kept at
    #: creation so that an operator can tell keys apart; None for keys made before migration
    #: 0010, whose full key was never stored.
    prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: Past this the key is refused (401); None: it never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When the key last authenticated a request, to within a minute (written at most once a
    #: minute per key, off the request's path: storefront.access.last_use).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The key's own rate limits, as the client's ("100/minute;10000/day"); None: the
    #: client's (migration 0013).
    rate_limits: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Accepted requests the key may serve (None: no count); with ``uses_refill`` ("1000/month")
    #: the count comes back to the refill's amount every refill period, counted from creation.
    uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses_refill: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Uses spent in refill period ``uses_period`` (0 without a refill), kept here when the
    #: rate-limit store is in memory; with Redis the store counts them.
    uses_spent: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    uses_period: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` for one operation, and the response it got.

    While the first request runs, ``claim`` names it and ``status`` is empty; once it
    finished, ``status``, ``headers`` and ``body`` are its response, replayed to retries until
    ``expires_at``, or until the resource it carries is deleted. The request body is kept
    only as ``fingerprint``, an HMAC under the server pepper: a body may hold a password.
    """

    __tablename__ = "idempotency_keys"

    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    operation: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: HMAC-SHA256 of the request body's canonical JSON under the server pepper, hex.
    fingerprint: Mapped[str] = mapped_column(String(64))
    #: Which request holds the key while it runs (None once its response is stored).
    claim: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: Until when the running request holds it; past this a retry may take it over, since
    #: the request that claimed it must have died (nothing it did was committed).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    #: The headers that matter to a retry (Location), as a JSON object.
    headers: Mapped[str | None] = mapped_column(Text, nullable=True)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The resource the stored response carries (the created user's id): deleting it forgets
    #: the response, status GONE and no headers or body, by this index (migration 0011).
    resource_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Purged past this, a bounded batch at a time, walking this index.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class SecretFingerprint(Base):
    """A fingerprint of a secret this database was set up with (the pepper that keyed its
    credential digests, the key that signs its tokens): an HMAC of a fixed label under the
    secret (core.crypto.fingerprint), never the secret. Recorded on first use (migration
    0005), compared on every start after."""

    __tablename__ = "secret_fingerprints"

    #: core.settings.SecretKind.name: "pepper" or "jwt-signing-key".
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SigningKeyRow(Base):
    """A key that signs access tokens (migration 0009). Its life cycle, by time alone, so that
    every instance reading the table agrees without being told (storefront/access/signing.py):

    - **pending** until ``activates_at``: published in the JWKS and trusted by every instance,
      but not yet signing, so that each has loaded it before any token names it;
    - **active** from ``activates_at``: of the keys active, the one activated last signs;
    - **previous** from ``deactivates_at`` (the next key's activation): verifies only, and
      stays published, until every token it signed has expired;
    - **retired** from ``retires_at``: out of the JWKS and of verification; the next rotation
      deletes the row.

    The private key is stored encrypted (core.crypto.KeyEncryption: AES-256-GCM under a key
    derived from STOREFRONT_JWT_SECRET, the kid and algorithm as associated data). A row whose
    ``private_key`` is NULL stands for the key that servers before 0009 derived from that
    secret: the migration cannot compute it, so the first process holding the secret replaces
    the row with the key itself (same kid as before, so outstanding tokens stay valid).
    """

    __tablename__ = "signing_keys"

    #: The RFC 7638 thumbprint of the public key (EdDSA, ES256), or 16 hex digits (HS256).
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: EdDSA, ES256 or HS256: the only algorithm tokens naming this kid are checked with.
    algorithm: Mapped[str] = mapped_column(String(8))
    #: 96-bit nonce || AES-GCM ciphertext and tag of the private key.
    private_key: Mapped[bytes | None] = mapped_column(LargeBinary(), nullable=True)
    #: The public JWK (JSON) as the JWKS publishes it; NULL for HS256, which is never published.
    public_jwk: Mapped[str | None] = mapped_column(Text(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activates_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deactivates_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def modelled(name: str | None, type_: str, _parents: Any) -> bool:
    """For Alembic's ``include_name``: whether a database object is the models' to compare.

    The FTS5 table and its shadow tables (``products_fts_data``, …) are migration 0003's: left
    in, autogenerate would propose dropping them."""
    return not (type_ == "table" and name is not None and name.startswith(FTS_TABLES))


class RevokedToken(Base):
    """An access token revoked before its expiry (RFC 7009), by its ``jti``. Kept only until
    the token expires: past that the signature check refuses it anyway, so the row is purged
    (persistence.revocations.revoke)."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40))
    #: The token's exp: the row is useless after it. Indexed, so the purge reads only old rows.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UsageDay(Base):
    """Requests of one client (and one of its API keys, or ``''`` for its access tokens) on
    one UTC day: how many were accepted and how many refused (``storefront.access.usage``
    says which is which). Only ever added to, by ``persistence.usage.add_counts``."""

    __tablename__ = "usage_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    accepted: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refused: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
