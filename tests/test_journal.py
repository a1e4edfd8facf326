"""The audit journal and its chain, on SQLite and PostgreSQL: a killed process's file replayed once,
the disk budget, feedback kept while the database is down, and `cds-service audit verify` finding a
row changed, deleted or moved by hand."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service import cli, storage
from cds_service.cards import IssuedCard
from cds_service.storage import journal as journal_module

from databases import url  # noqa: F401  (the url fixture: SQLite, and PostgreSQL when configured)

SVC = "acr-all-staging-order-select"
EHR = "https://ehr.example.org"
RELEASE = "1.1.0+0123456789ab"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(url):
    s = storage.Store(url)
    yield s
    s.close()


def submit(journal, instance: str, *cards: IssuedCard, status: int = 200, issuer: str = "") -> None:
    journal.submit(service_id=SVC, hook_instance=instance, status=status, latency_ms=3.14159,
                   data_source="prefetch", cards=cards, issuer=issuer)


def card(uid: str) -> IssuedCard:
    return IssuedCard(uid, "sr-1", "v1/ct-chest", "warning", "not-appropriate", (f"s-{uid}",))


def instances(store) -> list[str]:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(storage.hook_calls.c.hook_instance)
                            .order_by(storage.hook_calls.c.id)).scalars().all()


def verify(url: str, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = cli.main(["audit", "verify", "--database-url", url])
    return status, capsys.readouterr().out.splitlines()


def test_a_killed_process_journal_is_replayed_once_by_the_next(store, url, tmp_path, capsys):
    directory = tmp_path / "journal"
    # A process journals three calls while the database refuses them, then is killed with SIGKILL.
    script = textwrap.dedent(f"""
        import os, signal
        from sqlalchemy.exc import OperationalError
        from cds_service.storage import Journal
        class Down:
            def write_journal(self, records):
                raise OperationalError("INSERT", {{}}, Exception("the database is down"))
        journal = Journal(Down(), {str(directory)!r})
        for n in range(3):
            journal.submit(service_id={SVC!r}, hook_instance=f"killed-{{n}}", status=200, latency_ms=1.5,
                           data_source="prefetch", cards=())
        journal.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", script], cwd=ROOT).returncode == -9
    [left] = directory.glob("*.jsonl")
    copy = left.read_bytes()
    assert instances(store) == []

    journal = storage.Journal(store, directory)
    assert journal.replay() == 3
    assert instances(store) == ["killed-0", "killed-1", "killed-2"]
    assert not list(directory.glob("*.jsonl"))
    left.write_bytes(copy)  # the same file replayed again (a replay cut short): nothing twice
    assert journal.replay() == 3
    assert instances(store) == ["killed-0", "killed-1", "killed-2"]
    status, out = verify(url, capsys)
    assert status == 0 and "audit chain intact: 3 chained row(s) of 1 writer(s)" in out[0]


def test_a_live_process_journal_is_not_taken_by_another(store, tmp_path):
    directory = tmp_path / "journal"
    live = storage.Journal(storage.Store(f"sqlite:///{tmp_path / 'other.db'}"), directory)
    submit(live, "live-1")
    assert storage.Journal(store, directory).replay() == 0  # its lock is held
    assert instances(store) == []


def test_past_the_disk_budget_calls_are_counted_logged_and_the_gap_shows(store, url, tmp_path, capsys, caplog):
    from cds_service.observability import metrics_body
    journal = storage.Journal(store, tmp_path / "journal", max_bytes=500)
    dropped = journal_module.DROPPED.labels("call")._value.get()
    with caplog.at_level(logging.ERROR, "cds_service.storage"):
        for n in range(3):
            submit(journal, f"call-{n}")
    assert journal_module.DROPPED.labels("call")._value.get() == dropped + 2
    assert [r.message for r in caplog.records].count(next(r.message for r in caplog.records)) == 1  # once a minute
    assert "audit journal full" in caplog.records[0].message
    assert b"cds_audit_journal_dropped_total" in metrics_body()[0]
    journal.max_bytes = 1 << 20  # room again
    submit(journal, "call-3")
    assert journal.flush()
    assert instances(store) == ["call-0", "call-3"]
    status, out = verify(url, capsys)
    assert status == 1
    assert "missing before it: seq 2 to 3" in out[1]


def test_feedback_while_the_database_is_down_is_journaled_and_stored_when_it_is_back(store, tmp_path):
    journal = storage.Journal(store, tmp_path / "journal")
    submit(journal, "call-1", card("c-1"))
    working = store.engine
    store.engine = sa.create_engine("postgresql+psycopg://cds:cds@127.0.0.1:9/cds")  # nothing listens on port 9
    entries = [{"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14Z",
                "overrideReason": {"reason": {"code": "protocol"}, "userComment": "per protocol"}},
               {"card": "c-1", "outcome": "bogus"}]
    counts = journal.store_feedback(SVC, entries)
    assert counts == {"stored": 0, "duplicates": 0, "unknown_cards": 0, "rejected": 1, "journaled": 1}
    assert "per protocol" not in "".join(p.read_text() for p in (tmp_path / "journal").glob("*.jsonl"))
    store.engine = working
    assert journal.flush()
    assert journal.store_feedback(SVC, entries[:1])["duplicates"] == 1  # it was stored once
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(storage.feedback)).mappings().all()
    assert [(r["card_uuid"], r["matched"], r["reason_code"], r["has_comment"]) for r in rows] == [
        ("c-1", True, "protocol", True)]


def test_journaled_feedback_is_stored_only_for_cards_issued_to_its_sender(store, tmp_path):
    journal = storage.Journal(store, tmp_path / "journal")
    submit(journal, "call-1", card("c-1"), issuer=EHR)
    assert journal.flush()
    working = store.engine
    store.engine = sa.create_engine("postgresql+psycopg://cds:cds@127.0.0.1:9/cds")  # nothing listens on port 9
    entry = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14Z"}
    for issuer, when in (("https://other-ehr.example.org", "2026-11-23T18:14:14Z"), ("", "2026-11-23T18:15:14Z"),
                         (EHR, "2026-11-23T18:16:14Z")):
        assert journal.store_feedback(SVC, [{**entry, "outcomeTimestamp": when}], issuer)["journaled"] == 1
    store.engine = working
    assert journal.flush()
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(storage.feedback.c.card_uuid, storage.feedback.c.outcome_at)).all()
    assert [(c, at.minute) for c, at in stored] == [("c-1", 16)]  # the card's own EHR only


@pytest.fixture
def chained(store, url, tmp_path):
    """Five calls with a card each, written through the journal; a copy of the database for SQLite."""
    journal = storage.Journal(store, tmp_path / "journal", knowledge_version=RELEASE)
    for n in range(5):
        submit(journal, f"call-{n}", card(f"card-{n}"), status=200 if n != 2 else 412, issuer=EHR)
    assert journal.flush()
    if url.startswith("sqlite"):
        copy = tmp_path / "copy.db"
        store.engine.dispose()
        shutil.copy(tmp_path / "cds.db", copy)
        return f"sqlite:///{copy}"
    return url  # PostgreSQL: changed in place (its tables are dropped after the test)


def change(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_verify_finds_a_row_changed_by_hand(chained, url, capsys):
    assert verify(chained, capsys)[0] == 0
    change(chained, "UPDATE cds_hook_calls SET status = 200 WHERE hook_instance = 'call-2'")
    status, out = verify(chained, capsys)
    assert status == 1 and "seq 3)" in out[1] and "altered" in out[1]
    if url.startswith("sqlite"):
        assert verify(url, capsys)[0] == 0  # the original is intact


def test_the_rows_carry_the_knowledge_release_and_the_issuer(chained):
    engine = sa.create_engine(chained)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(storage.hook_calls.c.knowledge_version, storage.hook_calls.c.issuer)).all()
    engine.dispose()
    assert rows == [(RELEASE, EHR)] * 5


@pytest.mark.parametrize("column, value", [("knowledge_version", "9.9.9+000000000000"),
                                           ("issuer", "https://other-ehr.example.org")])
def test_verify_finds_the_release_or_the_issuer_changed_by_hand(chained, capsys, column, value):
    change(chained, f"UPDATE cds_hook_calls SET {column} = '{value}' WHERE hook_instance = 'call-3'")
    status, out = verify(chained, capsys)
    assert status == 1 and "seq 4)" in out[1] and "altered" in out[1]


def test_verify_finds_a_card_changed_by_hand(chained, capsys):
    change(chained, "UPDATE cds_issued_cards SET rating = 'appropriate' WHERE card_uuid = 'card-4'")
    status, out = verify(chained, capsys)
    assert status == 1 and "seq 5)" in out[1] and "altered" in out[1]


def test_verify_finds_a_row_deleted_by_hand(chained, capsys):
    change(chained, "DELETE FROM cds_issued_cards WHERE card_uuid = 'card-1'",
           "DELETE FROM cds_hook_calls WHERE hook_instance = 'call-1'")
    status, out = verify(chained, capsys)
    assert status == 1 and "seq 3)" in out[1] and "missing before it: seq 2 to 2" in out[1]


def test_verify_finds_rows_swapped_by_hand(chained, capsys):
    change(chained, "UPDATE cds_hook_calls SET seq = -1 WHERE hook_instance = 'call-1'",
           "UPDATE cds_hook_calls SET seq = 2 WHERE hook_instance = 'call-2'",
           "UPDATE cds_hook_calls SET seq = 3 WHERE seq = -1")
    status, out = verify(chained, capsys)
    assert status == 1 and "seq 2)" in out[1] and "reordered" in out[1]


def test_retention_deletes_what_is_past_its_period_and_the_chain_still_verifies(store, url, tmp_path, capsys):
    from datetime import timedelta
    now = storage.utcnow()
    journal = storage.Journal(store, tmp_path / "journal")
    for n, age in enumerate((timedelta(days=2200), timedelta(days=2191), timedelta(days=2189), timedelta(0))):
        journal.submit(service_id=SVC, hook_instance=f"call-{n}", status=200, latency_ms=1.0,
                       data_source="prefetch", cards=[card(f"card-{n}")], called_at=now - age)
    assert journal.flush()
    store.claim_jti("iss", "expired", now.timestamp() - 1)
    store.claim_jti("iss", "valid", now.timestamp() + 300)
    others = []
    retention = storage.Retention(store, 2190, [lambda at: others.append(at) or 5])
    assert retention.purge(now) == {"cds_hook_calls": 2, "cds_feedback": 0, "cds_jti_claims": 1, "other": 5}
    assert instances(store) == ["call-2", "call-3"]
    with store.engine.connect() as conn:
        assert set(conn.execute(sa.select(storage.issued_cards.c.card_uuid)).scalars()) == {"card-2", "card-3"}
        assert set(conn.execute(sa.select(storage.jti_claims.c.jti)).scalars()) == {"valid"}
    assert others == [now]
    status, out = verify(url, capsys)
    assert status == 0 and "2 chained row(s)" in out[0]  # the first row left starts its writer's chain


def test_audit_export_writes_one_valid_fhir_audit_event_per_call(store, url, tmp_path, capsys):
    import json
    from datetime import timedelta

    from fhir.resources.R4B.auditevent import AuditEvent
    journal = storage.Journal(store, tmp_path / "journal", knowledge_version=RELEASE)
    long_ago = storage.utcnow() - timedelta(days=30)
    journal.submit(service_id=SVC, hook_instance="old", status=200, latency_ms=1.0, data_source="prefetch",
                   cards=[], called_at=long_ago)
    submit(journal, "warned", card("card-1"), issuer=EHR)
    submit(journal, "refused", status=412)
    assert journal.flush()
    out = tmp_path / "audit.ndjson"
    since = (storage.utcnow() - timedelta(days=1)).date().isoformat()
    assert cli.main(["audit", "export", "--database-url", url, "--out", str(out), "--since", since,
                     "--base-url", "https://cds.hospital.example.org"]) == 0
    assert "2 AuditEvent(s) written" in capsys.readouterr().err
    events = [AuditEvent.model_validate(json.loads(line)) for line in out.read_text().splitlines()]
    warned, refused = events
    assert (warned.outcome, refused.outcome, refused.outcomeDesc) == ("0", "4", "HTTP 412")
    assert warned.type.code == "rest" and warned.action == "E"
    assert [a.requestor for a in warned.agent] == [True, False]
    assert warned.agent[1].who.identifier.value == f"https://cds.hospital.example.org/cds-services/{SVC}"
    assert warned.agent[0].who.identifier.value == EHR and refused.agent[0].who.identifier is None
    call, issued = warned.entity
    assert call.what.identifier.value == "warned"
    assert any(d.type == "auditChain" and "seq=2 " in d.valueString for d in call.detail)
    assert any(d.type == "knowledgeVersion" and d.valueString == RELEASE for d in call.detail)
    assert issued.what.identifier.value == "card-1" and issued.description == "v1/ct-chest"
    assert {(d.type, d.valueString) for d in issued.detail} >= {("indicator", "warning"), ("rating", "not-appropriate")}


def test_the_background_purge_runs_hourly_and_survives_a_database_that_is_down(store, tmp_path, caplog):
    from cds_service.storage import retention as retention_module
    store.claim_jti("iss", "expired", storage.utcnow().timestamp() - 1)
    retention = storage.Retention(store, 2190)
    retention.maybe_purge()  # not yet: the first purge waits a minute after start
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(storage.jti_claims)).scalar() == 1
    retention.next_at = 0.0
    retention.maybe_purge()
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(storage.jti_claims)).scalar() == 0
    assert retention.next_at > retention_module.time.monotonic() + retention_module.PURGE_SECONDS - 60
    working, retention.next_at = store.engine, 0.0
    store.engine = sa.create_engine("postgresql+psycopg://cds:cds@127.0.0.1:9/cds")  # nothing listens on port 9
    with caplog.at_level(logging.WARNING, "cds_service.storage"):
        retention.maybe_purge()
    store.engine = working
    assert "tried again in an hour" in caplog.text
