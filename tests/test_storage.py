"""Storage: the hook-call audit, feedback, jti replay protection and the report, on SQLite and PostgreSQL.

PostgreSQL runs when CDS_TEST_POSTGRES_URL is set (e.g. postgresql+psycopg://cds:cds@127.0.0.1:5433/cds);
its cds_* tables and Alembic's version table are dropped before and after each test."""
from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from flask import Flask

from cds_service import cli, storage
from cds_service.cards import IssuedCard
from cds_service.storage import Store, default_url, format_report, parse_timestamp

from databases import url  # noqa: F401  (the url fixture: SQLite, and PostgreSQL when configured)
SVC = "acr-all-staging-order-select"
OVERRIDE = "http://example.org/override"
T0 = "2026-11-23T18:14:14.309Z"


@pytest.fixture
def store(url):
    s = Store(url)
    yield s
    s.close()


def rows(store: Store, table: sa.Table) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def card(uid: str, rule: str = "v1/ct-chest", indicator: str = "warning", rating: str | None = "not-appropriate",
         order_id: str | None = "sr-1", suggestions: tuple[str, ...] = ()) -> IssuedCard:
    return IssuedCard(uid, order_id, rule, indicator, rating, suggestions)


def call(store: Store, *cards: IssuedCard, status: int = 200, instance: str | None = None) -> None:
    store.record_call(service_id=SVC, hook_instance=instance or str(uuid.uuid4()), status=status,
                      latency_ms=12.5, data_source="prefetch", cards=cards)


# The shapes the CDS Hooks Sandbox sends (reference 12.8).
def accepted(card_id: str, suggestion: str, ts: str = T0) -> dict:
    return {"card": card_id, "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion}],
            "outcomeTimestamp": ts}


def dismissed(card_id: str, ts: str = T0, reason: str | None = None) -> dict:
    entry = {"card": card_id, "outcome": "overridden", "outcomeTimestamp": ts}
    if reason:
        entry["overrideReason"] = {"reason": {"code": reason, "system": OVERRIDE}}
    return entry


# -- the database ---------------------------------------------------------------------------------
def test_sqlite_pragmas(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'cds.db'}")
    with store.engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 1000
    assert set(sa.inspect(store.engine).get_table_names()) >= {
        "cds_hook_calls", "cds_issued_cards", "cds_feedback", "cds_jti_claims"}
    store.close()


def test_tables_created_once_and_reopened(url):
    first = Store(url)
    call(first, card("c-1"))
    first.close()
    second = Store(url)  # create_all on existing tables is harmless and keeps the data
    assert len(rows(second, storage.issued_cards)) == 1
    second.close()


def test_default_url_creates_the_instance_folder(tmp_path):
    folder = tmp_path / "instance"
    url = default_url(str(folder))
    assert folder.is_dir() and url.startswith("sqlite:///") and url.endswith("cds.db")
    store = Store(url)
    assert store.ping() and (folder / "cds.db").exists()
    store.close()


def test_ping(store, tmp_path):
    assert store.ping() is True
    store.engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    assert store.ping() is False


def test_unsupported_database():
    with pytest.raises(ValueError, match="unsupported database"):
        Store("mysql://nobody@127.0.0.1/none")


# -- hook calls -----------------------------------------------------------------------------------
def test_record_call_rows(store):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    store.record_call(service_id=SVC, hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", status=200,
                      latency_ms=42.25, data_source="fhir", cards=[
                          card("c-1", suggestions=("s-1", "s-2")),
                          card("c-2", "out-of-scope/age", "info", None, None)])
    [hook_call] = rows(store, storage.hook_calls)
    assert hook_call["service_id"] == SVC and hook_call["hook_instance"] == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert (hook_call["status"], hook_call["latency_ms"], hook_call["data_source"]) == (200, 42.25, "fhir")
    assert hook_call["called_at"].tzinfo is not None
    assert before <= hook_call["called_at"] <= datetime.now(timezone.utc) + timedelta(seconds=1)
    cards = {r["card_uuid"]: r for r in rows(store, storage.issued_cards)}
    assert cards["c-1"] == {"card_uuid": "c-1", "call_id": hook_call["id"], "order_id": "sr-1",
                            "rule": "v1/ct-chest", "indicator": "warning", "rating": "not-appropriate",
                            "suggestion_uuids": "s-1 s-2"}
    assert cards["c-2"]["order_id"] is None and cards["c-2"]["rating"] is None
    assert cards["c-2"]["suggestion_uuids"] == ""


def test_the_journal_writes_calls_in_the_order_they_were_answered_and_each_once(store, tmp_path, monkeypatch):
    """A flush while the background drainer is gathering must not write later calls first, nor twice."""
    monkeypatch.setattr(storage.journal, "BATCH_SECONDS", 0.3)
    writer = storage.Journal(store, tmp_path / "journal")
    first = {"service_id": SVC, "status": 200, "latency_ms": 1.0, "data_source": "prefetch", "cards": ()}
    writer.submit(hook_instance="first", **first)
    time.sleep(0.1)  # the drainer has woken and is gathering its batch
    writer.submit(hook_instance="second", **{**first, "status": 400})
    writer.flush()
    with store.engine.connect() as conn:
        written = conn.execute(sa.select(storage.hook_calls.c.hook_instance)
                               .order_by(storage.hook_calls.c.id)).scalars().all()
    assert written == ["first", "second"]
    time.sleep(0.35)  # the background drain finds nothing left to write twice
    assert len(rows(store, storage.hook_calls)) == 2


def test_record_call_without_cards_and_errors(store):
    call(store)
    call(store, status=412)
    assert sorted(r["status"] for r in rows(store, storage.hook_calls)) == [200, 412]
    assert rows(store, storage.issued_cards) == []


def test_record_call_tolerates_a_reused_card_uuid(store):
    call(store, card("same"))
    call(store, card("same"), card("other"))  # must not fail the hook call
    assert len(rows(store, storage.hook_calls)) == 2
    assert sorted(r["card_uuid"] for r in rows(store, storage.issued_cards)) == ["other", "same"]


# -- feedback -------------------------------------------------------------------------------------
def test_feedback_accepted_sandbox_shape(store):
    call(store, card("c-1", suggestions=("s-1",)))
    assert store.record_feedback(SVC, [accepted("c-1", "s-1")]) == \
        {"stored": 1, "duplicates": 0, "unknown_cards": 0, "rejected": 0}
    [row] = rows(store, storage.feedback)
    assert row["card_uuid"] == "c-1" and row["outcome"] == "accepted" and row["service_id"] == SVC
    assert row["suggestions"] == "s-1" and row["matched"] is True and row["suggestions_matched"] is True
    assert row["outcome_at"] == datetime(2026, 11, 23, 18, 14, 14, 309000, tzinfo=timezone.utc)
    assert row["reason_code"] is None and row["has_comment"] is False


def test_feedback_accepted_suggestion_not_on_the_card(store):
    call(store, card("c-1", suggestions=("s-1",)))
    assert store.record_feedback(SVC, [accepted("c-1", "s-other")])["stored"] == 1
    [row] = rows(store, storage.feedback)
    assert row["matched"] is True and row["suggestions_matched"] is False


def test_feedback_dismissed_without_reason(store):
    call(store, card("c-1"))
    assert store.record_feedback(SVC, [dismissed("c-1")]) == \
        {"stored": 1, "duplicates": 0, "unknown_cards": 0, "rejected": 0}
    [row] = rows(store, storage.feedback)
    assert row["outcome"] == "overridden" and row["matched"] is True and row["suggestions"] == ""
    assert row["suggestions_matched"] is None
    assert (row["reason_system"], row["reason_code"], row["reason_display"]) == (None, None, None)


def test_feedback_dismissed_with_reason_without_display(store):
    call(store, card("c-1"))
    assert store.record_feedback(SVC, [dismissed("c-1", reason="pt-refused")])["stored"] == 1
    [row] = rows(store, storage.feedback)
    assert (row["reason_system"], row["reason_code"], row["reason_display"]) == (OVERRIDE, "pt-refused", None)


def test_feedback_override_comment_text_is_never_stored(store):
    call(store, card("c-1"))
    comment = "Mother insists, see note about Jane Doe"
    entry = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T20:14:14+02:00",
             "overrideReason": {"reason": {"system": OVERRIDE, "code": "clinical", "display": "Clinical judgement"},
                                "userComment": comment}}
    only_comment = {**dismissed("c-1", "2026-11-23T18:20:00Z"), "overrideReason": {"userComment": comment}}
    assert store.record_feedback(SVC, [entry, only_comment])["stored"] == 2
    found = sorted(rows(store, storage.feedback), key=lambda r: r["outcome_at"])
    assert found[0]["reason_display"] == "Clinical judgement" and found[0]["has_comment"] is True
    assert found[0]["outcome_at"] == datetime(2026, 11, 23, 18, 14, 14, tzinfo=timezone.utc)  # from +02:00
    assert found[1]["reason_code"] is None and found[1]["has_comment"] is True
    assert not any("Jane" in str(value) for row in found for value in row.values())


def test_feedback_about_a_card_never_issued_is_not_stored(store):
    call(store, card("c-1"))
    assert store.record_feedback(SVC, [dismissed("never-issued"), dismissed("c-1")]) == \
        {"stored": 1, "duplicates": 0, "unknown_cards": 1, "rejected": 0}
    matched = {r["card_uuid"]: r["matched"] for r in rows(store, storage.feedback)}
    assert matched == {"c-1": True}


def test_feedback_is_stored_only_from_the_issuer_the_card_was_issued_to(store):
    store.record_calls([{"service_id": SVC, "hook_instance": "h", "status": 200, "latency_ms": 1.0,
                         "data_source": "prefetch", "cards": [card("c-a")], "issuer": "https://ehr-a.example.org"}])
    assert store.record_feedback(SVC, [dismissed("c-a")], "https://ehr-b.example.org")["unknown_cards"] == 1
    assert store.record_feedback(SVC, [dismissed("c-a")], "")["unknown_cards"] == 1
    assert store.record_feedback(SVC, [dismissed("c-a")], "https://ehr-a.example.org")["stored"] == 1
    assert [r["card_uuid"] for r in rows(store, storage.feedback)] == ["c-a"]


def test_feedback_duplicates_are_ignored(store):
    call(store, card("c-1", suggestions=("s-1", "s-2")))
    batch = [accepted("c-1", "s-1"), accepted("c-1", "s-1"),
             accepted("c-1", "s-1", "2026-11-23T18:14:14.309000+00:00")]  # the same instant
    assert store.record_feedback(SVC, batch) == {"stored": 1, "duplicates": 2, "unknown_cards": 0, "rejected": 0}
    assert store.record_feedback(SVC, [accepted("c-1", "s-1")]) == \
        {"stored": 0, "duplicates": 1, "unknown_cards": 0, "rejected": 0}
    distinct = [accepted("c-1", "s-2"),                                # another suggestion
                accepted("c-1", "s-1", "2026-11-23T18:14:15.309Z"),    # another time
                dismissed("c-1")]                                      # another outcome
    assert store.record_feedback(SVC, distinct)["stored"] == 3
    assert store.record_feedback(SVC, distinct + [dismissed("c-1", reason="pt-refused")]) == \
        {"stored": 0, "duplicates": 4, "unknown_cards": 0, "rejected": 0}
    assert len(rows(store, storage.feedback)) == 4


def test_feedback_duplicate_unknown_cards(store):
    assert store.record_feedback(SVC, [dismissed("x"), dismissed("x")]) == \
        {"stored": 0, "duplicates": 0, "unknown_cards": 2, "rejected": 0}
    assert rows(store, storage.feedback) == []


MALFORMED = [
    "not an object", None, 7, [], {},
    {"outcome": "overridden", "outcomeTimestamp": T0},                                  # no card
    {"card": "", "outcome": "overridden", "outcomeTimestamp": T0},
    {"card": 12, "outcome": "overridden", "outcomeTimestamp": T0},
    {"card": "c" * 300, "outcome": "overridden", "outcomeTimestamp": T0},
    {"card": "c-1", "outcomeTimestamp": T0},                                            # no outcome
    {"card": "c-1", "outcome": "ignored", "outcomeTimestamp": T0},
    {"card": "c-1", "outcome": "overridden"},                                           # no timestamp
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14"},   # no offset
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-13-23T18:14:14Z"},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": 1795459690},
    {"card": "c-1", "outcome": "accepted", "outcomeTimestamp": T0},                     # cds-fb-2
    {"card": "c-1", "outcome": "accepted", "acceptedSuggestions": [], "outcomeTimestamp": T0},
    {"card": "c-1", "outcome": "accepted", "acceptedSuggestions": {"id": "s-1"}, "outcomeTimestamp": T0},
    {"card": "c-1", "outcome": "accepted", "acceptedSuggestions": [{"uuid": "s-1"}], "outcomeTimestamp": T0},
    {"card": "c-1", "outcome": "accepted", "acceptedSuggestions": ["s-1"], "outcomeTimestamp": T0},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": T0, "overrideReason": "pt-refused"},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": T0, "overrideReason": {"reason": "pt-refused"}},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": T0, "overrideReason": {"reason": {"system": "x"}}},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": T0,
     "overrideReason": {"reason": {"code": "a", "system": 5}}},
    {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": T0, "overrideReason": {"userComment": 5}},
]


@pytest.mark.parametrize("entry", MALFORMED)
def test_feedback_malformed_entry_is_rejected(store, entry):
    call(store, card("c-1", suggestions=("s-1",)))
    assert store.record_feedback(SVC, [entry]) == {"stored": 0, "duplicates": 0, "unknown_cards": 0, "rejected": 1}
    assert rows(store, storage.feedback) == []


def test_feedback_mixed_batch(store):
    call(store, card("c-1", suggestions=("s-1",)))
    batch = [accepted("c-1", "s-1"), "junk", dismissed("unknown"), {"card": "c-1"}, accepted("c-1", "s-1")]
    assert store.record_feedback(SVC, batch) == {"stored": 1, "duplicates": 1, "unknown_cards": 1, "rejected": 2}
    assert store.record_feedback(SVC, []) == {"stored": 0, "duplicates": 0, "unknown_cards": 0, "rejected": 0}


def test_parse_timestamp():
    utc = timezone.utc
    assert parse_timestamp("2026-11-23T18:14:14.309Z") == datetime(2026, 11, 23, 18, 14, 14, 309000, tzinfo=utc)
    assert parse_timestamp("2021-12-11T10:05:31Z") == datetime(2021, 12, 11, 10, 5, 31, tzinfo=utc)
    assert parse_timestamp("2021-12-11t10:05:31.123456789-05:00") == \
        datetime(2021, 12, 11, 15, 5, 31, 123456, tzinfo=utc)
    for bad in ("2021-12-11", "2021-12-11T10:05Z", "2021-12-11T10:05:31", "2021-12-11T25:05:31Z", "", None):
        assert parse_timestamp(bad) is None


# -- report ---------------------------------------------------------------------------------------
def test_report_counts_and_override_reasons(store):
    call(store, card("a-1", suggestions=("sa-1",)), card("b-1", "v1/xr-chest", "info", "appropriate", "sr-2"))
    call(store, card("a-2", suggestions=("sa-2",)))
    call(store, card("a-3", suggestions=("sa-3",)), card("o-1", "out-of-scope/age", "info", None, None))
    call(store, card("a-4", suggestions=("sa-4",)))
    store.record_feedback(SVC, [
        accepted("a-1", "sa-1"),
        accepted("a-1", "sa-1", "2026-11-23T18:15:00Z"),   # the same card twice: counted once
        dismissed("a-2", reason="pt-refused"),
        dismissed("a-3", reason="pt-refused"),
        dismissed("a-4"),
        dismissed("never-issued", reason="other"),  # not stored
    ])
    report = {(r["rule"], r["indicator"]): r for r in store.report()}
    ct = report[("v1/ct-chest", "warning")]
    assert (ct["shown"], ct["accepted"], ct["overridden"]) == (4, 1, 3)
    assert ct["override_reasons"] == [{"system": OVERRIDE, "code": "pt-refused", "display": None, "count": 2},
                                      {"system": None, "code": None, "display": None, "count": 1}]
    assert report[("v1/xr-chest", "info")] == {"rule": "v1/xr-chest", "indicator": "info", "shown": 1,
                                               "accepted": 0, "overridden": 0, "override_reasons": []}
    assert report[("out-of-scope/age", "info")]["shown"] == 1
    assert ("(unknown card)", "-") not in report

    text = format_report(store.report())
    lines = text.splitlines()
    assert lines[0].split() == ["rule", "indicator", "shown", "accepted", "overridden", "override", "reasons"]
    ct_line = next(line for line in lines if line.startswith("v1/ct-chest"))
    assert ct_line.split()[:5] == ["v1/ct-chest", "warning", "4", "1", "3"]
    assert "pt-refused x2" in ct_line and "(no reason) x1" in ct_line
    assert lines[-1].split() == ["total", "6", "1", "3"]


def test_report_empty(store):
    assert store.report() == []
    assert "No hook calls" in format_report([])


# -- jti ------------------------------------------------------------------------------------------
def test_claim_jti_replay(store):
    later = time.time() + 300
    assert store.claim_jti("https://sandbox.cds-hooks.org", "jti-1", later) is True
    assert store.claim_jti("https://sandbox.cds-hooks.org", "jti-1", later) is False
    assert store.claim_jti("https://other.example.org", "jti-1", later) is True
    assert store.claim_jti("https://sandbox.cds-hooks.org", "jti-2", later) is True
    long_jti = "j" * 5000
    assert store.claim_jti("https://sandbox.cds-hooks.org", long_jti, later) is True
    assert store.claim_jti("https://sandbox.cds-hooks.org", long_jti, later) is False
    assert store.claim_jti("https://sandbox.cds-hooks.org", long_jti[:-1], later) is True


def test_claim_jti_expired_rows_are_deleted(store):
    store.claim_jti("iss", "old", time.time() - 10)
    store.claim_jti("iss", "fresh", time.time() + 300)
    assert store.purge_expired() == 1
    assert {r["jti"] for r in rows(store, storage.jti_claims)} == {"fresh"}
    assert store.claim_jti("iss", "fresh", time.time() + 300) is False


def test_claim_jti_purges_opportunistically(store, monkeypatch):
    store.claim_jti("iss", "old", time.time() - 10)
    monkeypatch.setattr(store.jti, "_purged_at", 0.0)
    monkeypatch.setattr(storage.jti, "PURGE_EVERY_SECONDS", 0.0)
    store.claim_jti("iss", "new", time.time() + 300)
    assert {r["jti"] for r in rows(store, storage.jti_claims)} == {"new"}


# -- concurrency ----------------------------------------------------------------------------------
THREADS, PER_THREAD = 16, 50


def run_together(work):
    barrier = threading.Barrier(THREADS)

    def start(n):
        barrier.wait()
        return work(n)
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(start, range(THREADS)))


def test_concurrent_feedback_is_stored_exactly_once(store):
    call(store, *[card(f"card-{t}-{i}", suggestions=(f"s-{t}-{i}",))
                  for t in range(THREADS) for i in range(PER_THREAD)])

    def own(t):
        return [accepted(f"card-{t}-{i}", f"s-{t}-{i}", f"2026-11-23T18:{i:02d}:14.309Z") if i % 2 == 0 else
                dismissed(f"card-{t}-{i}", f"2026-11-23T18:{i:02d}:14.309Z", "pt-refused" if i % 3 else None)
                for i in range(PER_THREAD)]

    def post(t):
        entries = own(t) + own((t + 1) % THREADS)[:5] + own(t)[:3]  # 8 duplicates per thread
        random.Random(t).shuffle(entries)
        results = [store.record_feedback(SVC, entries[i:i + 10]) for i in range(0, len(entries), 10)]
        return {k: sum(r[k] for r in results) for k in results[0]}

    results = run_together(post)
    assert sum(r["stored"] for r in results) == THREADS * PER_THREAD
    assert sum(r["duplicates"] for r in results) == THREADS * 8
    assert sum(r["rejected"] for r in results) == 0
    stored = rows(store, storage.feedback)
    keys = [(r["card_uuid"], r["outcome"], r["outcome_at"], r["suggestions"]) for r in stored]
    assert len(keys) == len(set(keys)) == THREADS * PER_THREAD
    assert {r["card_uuid"] for r in stored} == {f"card-{t}-{i}" for t in range(THREADS) for i in range(PER_THREAD)}
    assert all(r["matched"] for r in stored)


def test_concurrent_claim_jti_has_one_winner(store):
    shared = [f"shared-{i}" for i in range(PER_THREAD)]
    later = time.time() + 300

    def claim(t):
        jtis = shared + [f"own-{t}-{i}" for i in range(5)]
        random.Random(t).shuffle(jtis)
        return {jti: store.claim_jti("https://sandbox.cds-hooks.org", jti, later) for jti in jtis}

    results = run_together(claim)
    for jti in shared:
        assert sum(r[jti] for r in results) == 1, jti
    assert all(won for t, r in enumerate(results) for jti, won in r.items() if jti.startswith("own-"))
    assert len(rows(store, storage.jti_claims)) == PER_THREAD + THREADS * 5


# -- command line ---------------------------------------------------------------------------------
def test_cli_report(url, capsys, monkeypatch):
    store = Store(url)
    call(store, card("c-1"))
    store.record_feedback(SVC, [dismissed("c-1", reason="pt-refused")])
    store.close()
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    assert cli.main(["report", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("rule") and "pt-refused x1" in out
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    assert cli.main(["report"]) == 0
    assert "v1/ct-chest" in capsys.readouterr().out


def test_cli_report_default_instance_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report"]) == 0
    assert "No hook calls" in capsys.readouterr().out
    assert (tmp_path / "instance" / "cds.db").exists()


def test_cli_requires_a_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def test_flask_report_command(store):
    call(store, card("c-1", suggestions=("s-1",)))
    store.record_feedback(SVC, [accepted("c-1", "s-1")])
    app = Flask(__name__)
    app.extensions["cds"] = SimpleNamespace(store=store)
    app.cli.add_command(cli.report_command)
    result = app.test_cli_runner().invoke(args=["report"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("v1/ct-chest"))
    assert line.split()[:5] == ["v1/ct-chest", "warning", "1", "1", "0"]


def test_a_worker_never_opens_more_postgresql_connections_than_its_pool(url, tmp_path):
    """Issue 20: the deployment's connection count is workers x CDS_DB_POOL_SIZE, whatever the load."""
    if not url.startswith("postgresql"):
        pytest.skip("a PostgreSQL pool")
    from builders import SELECT, hook_request, service_request
    from cds_service import create_app
    from tokens import Client
    trusted = Client(tmp_path)
    app = create_app({**trusted.config(tmp_path / "unused.db"), "database_url": url, "db_pool_size": 2})
    opened = []
    sa.event.listen(app.extensions["cds"].store.engine, "connect", lambda *_: opened.append(1))
    path = f"/cds-services/{SELECT}"
    body = hook_request([service_request(code="71250")])

    def signed_call(_):
        return app.test_client().post(path, json=body, headers=trusted.headers(f"http://localhost{path}")).status_code
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(signed_call, range(48)))
    app.extensions["cds"].audit.flush()
    assert statuses == [200] * 48 and 1 <= len(opened) <= 2
