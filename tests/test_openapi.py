"""The OpenAPI 3.1 document at /openapi.json, and schemathesis against the app: generated requests to every
documented operation (bounded), no 5xx, and every response conforms to the document."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import responses
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

import builders as b
from cds_service import create_app
from tokens import Client

LOG = logging.getLogger("cds_service")


def make_app(tmp_path):
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'openapi.db'}", "hook_deadline": 0.2,
                      "fhir_connect_timeout": 0.05, "fhir_read_timeout": 0.05})
    app.extensions["cds"].handler.today = lambda: b.TODAY
    return app


def test_the_document_is_openapi_3_1_and_names_every_route(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    for service in (b.SELECT, b.SIGN):
        assert {f"/cds-services/{service}", f"/cds-services/{service}/feedback",
                f"/cds-services/{service}/explain"} <= set(doc["paths"])
    assert {"/cds-services", "/health", "/ready", "/metrics", "/openapi.json", "/demo/fhir/metadata",
            "/demo/fhir/Patient/{id}", "/demo/fhir/Condition", "/demo/fhir/MedicationRequest"} <= set(doc["paths"])
    hook = doc["paths"][f"/cds-services/{b.SELECT}"]["post"]
    assert {"200", "400", "404", "412", "413", "415"} <= set(hook["responses"])
    # every route the app serves is documented (per service id, per searchable resource type)
    served = {str(rule.rule) for rule in client.application.url_map.iter_rules() if rule.endpoint != "static"}
    expanded = {r.replace("<service_id>", s).replace("<resource_type>", t).replace("<pid>", "{id}")
                .replace("<rid>", "{id}").replace("<", "{").replace(">", "}")
                for r in served for s in (b.SELECT, b.SIGN) for t in ("Condition", "MedicationRequest")}
    assert {r for r in expanded if not r.endswith("/_search")} == set(doc["paths"])


def test_the_documented_example_request_gets_the_warning(client):
    doc = client.get("/openapi.json").get_json()
    for service in (b.SELECT, b.SIGN):
        media = doc["paths"][f"/cds-services/{service}"]["post"]["requestBody"]["content"]["application/json"]
        body = media["examples"]["ct-chest-girl"]["value"]
        [warning] = b.warning_cards(client.post(f"/cds-services/{service}", json=body))
        assert warning["summary"].startswith("CT chest: Usually not appropriate")


def test_production_document_has_no_development_routes(tmp_path):
    trusted = Client(tmp_path)
    app = create_app(trusted.config(tmp_path / "p.db"))
    doc = app.test_client().get("/openapi.json").get_json()
    assert not any(p.startswith("/demo") or p.endswith("/explain") for p in doc["paths"])
    assert doc["paths"]["/cds-services"]["get"]["security"] == [{"cdsHooksJwt": []}]


def test_the_document_validates_as_openapi_3_1(tmp_path):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", make_app(tmp_path))
    assert len(list(schema.get_all_operations())) >= 12


# One app for the generated cases, built when the module is collected (schemathesis needs the schema then).
SCHEMA_DIR = tempfile.mkdtemp(prefix="cds-openapi-")
schema = schemathesis.openapi.from_wsgi("/openapi.json", make_app(Path(SCHEMA_DIR)))


@schema.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_schemathesis_no_server_error_and_conforming_responses(case):
    # The service is lenient by design (irrelevant or odd content gets 200 with no cards, CDS Hooks
    # clients such as the Sandbox send empty values): a request outside the schema may be accepted. And a
    # request inside it may rightly get 400 or 412 for its FHIR content (an invalid ServiceRequest, a
    # recognised order without the patient's data), which the schema does not model.
    call(case, excluded_checks=[negative_data_rejection, positive_data_acceptance])


def test_schemathesis_405_carries_the_allow_header():
    operation = schema["/health"]["GET"]  # any route: the handler is app-wide
    case = operation.Case(method="TRACE")
    response = case.call()
    assert response.status_code == 405
    assert "allow" in {name.lower() for name in response.headers}, "405 without the Allow header (RFC 9110)"


def call(case, **checks):
    LOG.disabled = True
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False):  # no FHIR server is ever reached
            case.call_and_validate(**checks)
    finally:
        LOG.disabled = False
