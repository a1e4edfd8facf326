"""Demo patients: the read-only FHIR endpoint (development only), what each patient gets from the service,
and `cds-service try` against a running service."""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

import builders as b
from cds_service import create_app, demo
from cds_service.cli import main
from tokens import Client

FHIR = "/demo/fhir"
IN_SCOPE = {"demo-girl-7", "demo-boy-4", "demo-girl-15", "demo-boy-12"}


@contextmanager
def live(app):
    """The app served on an ephemeral loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(5)


def test_metadata_says_r4_with_open_cors(client):
    response = client.get(f"{FHIR}/metadata", headers={"Origin": "http://sandbox.example"})
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    assert response.get_json()["fhirVersion"] == "4.0.1"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_patient_read_and_list(client):
    girl = client.get(f"{FHIR}/Patient/demo-girl-7").get_json()
    assert girl["resourceType"] == "Patient" and girl["gender"] == "female"
    assert isinstance(girl["name"][0]["given"], list)  # the Sandbox's banner needs an array
    assert b.TODAY.year - int(girl["birthDate"][:4]) in (7, 8)
    listed = client.get(f"{FHIR}/Patient").get_json()
    assert listed["type"] == "searchset" and listed["total"] == len(demo.load()) >= 12
    missing = client.get(f"{FHIR}/Patient/nobody")
    assert missing.status_code == 404 and missing.get_json()["resourceType"] == "OperationOutcome"


def test_condition_and_medication_searches_by_get_and_post(client):
    conditions = client.get(f"{FHIR}/Condition", query_string={"patient": "demo-girl-7", "_count": 200}).get_json()
    [entry] = conditions["entry"]
    assert entry["resource"]["code"]["coding"][0]["code"] == "277571004"
    assert entry["resource"]["onsetDateTime"] == (b.TODAY - b.timedelta(days=2)).isoformat()
    posted = client.post(f"{FHIR}/MedicationRequest/_search", data={"patient": "Patient/demo-on-therapy"}).get_json()
    assert [e["resource"]["medicationCodeableConcept"]["text"] for e in posted["entry"]] == ["vincristine"]
    assert client.get(f"{FHIR}/MedicationRequest", query_string={"patient": "demo-girl-7"}).get_json()["total"] == 0
    assert client.get(f"{FHIR}/Condition", query_string={"patient": "nobody"}).get_json()["total"] == 0
    assert client.get(f"{FHIR}/Condition").status_code == 400
    assert client.get(f"{FHIR}/Observation", query_string={"patient": "demo-girl-7"}).status_code == 404


def test_the_demo_endpoint_is_not_served_in_production(tmp_path):
    trusted = Client(tmp_path)
    app = create_app(trusted.config(tmp_path / "p.db"))
    assert app.test_client().get(f"{FHIR}/metadata").status_code == 404


def test_demo_data_uses_only_codes_of_the_knowledge(k):
    for patient in demo.load():
        for resource in patient.on(b.TODAY)[1:]:
            concept = resource.get("code") or resource.get("medicationCodeableConcept")
            for coding in concept["coding"]:
                assert k.diagnosis_for(coding["system"], coding["code"]), (patient.id, coding)


@pytest.mark.parametrize("patient", demo.load(), ids=lambda p: p.id)
def test_each_demo_patient_with_ct_chest(client, patient):
    body = demo.order_select(patient, {"system": b.CPT, "code": "71260"}, b.TODAY)
    response = client.post(f"/cds-services/{b.SELECT}", json=body)
    warnings = b.warning_cards(response)
    if patient.id in IN_SCOPE:
        assert [c["summary"][:38] for c in warnings] == ["CT chest: Usually not appropriate for "]
        assert b.ratings(response) == {"try-71260": "not-appropriate"}
    else:
        assert warnings == [] and b.ratings(response) == {"try-71260": "no-criteria-apply"}


def test_the_service_reads_a_demo_patient_from_the_demo_fhir_server(app):
    with live(app) as base:
        body = b.hook_request([b.service_request(code="71260", pid="demo-boy-4")], pid="demo-boy-4", prefetch=False,
                              fhir_server=f"{base}{FHIR}")
        app.extensions["cds"].handler.deadline_seconds = 5  # a threaded test server, not the EHR
        response = app.test_client().post(f"/cds-services/{b.SELECT}", json=body)
    [warning] = b.warning_cards(response)
    assert "4-year-old boy" in warning["detail"]


def test_try_prints_the_table_of_cards_and_ratings(app, capsys):
    with live(app) as base:
        code = main(["try", "--url", f"{base}/cds-services"])
    out = capsys.readouterr().out
    assert code == 0
    rows = {tuple(re.split(r"\s{2,}", line.strip()))[:3]: line for line in out.splitlines()}
    girl_ct = rows[("demo-girl-7", "CT chest (CPT 71250)", "not-appropriate")]
    assert "warning: CT chest: Usually not appropriate" in girl_ct
    assert ("demo-aml", "CT chest (CPT 71250)", "no-criteria-apply") in rows
    boy_us = rows[("demo-boy-4", "Scrotal ultrasound (CPT 76870)", "appropriate")]
    assert "info: Scrotal ultrasound" in boy_us
    assert f"{12 * 10} calls to {base}/cds-services/{b.SELECT}; 0 without an answer" in out


def test_try_says_when_no_service_answers(capsys):
    assert main(["try", "--url", "http://127.0.0.1:9/cds-services"]) == 1
    assert "cannot read the service's discovery" in capsys.readouterr().out
