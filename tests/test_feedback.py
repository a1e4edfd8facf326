"""Feedback through the API, the audit of hook calls, and the report a safety committee reads."""
import threading
import uuid

from builders import SELECT, SIGN, hook_request, service_request
from cds_service import storage

OVERRIDE = {"code": "protocol", "system": "urn:cds-service:acr-leukemia-staging:override-reason"}


def issue_warning(client) -> dict:
    body = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request(code="71250")])).get_json()
    return body["cards"][0]


def test_every_hook_call_is_audited_with_identifiers_only(app, client):
    card = issue_warning(client)
    client.post(f"/cds-services/{SIGN}", data="{", content_type="application/json")
    runtime = app.extensions["cds"]
    runtime.audit.flush()
    with runtime.store.engine.connect() as conn:
        calls = conn.execute(storage.hook_calls.select().order_by(storage.hook_calls.c.id)).mappings().all()
        cards = conn.execute(storage.issued_cards.select()).mappings().all()
    assert [(c["service_id"], c["status"], c["data_source"]) for c in calls] == [
        (SELECT, 200, "prefetch"), (SIGN, 400, "none")]
    assert calls[0]["latency_ms"] > 0
    [issued] = cards
    assert issued["card_uuid"] == card["uuid"]
    assert issued["rule"] == "all-child-initial-staging-asymptomatic-chest/ct-chest"
    assert issued["rating"] == "not-appropriate" and issued["indicator"] == "warning"
    assert issued["suggestion_uuids"] == card["suggestions"][0]["uuid"]


def test_feedback_from_many_threads_is_stored_once_each_and_reported(app):
    client = app.test_client()
    cards = [issue_warning(client) for _ in range(4)]
    entries = []
    for i, card in enumerate(cards):
        entries.append({"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": f"2026-11-23T18:14:1{i}.309Z",
                        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]})
        entries += [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": f"2026-11-23T18:2{i}:{s:02d}Z",
                     "overrideReason": {"reason": OVERRIDE, "userComment": "per protocol"}} for s in range(10)]
    entries.append({"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:30:00Z"})
    errors = []

    def post(batch):
        response = app.test_client().post(f"/cds-services/{SELECT}/feedback", json={"feedback": batch})
        if response.status_code != 200 or response.get_json() != {}:
            errors.append(response.status_code)

    # 12 threads at once: every entry is posted twice, by two threads
    threads = [threading.Thread(target=post, args=(entries[i::6],)) for i in range(6) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = app.extensions["cds"].store
    with store.engine.connect() as conn:
        stored = conn.execute(storage.feedback.select()).mappings().all()
    assert len(stored) == len(entries) - 1  # every distinct entry once, duplicates and the unknown card ignored
    assert not any("per protocol" in str(dict(row).values()) for row in stored)  # comment text never stored

    [row] = [r for r in store.report() if r["rule"] == "all-child-initial-staging-asymptomatic-chest/ct-chest"]
    assert (row["shown"], row["accepted"], row["overridden"]) == (4, 4, 4)
    assert [(r["code"], r["count"]) for r in row["override_reasons"]] == [("protocol", 4)]  # cards, not posts

    result = app.test_cli_runner().invoke(args=["report"])
    assert result.exit_code == 0
    assert "all-child-initial-staging-asymptomatic-chest/ct-chest" in result.output and "protocol" in result.output


def test_feedback_body_errors_are_operation_outcomes(client):
    for body in ({"feedback": "x"}, [], {"nope": []}):
        response = client.post(f"/cds-services/{SELECT}/feedback", json=body)
        assert response.status_code == 400 and response.get_json()["resourceType"] == "OperationOutcome"
    assert client.post("/cds-services/nope/feedback", json={"feedback": []}).status_code == 404


def test_sandbox_dismiss_shapes_are_accepted(client):
    card = issue_warning(client)
    for entry in ({"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14.309Z"},
                  {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:15.309Z",
                   "overrideReason": {"reason": {"code": "pt-refused", "system": "http://example.org/override"}}}):
        assert client.post(f"/cds-services/{SELECT}/feedback", json={"feedback": [entry]}).status_code == 200

