"""The databases storage tests run on: SQLite always, PostgreSQL when CDS_TEST_POSTGRES_URL is set
(e.g. postgresql+psycopg://cds:cds@127.0.0.1:5433/cds, as .ci/postgres.sh starts it). The service's
tables and Alembic's version table are dropped before and after each PostgreSQL test."""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from cds_service import storage

PG_URL = os.environ.get("CDS_TEST_POSTGRES_URL")


def drop_tables(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        storage.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG_URL, reason="CDS_TEST_POSTGRES_URL is not set"))])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cds.db'}"
        return
    drop_tables(PG_URL)
    yield PG_URL
    drop_tables(PG_URL)
