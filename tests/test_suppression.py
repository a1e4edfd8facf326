"""No repeat alerts: an overridden warning is not shown again for the same patient and order within the
window (the PAMA rating still is), across instances, with no patient id stored in clear."""
from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta

import sqlalchemy as sa

import builders as b
from cds_service import create_app, storage, suppression
from cds_service.cli import main
from tokens import Client

CT_CHEST = "71260"


def make_app(database, **settings):
    app = create_app({"database_url": database, **settings})
    app.extensions["cds"].handler.today = lambda: b.TODAY
    return app


def call(client, order_id="order-1", pid="pat1", headers=None):
    body = b.hook_request([b.service_request(order_id, code=CT_CHEST, pid=pid)], pid=pid,
                          pat=b.patient(pid), conditions=[b.all_condition(pid=pid)])
    return client.post(f"/cds-services/{b.SELECT}", json=body, headers=headers or {})


def override(client, card, headers=None):
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14.309Z",
             "overrideReason": {"reason": {"code": "pt-refused", "system": "http://example.org/override"}}}
    response = client.post(f"/cds-services/{b.SELECT}/feedback", json={"feedback": [entry]}, headers=headers or {})
    assert response.status_code == 200


def clock(app, start):
    """Pin the suppressor's clock; returns a function that moves it on by minutes."""
    now = [start]
    app.extensions["cds"].handler.suppressor.now = lambda: now[0]

    def advance(minutes):
        now[0] += timedelta(minutes=minutes)
    return advance


def test_an_overridden_warning_is_not_shown_again_until_the_window_has_passed(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'cds.db'}")
    advance = clock(app, storage.utcnow())
    client = app.test_client()
    [warning] = b.warning_cards(call(client))
    override(client, warning)

    again = call(client)
    assert b.warning_cards(again) == []
    assert b.ratings(again) == {"order-1": "not-appropriate"}  # the PAMA rating is still sent

    advance(59)
    assert b.warning_cards(call(client)) == []
    advance(2)
    [shown] = b.warning_cards(call(client))
    assert shown["summary"] == warning["summary"] and shown["uuid"] != warning["uuid"]


def test_only_the_same_patient_and_order_are_suppressed(client):
    [warning] = b.warning_cards(call(client))
    override(client, warning)
    assert b.warning_cards(call(client, order_id="order-2"))       # another order
    assert b.warning_cards(call(client, pid="pat2"))               # another patient
    assert b.warning_cards(call(client)) == []


def test_an_accepted_or_unknown_card_suppresses_nothing(client):
    [warning] = b.warning_cards(call(client))
    accepted = {"card": warning["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-23T18:14:14Z",
                "acceptedSuggestions": [{"id": warning["suggestions"][0]["uuid"]}]}
    unknown = {"card": "no-such-card", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14Z"}
    assert client.post(f"/cds-services/{b.SELECT}/feedback", json={"feedback": [accepted, unknown]}).status_code == 200
    assert b.warning_cards(call(client))


def test_suppression_holds_across_instances_sharing_the_database(tmp_path):
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = make_app(database).test_client(), make_app(database).test_client()
    [warning] = b.warning_cards(call(first))
    first.application.extensions["cds"].handler.suppressor.flush()  # written within 50 ms; a clinician is slower
    override(second, warning)                          # the feedback reaches another instance
    assert b.warning_cards(call(second)) == []         # that instance knows at once
    refreshes = first.application.extensions["cds"].handler.suppressor
    elapsed = [0.0]
    refreshes.monotonic = lambda: elapsed[0]
    refreshes.next_read = 0.9                          # the first read its overrides 0.1 s ago
    assert b.warning_cards(call(first))                # not read again yet: shown once more
    elapsed[0] = 1.0                                   # a second after its last read
    assert b.warning_cards(call(first)) == []


def test_a_slow_database_is_not_waited_for(tmp_path):
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = make_app(database), make_app(database)
    one, two = first.test_client(), second.test_client()
    [warning] = b.warning_cards(call(one))
    first.extensions["cds"].handler.suppressor.flush()
    override(two, warning)
    suppressor = first.extensions["cds"].handler.suppressor
    store, release = suppressor.store, threading.Event()

    reads = []

    class SlowStore:  # the database answers once released
        def read(self):
            reads.append(1)
            release.wait(10)
            return store.read()
    suppressor.store, suppressor.next_read = SlowStore(), float("-inf")
    started = time.monotonic()
    assert b.warning_cards(call(one))                  # not known here yet: shown, without waiting
    assert time.monotonic() - started < 0.5            # (READ_WAIT_SECONDS is 0.05 s)
    suppressor.next_read = float("-inf")               # due again, but the first read is under way:
    assert b.warning_cards(call(one)) and len(reads) == 1  # no second one
    release.set()
    assert suppressor.last_read.wait(5)
    assert b.warning_cards(call(one)) == []            # read at last: not repeated


def test_when_the_database_cannot_be_read_known_overrides_still_hold(tmp_path, log_lines):
    database = tmp_path / "cds.db"
    app = make_app(f"sqlite:///{database}")
    client = app.test_client()
    suppressor = app.extensions["cds"].handler.suppressor
    [warning] = b.warning_cards(call(client))
    override(client, warning)
    suppressor.flush()
    app.extensions["cds"].audit.flush()
    app.extensions["cds"].store.engine.dispose()
    database.write_bytes(b"not a database")
    for _ in range(3):
        suppressor.next_read = float("-inf")           # a read is due on every call
        response = call(client)
        assert response.status_code == 200
        assert b.warning_cards(response) == []         # overridden here: still not repeated
        [other] = b.warning_cards(call(client, order_id="order-2"))  # not overridden: shown
    assert [line["message"] for line in log_lines()].count(
        "repeat-alert suppression could not be read; warnings not known to be overridden are shown") == 1


def test_no_patient_id_is_stored_in_clear(tmp_path):
    database = tmp_path / "cds.db"
    app = make_app(f"sqlite:///{database}")
    client = app.test_client()
    pid = "patient-7f3c1e"
    [warning] = b.warning_cards(call(client, pid=pid))
    override(client, warning)
    assert b.warning_cards(call(client, pid=pid)) == []
    app.extensions["cds"].audit.flush()
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        dump = "\n".join(map(str, conn.connection.iterdump()))
    engine.dispose()
    assert pid not in dump
    assert "cds_overridden_warnings" in dump


def test_zero_minutes_turns_it_off(tmp_path):
    client = make_app(f"sqlite:///{tmp_path / 'cds.db'}", repeat_alert_minutes=0).test_client()
    [warning] = b.warning_cards(call(client))
    override(client, warning)
    assert b.warning_cards(call(client))


def test_production_suppresses_only_with_a_patient_hash_key(tmp_path):
    trusted = Client(tmp_path)
    url = f"/cds-services/{b.SELECT}"
    for key, repeated in (("", True), ("a-secret-of-this-deployment", False)):
        app = create_app(trusted.config(tmp_path / f"p{len(key)}.db", patient_hash_key=key))
        app.extensions["cds"].handler.today = lambda: b.TODAY
        client = app.test_client()

        def headers(path):
            return trusted.headers(f"http://localhost{path}")
        [warning] = b.warning_cards(call(client, headers=headers(url)))
        override(client, warning, headers=headers(url + "/feedback"))
        assert bool(b.warning_cards(call(client, headers=headers(url)))) is repeated


def test_the_report_and_metrics_count_suppressed_cards(tmp_path, capsys):
    database = f"sqlite:///{tmp_path / 'cds.db'}"
    app = make_app(database)
    client = app.test_client()
    rule = "all-child-initial-staging-asymptomatic-chest/ct-chest"
    counted = re.compile(rf'^cds_suppressed_cards_total{{rule="{re.escape(rule)}"}} ([0-9.]+)$', re.M)

    def metric():
        found = counted.search(client.get("/metrics").get_data(as_text=True))
        return float(found[1]) if found else 0.0
    before = metric()
    [warning] = b.warning_cards(call(client))
    override(client, warning)
    call(client)
    call(client)
    app.extensions["cds"].handler.suppressor.flush()
    assert metric() == before + 2
    assert main(["report", "--database-url", database]) == 0
    out = capsys.readouterr().out
    assert "Repeat warnings suppressed after an override:" in out
    assert [rule, "2"] in [line.split() for line in out.splitlines()]


def test_explain_names_the_suppression(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'cds.db'}")
    client = app.test_client()
    [warning] = b.warning_cards(call(client))
    override(client, warning)
    body = b.hook_request([b.service_request("order-1", code=CT_CHEST)])
    x = client.post(f"/cds-services/{b.SELECT}/explain", json=body).get_json()
    assert x["cards"] == [] and x["ratings"] == {"order-1": "not-appropriate"}
    assert x["conclusion"].startswith("Warning not shown again: it was overridden at ")
    assert x["suppressed"][0]["order"] == "order-1"
    # explaining records nothing: no suppressed card is counted
    app.extensions["cds"].handler.suppressor.flush()
    assert suppression.report(app.extensions["cds"].store) == []
    assert json.dumps(x)  # serialisable


def test_retention_forgets_overrides_past_their_window_and_shown_warnings_after_a_day(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'cds.db'}")
    start = storage.utcnow()
    advance = clock(app, start)
    client = app.test_client()
    [first] = b.warning_cards(call(client, "order-1"))
    override(client, first)
    advance(45)
    b.warning_cards(call(client, "order-2"))  # shown, not overridden
    suppressor = app.extensions["cds"].handler.suppressor
    suppressor.flush()
    store = app.extensions["cds"].store

    def counts():
        with store.read() as conn:
            return [conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                    for t in (suppression.overridden_warnings, suppression.shown_warnings)]
    assert counts() == [1, 2]
    assert suppressor.purge(start + timedelta(minutes=59)) == 0
    assert suppressor.purge(start + timedelta(minutes=61)) == 1   # the override's 60-minute window is over
    assert counts() == [0, 2]
    assert suppressor.purge(start + timedelta(days=1, minutes=46)) == 2  # shown more than a day ago
    assert counts() == [0, 0]


def test_an_override_silences_only_the_warnings_of_the_ehr_that_sent_it(tmp_path):
    """Development: unsigned calls (issuer "") and a signed EHR's calls, with the same patient and order ids."""
    ehr = Client(tmp_path)
    app = make_app(f"sqlite:///{tmp_path / 'cds.db'}", **{**ehr.config(tmp_path / "unused.db"), "env": "development",
                                                        "database_url": f"sqlite:///{tmp_path / 'cds.db'}"})
    client = app.test_client()

    def signed(path=f"/cds-services/{b.SELECT}"):
        return ehr.headers(f"http://localhost{path}")
    feedback_path = f"/cds-services/{b.SELECT}/feedback"
    [unsigned_warning] = b.warning_cards(call(client))
    override(client, unsigned_warning, headers=signed(feedback_path))  # another caller's card: ignored
    assert b.warning_cards(call(client, headers=signed())) and b.warning_cards(call(client))
    [ehr_warning] = b.warning_cards(call(client, headers=signed()))
    override(client, ehr_warning, headers=signed(feedback_path))
    assert b.warning_cards(call(client, headers=signed())) == []  # the EHR's own warning: silenced
    assert b.warning_cards(call(client))                           # the same ids from another caller: shown
    with app.extensions["cds"].store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(storage.feedback)).scalar() == 1
