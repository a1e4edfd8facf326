"""JWT replay protection on the hook path (storage.ReplayGuard), on SQLite and PostgreSQL: shared across
instances while the database answers, in each process's memory while it is down or slow (counted,
logged once per outage), shared again when it is back."""
from __future__ import annotations

import logging
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from cds_service import storage
from cds_service.storage import jti as jti_module

from databases import url  # noqa: F401  (the url fixture: SQLite, and PostgreSQL when configured)

ISS = "https://ehr.example.org"


@pytest.fixture
def store(url):
    s = storage.Store(url)
    yield s
    s.close()


class Down:
    """The database refusing every claim (stopped, unreachable)."""

    def __init__(self):
        self.calls = 0

    def claim_jti(self, issuer, jti, expires_at):
        self.calls += 1
        raise OperationalError("INSERT", {}, Exception("connection refused"))


def later() -> float:
    return time.time() + 300


def test_a_jti_is_claimed_once_across_instances(store):
    one, other = storage.ReplayGuard(store.jti), storage.ReplayGuard(store.jti)
    assert one(ISS, "a", later()) is True
    assert one(ISS, "a", later()) is False     # replayed to the same process
    assert other(ISS, "a", later()) is False   # replayed to another instance
    assert other(ISS, "b", later()) is True


def test_a_slow_database_is_not_waited_for(store, caplog):
    release = threading.Event()

    class Slow:
        def claim_jti(self, *args):
            release.wait(5)  # the database answers only when the test lets it
            return store.jti.claim_jti(*args)
    guard = storage.ReplayGuard(Slow())
    before = jti_module.MEMORY_CLAIMS._value.get()
    with caplog.at_level(logging.WARNING, "cds_service.storage"):
        assert guard(ISS, "slow", later()) is True  # answered while the claim is still waiting
    assert not release.is_set()
    release.set()
    assert jti_module.MEMORY_CLAIMS._value.get() == before + 1
    assert "did not answer within 50 ms" in caplog.text


def test_while_the_database_is_down_claims_are_in_memory_and_shared_when_it_is_back(store, monkeypatch, caplog):
    monkeypatch.setattr(jti_module, "RETRY_SECONDS", 0.0)
    down = Down()
    guard = storage.ReplayGuard(down)
    before = jti_module.MEMORY_CLAIMS._value.get()
    with caplog.at_level(logging.WARNING, "cds_service.storage"):
        assert guard(ISS, "during-1", later()) is True
        assert guard(ISS, "during-2", later()) is True
        assert guard(ISS, "during-1", later()) is False  # this process still refuses a replay
    assert down.calls == 2 and jti_module.MEMORY_CLAIMS._value.get() == before + 2
    assert caplog.text.count("fall back to this process's memory") == 1  # once per outage

    guard.claims = store.jti  # the database is back
    with caplog.at_level(logging.WARNING, "cds_service.storage"):
        assert guard(ISS, "after", later()) is True
    assert "2 claim(s) made in memory are written now" in caplog.text
    for _ in range(100):  # written in the background
        if len(claimed(store)) == 3:
            break
        time.sleep(0.02)
    assert claimed(store) == {"during-1", "during-2", "after"}
    other = storage.ReplayGuard(store.jti)
    assert other(ISS, "during-1", later()) is False  # another instance refuses what was claimed in memory


def claimed(store) -> set[str]:
    with store.read() as conn:
        return set(conn.execute(sa.select(storage.jti_claims.c.jti)).scalars())
