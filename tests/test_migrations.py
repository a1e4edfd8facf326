"""Versioned schema migrations: `cds-service migrate`, the baseline stamp of a pre-migration
database, the schema they build against the tables the code uses, and CDS_DB_SCHEMA=check.

PostgreSQL runs when CDS_TEST_POSTGRES_URL is set; its tables are dropped before and after."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cds_service import cli, config, create_app, storage
from cds_service.storage import migrate

from databases import url  # noqa: F401  (the url fixture: SQLite, and PostgreSQL when configured)


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_command_builds_the_schema_once(url, capsys):
    assert cli.main(["migrate", "--database-url", url]) == 0
    assert capsys.readouterr().out.strip() == f"database schema at revision {migrate.head()} (newest: {migrate.head()})"
    assert tables(url) >= {"cds_hook_calls", "cds_issued_cards", "cds_feedback", "cds_jti_claims", "alembic_version"}
    assert cli.main(["migrate", "--database-url", url]) == 0  # a second run changes nothing
    assert migrate.current(storage.Database(url)) == migrate.head()


def test_the_migrated_schema_is_the_one_the_code_uses(url):
    """No difference between the tables the migrations build and schema.py (columns, types, indexes)."""
    migrate.upgrade(storage.Database(url))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    storage.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_a_database_from_before_migrations_is_stamped_and_keeps_its_rows(url):
    # what earlier versions did at every start: the tables of the baseline only, with no version table
    migrate.upgrade(storage.Database(url), migrate.BASELINE)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(storage.jti_claims.insert(), {"issuer": "iss", "jti": "kept", "expires_at": 1e12})
    engine.dispose()
    store = storage.Store(url)
    assert migrate.current(store) == migrate.head()
    assert store.claim_jti("iss", "kept", 1e12) is False  # the row is still there: a replay
    store.close()


def test_instances_starting_together_migrate_one_after_the_other(url):
    def start(_):
        store = storage.Store(url)
        store.close()
        return migrate.current(store)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(start, range(4))) == [migrate.head()] * 4


def test_check_refuses_to_start_on_an_unmigrated_database_and_says_what_to_run(tmp_path):
    database = f"sqlite:///{tmp_path / 'cds.db'}"
    with pytest.raises(storage.SchemaError, match=rf"revision none, this version needs {migrate.head()}: run "
                                                 r"`cds-service migrate`"):
        create_app({"database_url": database, "db_schema": "check"})
    assert "cds_hook_calls" not in tables(database)
    assert cli.main(["migrate", "--database-url", database]) == 0
    app = create_app({"database_url": database, "db_schema": "check"})
    assert app.test_client().get("/ready").status_code == 200


def test_db_schema_setting_is_validated():
    with pytest.raises(config.ConfigError, match="CDS_DB_SCHEMA='sometimes': expected migrate or check"):
        config.from_env({"CDS_DB_SCHEMA": "sometimes"})
    assert config.from_env({}).db_schema == "migrate"


def test_production_never_migrates_at_start_unless_told_and_needs_its_database_url():
    production = {"CDS_ENV": "production", "CDS_PUBLIC_BASE_URL": "https://cds.example.org"}
    with pytest.raises(config.ConfigError, match="CDS_DATABASE_URL is required in production"):
        config.from_env(production)  # no SQLite file inside the container by default
    settings = config.from_env({**production, "CDS_DATABASE_URL": "postgresql+psycopg://app@db/cds"})
    assert settings.db_schema == "check"  # the migration Job (or `cds-service migrate`) changes the schema
    assert config.from_env({**production, "CDS_DATABASE_URL": "sqlite:///x.db", "CDS_DB_SCHEMA": "migrate"}) \
        .db_schema == "migrate"
