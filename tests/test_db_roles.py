"""Least privilege on PostgreSQL (deploy/postgres/roles.sql, issue 20): the migration role builds the
schema; the service runs as the application role, which serves calls and feedback but cannot create,
alter, drop or truncate a table. Runs on a throw-away PostgreSQL server of its own (roles are global
to a server), where initdb is installed."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

from builders import SELECT, TODAY, hook_request, service_request, warning_cards
from cds_service import cli, create_app
from tokens import Client

ROOT = Path(__file__).resolve().parent.parent
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def as_postgres(*command: str, **options) -> subprocess.CompletedProcess:
    """Run a server command as the postgres user (initdb refuses root)."""
    if os.getuid() == 0:
        command = ("su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in command))
    return subprocess.run(command, check=True, capture_output=True, text=True, **options)


@pytest.fixture(scope="module")
def server():
    if not BIN or (os.getuid() == 0 and shutil.which("su") is None):
        pytest.skip("no PostgreSQL server binaries here")
    data = tempfile.mkdtemp(prefix="cds-roles-pg-")
    if os.getuid() == 0:
        shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg = BIN[-1]
    as_postgres(f"{pg}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
    as_postgres(f"{pg}/pg_ctl", "-D", data, "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                "-l", f"{data}/log", "-w", "start")
    try:
        admin = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE cds"))
        engine.dispose()
        yield port
    finally:
        as_postgres(f"{pg}/pg_ctl", "-D", data, "-m", "fast", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def roles(server):
    passwords = {"migrator_password": uuid.uuid4().hex, "app_password": uuid.uuid4().hex}
    variables = [arg for name, value in passwords.items() for arg in ("-v", f"{name}={value}")]
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(server), "-U", "postgres", "-d", "cds", "-q",
                    *variables, "-f", str(ROOT / "deploy" / "postgres" / "roles.sql")],
                   check=True, capture_output=True, text=True)
    base = f"127.0.0.1:{server}/cds"
    return (f"postgresql+psycopg://cds_migrator:{passwords['migrator_password']}@{base}",
            f"postgresql+psycopg://cds_app:{passwords['app_password']}@{base}")


def test_the_app_role_serves_but_cannot_change_the_schema(roles, tmp_path):
    migrator, app_url = roles
    assert cli.main(["migrate", "--database-url", migrator]) == 0
    trusted = Client(tmp_path)
    app = create_app({**trusted.config(tmp_path / "unused.db"), "database_url": app_url, "db_schema": "check",
                      "patient_hash_key": "k"})
    app.extensions["cds"].handler.today = lambda: TODAY
    client = app.test_client()
    path = f"/cds-services/{SELECT}"
    response = client.post(path, json=hook_request([service_request(code="71250")]),
                           headers=trusted.headers(f"http://localhost{path}"))
    [card] = warning_cards(response)
    app.extensions["cds"].audit.flush()
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                              "outcomeTimestamp": "2026-11-23T18:14:14Z"}]}
    assert client.post(f"{path}/feedback", json=feedback,
                       headers=trusted.headers(f"http://localhost{path}/feedback")).status_code == 200

    engine = sa.create_engine(app_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM cds_feedback")).scalar() == 1
        for statement in ("DROP TABLE cds_hook_calls", "ALTER TABLE cds_hook_calls ADD COLUMN x int",
                          "TRUNCATE cds_hook_calls", "CREATE TABLE cds.x (id int)", "CREATE TABLE public.x (id int)",
                          "DROP SCHEMA cds CASCADE", "ALTER TABLE cds_feedback DROP CONSTRAINT uq_cds_feedback_entry"):
            with engine.connect() as conn, pytest.raises(ProgrammingError, match="permission denied|must be owner"):
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
