"""The database: one SQLAlchemy engine, SQLite (the default: a file in the Flask instance folder) or
PostgreSQL (`postgresql+psycopg://...`), and its read and write transactions."""
from __future__ import annotations

import logging
import os
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

log = logging.getLogger("cds_service.storage")

BUSY_TIMEOUT_MS = 5000
POOL_TIMEOUT = 5        # seconds a thread waits for one of the pool's PostgreSQL connections
CHUNK = 500             # ids per IN (...) lookup, rows per INSERT


def is_transient(exc: OperationalError) -> bool:
    """A deadlock, serialization failure or a locked SQLite file: worth retrying the transaction."""
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


_background: tuple[int, ThreadPoolExecutor] | None = None


def background() -> ThreadPoolExecutor:
    """This process's threads for database work that a request waits for a bounded time only
    (a fork leaves the threads behind: a child makes its own)."""
    global _background
    if _background is None or _background[0] != os.getpid():
        _background = (os.getpid(), ThreadPoolExecutor(8, thread_name_prefix="cds-db"))
    return _background[1]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_url(instance_path: str) -> str:
    """SQLite file cds.db in the (created if need be) Flask instance folder."""
    os.makedirs(instance_path, exist_ok=True)
    return sa.URL.create("sqlite", database=os.path.join(os.path.abspath(instance_path), "cds.db")) \
        .render_as_string()


class Database:
    def __init__(self, url: str, pool_size: int = 4):
        """pool_size: the most PostgreSQL connections this process opens (CDS_DB_POOL_SIZE; no overflow),
        whatever the load: the deployment's total is then workers x pool_size per instance."""
        self.url = make_url(url)
        self.pool_size = pool_size
        self.dialect = self.url.get_backend_name()
        self.insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(self.dialect)
        if self.insert is None:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql+psycopg")
        self.engine = self._engine()
        # No pooled connection may be shared with a forked child (gunicorn --preload): the child drops
        # the parent's, and whoever opens connections before a fork disposes of them (Store does).
        ref = weakref.ref(self.engine)
        os.register_at_fork(after_in_child=lambda: (e := ref()) is not None and e.dispose(close=False))

    def _engine(self) -> Engine:
        if self.dialect == "sqlite":
            memory = self.url.database in (None, "", ":memory:")
            # hide_parameters: a database error in the log never shows the ids it was writing
            options: dict[str, Any] = {"connect_args": {"check_same_thread": False}, "hide_parameters": True}
            if memory:
                options["poolclass"] = sa.pool.StaticPool
            else:
                options.update(pool_size=8, max_overflow=16)
            engine = sa.create_engine(self.url, **options)

            @event.listens_for(engine, "connect")
            def on_connect(dbapi_connection, _record):
                dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
                cursor.close()

            @event.listens_for(engine, "begin")
            def on_begin(conn: Connection):
                # Writers take the lock up front: a deferred transaction that reads and then writes can
                # fail at once with SQLITE_BUSY (busy_timeout does not apply to a lock upgrade in WAL).
                conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("cds_read") else
                                     "BEGIN IMMEDIATE")
            return engine
        connect_args = {} if "connect_timeout" in self.url.query else {"connect_timeout": 5}
        return sa.create_engine(self.url, pool_pre_ping=True, pool_size=self.pool_size, max_overflow=0,
                                pool_timeout=POOL_TIMEOUT, connect_args=connect_args, hide_parameters=True)

    def write(self, work, *args, fast: bool = False):
        """Run work(conn, *args) in one write transaction, retrying deadlocks and lock timeouts.
        fast: one attempt, and on PostgreSQL the commit does not wait for the WAL to reach the disk
        (what a crash of the database server then loses is a fraction of a second of such writes)."""
        for attempt in range(4):
            try:
                with self.engine.begin() as conn:
                    if fast and self.dialect == "postgresql":
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    return work(conn, *args)
            except OperationalError as exc:
                if fast or attempt == 3 or not is_transient(exc):
                    raise
                time.sleep(0.02 * (attempt + 1))

    def read(self) -> Connection:
        return self.engine.connect().execution_options(cds_read=True)

    def ping(self) -> bool:
        try:
            with self.read() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            log.warning("database unreachable", exc_info=True)
            return False

    def close(self) -> None:
        self.engine.dispose()
