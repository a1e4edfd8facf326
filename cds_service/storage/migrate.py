"""Versioned schema migrations (Alembic, in migrations/versions/): run once per deploy, by
`cds-service migrate` (or at start-up, where CDS_DB_SCHEMA=migrate, the development default).

Each upgrade runs in one transaction that holds a lock (an advisory lock on PostgreSQL, the write
lock on SQLite), so instances started together migrate one after the other. A database made by an
earlier version of the service, before migrations existed, is stamped at the baseline first."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import Database

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
LOCK_KEY = 0x6364735F736368  # pg_advisory_xact_lock key of the service's migrations ("cds_sch")


class SchemaError(RuntimeError):
    pass


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


def current(db: Database) -> str | None:
    with db.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> str:
    """Bring the schema to `revision` (default: the newest); returns the revision it is at."""
    cfg = config()
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        cfg.attributes["connection"] = conn
        tables = set(sa.inspect(conn).get_table_names())
        if "alembic_version" not in tables and "cds_hook_calls" in tables:
            command.stamp(cfg, BASELINE)  # tables created before migrations existed
        command.upgrade(cfg, revision)
        return MigrationContext.configure(conn).get_current_revision()


def check(db: Database) -> None:
    """Raise SchemaError unless the schema is at the newest revision."""
    found, wanted = current(db), head()
    if found != wanted:
        raise SchemaError(f"the database schema is at revision {found or 'none'}, this version needs {wanted}: "
                          "run `cds-service migrate` once (with the same CDS_DATABASE_URL)")
