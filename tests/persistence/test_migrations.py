"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.command import downgrade
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from persistence.migrate import MIGRATIONS, alembic_config, upgrade
from persistence.models import COUNT_TRIGGERS, FTS_TABLES, FTS_TRIGGERS, Base, modelled
from persistence.products import list_products
from persistence.revisions import head_revision
from tests.conftest import RUN_ID, postgres_admin, postgres_database_url
from tests.helpers import in_transaction

EXPRESSION_INDEXES = {"uq_users_email_lower", "ix_products_category_lower_id"}
#: PostgreSQL's trigram indexes (migration 0003); SQLite has the FTS5 table instead.
TRIGRAM_INDEXES = {"ix_products_name_lower_trgm", "ix_products_description_lower_trgm"}
#: The columns of migration 0015 (a client's public keys), which a database before it lacks.
COLUMNS_OF_0015 = {("clients", "jwks"), ("clients", "jwks_uri")}
#: Tables of the migrations after 0004, which a database at 0004 lacks as well.
TABLES_AFTER_0004 = {
    "secret_fingerprints",
    "idempotency_keys",
    "revoked_tokens",
    "signing_keys",
    "usage_days",
}
#: Tables of the migrations after 0012 (usage per day), which the older databases lack too.
TABLES_AFTER_0012 = {"usage_days"}


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"sf_{RUN_ID}_migrations"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_database_url(name)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _inspect(connection: Connection) -> tuple[list[Any], set[str], str]:
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes; they are checked by name instead.
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": modelled}
        )
        diff = compare_metadata(context, Base.metadata)
    if connection.dialect.name == "sqlite":
        query = "select name from sqlite_master where type = 'index'"
    else:
        query = "select indexname from pg_indexes where schemaname = 'public'"
    indexes = {row[0] for row in connection.execute(text(query))}
    version = connection.execute(text("select version_num from alembic_version")).scalar_one()
    return diff, indexes, version


def inspect(url: str) -> tuple[list[Any], set[str], str]:
    return in_transaction(url, _inspect)


def _ignorable(change: Any) -> bool:
    # PostgreSQL reflects lower(email) back as lower((email)::text): the same index, which
    # autogenerate reports as removed and added. The names are checked separately.
    return (
        isinstance(change, tuple)
        and change[0] in {"add_index", "remove_index"}
        and change[1].name in EXPRESSION_INDEXES | TRIGRAM_INDEXES
    )


def expected_indexes(backend: str) -> set[str]:
    return EXPRESSION_INDEXES | (TRIGRAM_INDEXES if backend == "postgresql" else set())


def test_migrated_schema_matches_the_models(backend: str, empty_database: str) -> None:
    upgrade(empty_database)
    diff, indexes, version = inspect(empty_database)
    assert [change for change in diff if not _ignorable(change)] == []
    assert indexes >= expected_indexes(backend)
    assert version == head_revision()


def search_objects(url: str) -> set[str]:
    """The names of migration 0003's objects outside the models: on SQLite the FTS5 table
    and its triggers, on PostgreSQL the trigram indexes and pg_trgm."""

    def names(connection: Connection) -> set[str]:
        if connection.dialect.name == "sqlite":
            query = (
                "select name from sqlite_master where type in ('table', 'trigger') "
                "and name like 'products_fts%'"
            )
        else:
            query = (
                "select indexname from pg_indexes where indexname like '%trgm' "
                "union all select extname from pg_extension where extname = 'pg_trgm'"
            )
        return {row[0] for row in connection.execute(text(query))}

    return in_transaction(url, names)


def test_search_index_objects(backend: str, empty_database: str) -> None:
    upgrade(empty_database)
    if backend == "sqlite":
        assert search_objects(empty_database) >= {*FTS_TABLES, *FTS_TRIGGERS}
    else:
        assert search_objects(empty_database) == {*TRIGRAM_INDEXES, "pg_trgm"}


def _insert_products(connection: Connection) -> None:
    connection.execute(
        text(
            "insert into products (id, name, description, price, category) values "
            "('prod_a', 'Gadget Pro', 'Shiny.', 1, 'Electronics'), "
            "('prod_b', 'Mug', 'Holds a GADGET.', 2, 'Kitchen'), "
            "('prod_c', 'Sock', 'Warm.', 3, 'Apparel')"
        )
    )


def _search(connection: Connection) -> list[str]:
    page = list_products(connection, search="gadget", limit=10)
    return [row.id for row in page.rows]


def test_downgrade_and_upgrade_again_on_a_filled_catalogue(
    backend: str, empty_database: str
) -> None:
    """0003 indexes the products that are already there, and goes away cleanly."""
    upgrade(empty_database, "0002")
    in_transaction(empty_database, _insert_products)
    upgrade(empty_database)
    assert in_transaction(empty_database, _search) == ["prod_a", "prod_b"]

    downgrade(alembic_config(empty_database), "0002")
    diff, indexes, version = inspect(empty_database)
    assert version == "0002"
    assert "ix_products_category_lower" in indexes
    assert not indexes & (EXPRESSION_INDEXES - {"uq_users_email_lower"} | TRIGRAM_INDEXES)
    # pg_trgm is left installed: other objects of the database may use it.
    assert search_objects(empty_database) <= {"pg_trgm"}

    upgrade(empty_database)
    diff, indexes, version = inspect(empty_database)
    assert [change for change in diff if not _ignorable(change)] == []
    assert indexes >= expected_indexes(backend)
    assert in_transaction(empty_database, _search) == ["prod_a", "prod_b"]


def test_upgrade_is_idempotent(empty_database: str) -> None:
    upgrade(empty_database)
    upgrade(empty_database)
    assert inspect(empty_database)[2] == head_revision()


def test_0004_counts_what_is_there_and_goes_away_cleanly(empty_database: str) -> None:
    upgrade(empty_database, "0003")
    in_transaction(empty_database, _insert_products)
    upgrade(empty_database)

    def counts(connection: Connection) -> tuple[list[Any], list[Any]]:
        tables = connection.execute(text("select table_name, total from table_counts"))
        categories = connection.execute(text("select category, products from category_counts"))
        return sorted(tables.all()), sorted(categories.all())

    assert in_transaction(empty_database, counts) == (
        [("products", 3), ("users", 0)],
        [("apparel", 1), ("electronics", 1), ("kitchen", 1)],
    )
    assert in_transaction(empty_database, _triggers) >= set(COUNT_TRIGGERS)
    downgrade(alembic_config(empty_database), "0003")
    assert not in_transaction(empty_database, _triggers) & set(COUNT_TRIGGERS)
    diff, _, version = inspect(empty_database)
    assert version == "0003"
    added = {change[1].name for change in diff if change[0] == "add_table"}
    assert added - TABLES_AFTER_0004 == {"table_counts", "category_counts"}
    # Writes work without the counters (no trigger is left behind to miss its table) ...
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text("insert into products values ('prod_d', 'Dish', '', 4, 'Kitchen')")
        ),
    )
    # ... and the next upgrade counts them.
    upgrade(empty_database)
    assert in_transaction(empty_database, counts)[0] == [("products", 4), ("users", 0)]


def _triggers(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        query = "select name from sqlite_master where type = 'trigger'"
    else:
        query = "select tgname from pg_trigger where not tgisinternal"
    return {row[0] for row in connection.execute(text(query))}


def test_0005_keeps_fingerprints_and_goes_away_cleanly(empty_database: str) -> None:
    upgrade(empty_database)
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into secret_fingerprints (name, fingerprint, recorded_at) "
                "values ('pepper', :fingerprint, CURRENT_TIMESTAMP)"
            ),
            {"fingerprint": "ab" * 32},
        ),
    )
    downgrade(alembic_config(empty_database), "0004")
    diff, _, version = inspect(empty_database)
    assert version == "0004"
    assert {change[1].name for change in diff if change[0] == "add_table"} == TABLES_AFTER_0004
    # Upgraded again, it starts empty: the next start records the secrets it has.
    upgrade(empty_database)
    assert (
        in_transaction(
            empty_database,
            lambda connection: connection.execute(
                text("select count(*) from secret_fingerprints")
            ).scalar_one(),
        )
        == 0
    )


def test_0007_versions_existing_users_and_goes_away_cleanly(empty_database: str) -> None:
    upgrade(empty_database, "0006")
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into users (id, name, email, password_hash, created_at) values "
                "('user_0123456789ab', 'Ada', 'ada@example.com', 'x', '2026-01-01 00:00:00')"
            )
        ),
    )
    upgrade(empty_database)

    def versions(connection: Connection) -> list[Any]:
        return connection.execute(text("select id, version from users")).all()

    assert in_transaction(empty_database, versions) == [("user_0123456789ab", 1)]
    downgrade(alembic_config(empty_database), "0006")
    diff, indexes, version = inspect(empty_database)
    assert version == "0006"
    assert "ix_idempotency_keys_expires_at" not in indexes
    # The users table was altered in place: its counting triggers are still there.
    assert in_transaction(empty_database, _triggers) >= set(COUNT_TRIGGERS)
    assert {change[0] for change in diff} >= {"add_table", "add_column"}


def test_0008_revoked_tokens_go_away_cleanly(empty_database: str) -> None:
    upgrade(empty_database)
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into revoked_tokens (jti, client_id, expires_at, revoked_at) "
                "values ('j1', 'cli_a', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        ),
    )
    downgrade(alembic_config(empty_database), "0007")
    diff, _, version = inspect(empty_database)
    assert version == "0007"
    added = sorted(change[1].name for change in diff if change[0] == "add_table")
    assert [name for name in added if name not in TABLES_AFTER_0012] == [
        "revoked_tokens",
        "signing_keys",
    ]
    upgrade(empty_database)
    assert inspect(empty_database)[0] == []  # the index is back with the table


def _signing_keys(connection: Connection) -> list[Any]:
    return connection.execute(text("select kid, algorithm, private_key from signing_keys")).all()


def test_0009_leaves_a_placeholder_only_where_tokens_may_be_outstanding(
    empty_database: str,
) -> None:
    upgrade(empty_database, "0008")
    upgrade(empty_database, "0009")
    # No client, no token: the first start makes a key of STOREFRONT_JWT_ALGORITHM.
    assert in_transaction(empty_database, _signing_keys) == []
    downgrade(alembic_config(empty_database), "0008")
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at) values "
                "('cli_0123456789ab', 'old', :digest, 'read', '2026-01-01 00:00:00')"
            ),
            {"digest": "ab" * 32},
        ),
    )
    upgrade(empty_database, "0009")
    # Clients: their tokens were signed with the key derived from the secret, HS256 unless
    # configured; the first process holding the secret replaces the placeholder with it.
    assert in_transaction(empty_database, _signing_keys) == [("derived-from-secret", "HS256", None)]
    downgrade(alembic_config(empty_database), "0008")
    diff, _, version = inspect(empty_database)
    assert version == "0008"
    added = [change[1].name for change in diff if change[0] == "add_table"]
    assert [name for name in added if name not in TABLES_AFTER_0012] == ["signing_keys"]


def test_0010_leaves_existing_credentials_as_they_were_and_goes_away_cleanly(
    empty_database: str,
) -> None:
    before = "0010-1"  # whatever precedes it
    upgrade(empty_database, before)
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at) values "
                "('cli_a', 'a', :digest, 'read', CURRENT_TIMESTAMP)"
            ),
            {"digest": "ab" * 32},
        ),
    )
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into api_keys (id, client_id, digest, created_at) values "
                "('key_a', 'cli_a', :digest, CURRENT_TIMESTAMP)"
            ),
            {"digest": "cd" * 32},
        ),
    )
    upgrade(empty_database, "0010")

    def lifecycle_columns(connection: Connection) -> list[Any]:
        return [
            *connection.execute(text("select prefix, expires_at, last_used_at from api_keys")),
            *connection.execute(
                text("select previous_secret_digest, previous_secret_expires_at from clients")
            ),
        ]

    # A key made before has no prefix (its key was never stored), no expiry, no recorded use.
    assert in_transaction(empty_database, lifecycle_columns) == [
        (None, None, None),
        (None, None),
    ]
    downgrade(alembic_config(empty_database), before)
    diff, _, _ = inspect(empty_database)
    # Less the later migrations' changes to other tables.
    diff = [change for change in diff if change[0] == "add_column"]
    diff = [change for change in diff if change[2] in {"api_keys", "clients"}]
    diff = [change for change in diff if (change[2], change[3].name) not in COLUMNS_OF_0015]
    diff = [change for change in diff if (change[2], change[3].name) not in ADDED_BY_0013]
    later = {("clients", "require_dpop")}  # 0016's
    assert sorted(
        (change[2], change[3].name) for change in diff if (change[2], change[3].name) not in later
    ) == [
        ("api_keys", "expires_at"),
        ("api_keys", "last_used_at"),
        ("api_keys", "prefix"),
        ("clients", "previous_secret_digest"),
        ("clients", "previous_secret_expires_at"),
    ]
    # The rows are kept, with the key still pointing at its client.
    rows = in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text("select k.id, c.id from api_keys k join clients c on c.id = k.client_id")
        ).all(),
    )
    assert rows == [("key_a", "cli_a")]
    upgrade(empty_database)
    assert [change for change in inspect(empty_database)[0] if not _ignorable(change)] == []


#: The columns migration 0013 adds to the tables of 0010.
ADDED_BY_0013 = {
    ("clients", "rate_limits"),
    *(("api_keys", name) for name in ("rate_limits", "uses", "uses_refill")),
    *(("api_keys", name) for name in ("uses_spent", "uses_period")),
}


def test_0013_keeps_a_clients_limit_and_takes_the_first_of_several_back_down(
    empty_database: str,
) -> None:
    upgrade(empty_database, "0012")
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at, rate_limit) "
                "values ('cli_a', 'a', :digest, 'read', CURRENT_TIMESTAMP, '5/minute')"
            ),
            {"digest": "ab" * 32},
        ),
    )
    upgrade(empty_database, "0013")

    def limits(connection: Connection) -> list[Any]:
        return connection.execute(text("select rate_limits from clients")).all()

    assert in_transaction(empty_database, limits) == [("5/minute",)]
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text("update clients set rate_limits = '7/minute;900/day'")
        ),
    )
    downgrade(alembic_config(empty_database), "0012")
    assert in_transaction(
        empty_database,
        lambda connection: connection.execute(text("select rate_limit from clients")).all(),
    ) == [("7/minute",)]
    upgrade(empty_database)
    assert [change for change in inspect(empty_database)[0] if not _ignorable(change)] == []


def _stored_responses(connection: Connection) -> list[Any]:
    return connection.execute(
        text("select key, status, body, resource_id from idempotency_keys order by key")
    ).all()


def test_0011_forgets_the_stored_responses_of_users_already_deleted(
    empty_database: str,
) -> None:
    upgrade(empty_database, "0010")
    kept = '{"id": "user_kept00000000", "name": "Ada", "email": "ada@example.com"}'
    deleted = '{"id": "user_gone00000000", "name": "Bob", "email": "bob@example.com"}'

    def fill(connection: Connection) -> None:
        connection.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at) values "
                "('cli_a', 'a', :digest, 'write', CURRENT_TIMESTAMP)"
            ),
            {"digest": "ab" * 32},
        )
        connection.execute(
            text(
                "insert into users (id, name, email, password_hash, created_at) values "
                "('user_kept00000000', 'Ada', 'ada@example.com', 'x', CURRENT_TIMESTAMP)"
            )
        )
        for key, status, body in (("k1", 201, kept), ("k2", 201, deleted), ("k3", None, None)):
            connection.execute(
                text(
                    "insert into idempotency_keys (client_id, operation, key, fingerprint, "
                    "status, headers, body, created_at, expires_at) values ('cli_a', "
                    "'create_user', :key, 'f', :status, '{}', :body, CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"
                ),
                {"key": key, "status": status, "body": body},
            )

    in_transaction(empty_database, fill)
    upgrade(empty_database, "0011")
    assert in_transaction(empty_database, _stored_responses) == [
        ("k1", 201, kept, "user_kept00000000"),
        ("k2", 410, None, "user_gone00000000"),  # Bob's name and email are gone
        ("k3", None, None, None),  # still running: nothing stored yet
    ]
    downgrade(alembic_config(empty_database), "0010")
    rows = in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text("select key, status, body from idempotency_keys order by key")
        ).all(),
    )
    assert rows == [("k1", 201, kept), ("k3", None, None)]
    _, indexes, version = inspect(empty_database)
    assert version == "0010"
    assert "ix_idempotency_keys_resource_id" not in indexes
    upgrade(empty_database)
    assert [change for change in inspect(empty_database)[0] if not _ignorable(change)] == []


def test_0015_leaves_existing_clients_with_their_secret_and_goes_away_cleanly(
    empty_database: str,
) -> None:
    before = "0015-1"  # whatever precedes it
    upgrade(empty_database, before)
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at) values "
                "('cli_a', 'a', :digest, 'read', CURRENT_TIMESTAMP)"
            ),
            {"digest": "ab" * 32},
        ),
    )
    upgrade(empty_database, "0015")

    def client_columns(connection: Connection) -> list[Any]:
        query = "select secret_digest, jwks, jwks_uri from clients"
        return list(connection.execute(text(query)))

    assert in_transaction(empty_database, client_columns) == [("ab" * 32, None, None)]
    downgrade(alembic_config(empty_database), before)
    diff, _, _ = inspect(empty_database)
    added = [
        (change[2], change[3].name)
        for change in diff
        if change[0] == "add_column" and change[2] == "clients"
    ]
    assert set(added) >= COLUMNS_OF_0015


def test_0016_requires_dpop_of_no_existing_client_and_goes_away_cleanly(
    empty_database: str,
) -> None:
    before = "0016-1"  # whatever precedes it
    upgrade(empty_database, before)
    in_transaction(
        empty_database,
        lambda connection: connection.execute(
            text(
                "insert into clients (id, name, secret_digest, scopes, created_at) values "
                "('cli_a', 'a', :digest, 'read', CURRENT_TIMESTAMP)"
            ),
            {"digest": "ab" * 32},
        ),
    )
    upgrade(empty_database, "0016")
    rows = in_transaction(
        empty_database,
        lambda connection: connection.execute(text("select id, require_dpop from clients")).all(),
    )
    assert rows == [("cli_a", False)]
    downgrade(alembic_config(empty_database), before)
    diff, _, version = inspect(empty_database)
    assert version == "0015"
    added = [(c[2], c[3].name) for c in diff if c[0] == "add_column" and c[2] == "clients"]
    assert added == [("clients", "require_dpop")]
    assert in_transaction(
        empty_database, lambda connection: connection.execute(text("select id from clients")).all()
    ) == [("cli_a",)]


def test_the_head_read_without_alembic_is_alembics() -> None:
    """/readyz reads the head from the files (persistence.revisions), not through Alembic."""
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert (
        head_revision()
        == sorted(p.name for p in (MIGRATIONS / "versions").glob("0*.py"))[-1].split("_")[0]
    )
