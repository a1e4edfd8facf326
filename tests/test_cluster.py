"""Three production instances on one PostgreSQL behind nginx (deploy/nginx/cds-service.conf, round
robin): every instance answers signed calls, a token is single-use across instances, feedback on one
instance matches the cards another issued, the report counts everything once, and a warning
overridden through one instance is not repeated by any."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import requests
import sqlalchemy as sa

from cds_service import cli, storage
from cluster import EXAMPLE, ROOT, SERVICE, cluster, needs_cluster  # noqa: F401 (fixture)

pytestmark = needs_cluster
OVERRIDE_SYSTEM = "http://example.org/cds-override-reasons"


def warning_card(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    [card] = [c for c in response.json()["cards"] if c["indicator"] == "warning"]
    assert card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"] == "71046"
    return card


def wait_for_cards(c, uuids: set[str], seconds: float = 10) -> None:
    """Until the audit rows of these cards are written (each instance writes in the background)."""
    engine = c.engine()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = set(conn.execute(sa.select(storage.issued_cards.c.card_uuid)
                                         .where(storage.issued_cards.c.card_uuid.in_(uuids))).scalars())
            if found == uuids:
                return
            time.sleep(0.05)
        raise AssertionError(f"audit rows missing for {uuids - found}")
    finally:
        engine.dispose()


def post_feedback(c, entries: list[dict]) -> requests.Response:
    url = c.audience + "/feedback"
    return requests.post(url, json={"feedback": entries}, timeout=10,
                         headers={"Authorization": f"Bearer {c.client.token(url)}"})


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accepted(card: dict) -> dict:
    return {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": now(),
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}


def overridden(card: dict, code: str) -> dict:
    return {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now(),
            "overrideReason": {"reason": {"system": OVERRIDE_SYSTEM, "code": code, "display": code}}}


def report(c) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "cds_service.cli", "report", "--database-url", c.database_url],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    store = storage.Store(c.database_url, schema="check")
    try:
        rows = store.report()
        assert out.strip() == cli.full_report(store)  # what the operator's command prints
    finally:
        store.close()
    return rows


def test_signed_calls_are_answered_by_every_instance(cluster):
    answered = []
    with requests.Session() as session:
        for _ in range(9):
            response = cluster.hook_call(session)
            warning_card(response)
            answered.append(cluster.name_of(response))
    assert sorted(set(answered)) == [i.name for i in cluster.instances]
    assert all(answered.count(i.name) == 3 for i in cluster.instances)  # round robin


def test_a_token_replayed_on_another_instance_is_refused(cluster):
    token = cluster.client.token(cluster.audience)
    first = cluster.hook_call(token=token)
    warning_card(first)
    replay = cluster.hook_call(token=token)
    assert cluster.name_of(replay) != cluster.name_of(first)
    assert replay.status_code == 401
    assert replay.json()["resourceType"] == "OperationOutcome"
    assert replay.json()["issue"][0]["diagnostics"] == "authentication failed"  # "token replayed" is logged
    for instance in cluster.instances:  # and straight to each instance, past nginx
        direct = requests.post(f"http://{instance.address}{SERVICE}", json=EXAMPLE, timeout=10,
                               headers={"Authorization": f"Bearer {token}"})
        assert direct.status_code == 401, instance.name




def test_feedback_on_one_instance_matches_the_card_another_issued(cluster):
    issued = cluster.hook_call()
    card = warning_card(issued)
    wait_for_cards(cluster, {card["uuid"]})
    response = post_feedback(cluster, [accepted(card)])
    assert response.status_code == 200 and response.json() == {}
    assert cluster.name_of(response) != cluster.name_of(issued)
    engine = cluster.engine()
    with engine.connect() as conn:
        [row] = conn.execute(storage.feedback.select().where(storage.feedback.c.card_uuid == card["uuid"])) \
            .mappings().all()
    engine.dispose()
    assert row["matched"] is True and row["suggestions_matched"] is True and row["outcome"] == "accepted"


def test_the_report_counts_each_card_and_each_feedback_once(cluster):
    def totals(rows):
        return {k: sum(r[k] for r in rows) for k in ("shown", "accepted", "overridden")}

    before = totals(report(cluster))
    cards, instances = [], set()
    with requests.Session() as session:
        for _ in range(12):
            response = cluster.hook_call(session)
            instances.add(cluster.name_of(response))
            cards.extend(response.json()["cards"])
    warnings = [card for card in cards if card["indicator"] == "warning"]
    assert len(warnings) == 12 and len(instances) == 3
    wait_for_cards(cluster, {card["uuid"] for card in cards})
    entries = [accepted(card) if n % 2 else overridden(card, "not-applicable") for n, card in enumerate(warnings)]
    answered = set()
    for _ in range(2):  # every entry twice, each time through a different instance
        for n in range(0, len(entries), 4):
            response = post_feedback(cluster, entries[n:n + 4])
            assert response.status_code == 200
            answered.add(cluster.name_of(response))
    assert len(answered) == 3
    rows = report(cluster)
    after = totals(rows)
    assert {k: after[k] - before[k] for k in after} == {"shown": len(cards), "accepted": 6, "overridden": 6}
    assert not [r for r in rows if r["rule"] == "(unknown card)"]
    reasons = {x["code"]: x["count"] for r in rows for x in r["override_reasons"]}
    assert reasons.get("not-applicable") == 6


def test_an_overridden_warning_is_not_repeated_by_any_instance(cluster):
    """Repeat-alert suppression is in the database: an override posted to one instance silences the
    same warning (same patient, same order) on every instance; the PAMA rating is still sent."""
    other_patient = json.loads(json.dumps(EXAMPLE).replace('"girl-7"', '"repeat-1"')
                               .replace("Patient/girl-7", "Patient/repeat-1"))
    first = cluster.hook_call(body=other_patient)
    card = warning_card(first)
    wait_for_cards(cluster, {card["uuid"]})
    time.sleep(0.3)  # the issuing instance's batch of shown warnings is written every 50 ms
    assert post_feedback(cluster, [overridden(card, "protocol")]).status_code == 200
    time.sleep(1.2)  # every worker reads the overrides it has not seen at most every second
    answered_by = set()
    with requests.Session() as session:
        for _ in range(6):
            again = cluster.hook_call(session, body=other_patient)
            assert again.status_code == 200
            assert [c for c in again.json()["cards"] if c["indicator"] == "warning"] == []
            ratings = [e["valueCodeableConcept"]["coding"][0]["code"] for a in again.json()["systemActions"]
                       for e in a["resource"]["extension"] if e["url"].endswith("/pama-rating")]
            assert ratings == ["not-appropriate"]
            answered_by.add(cluster.name_of(again))
    assert answered_by == {i.name for i in cluster.instances}
    third = json.loads(json.dumps(other_patient).replace("repeat-1", "repeat-2"))
    warning_card(cluster.hook_call(body=third))  # another patient's same order is still warned
